//! The fall-back layer: FALLBACK takes a request its env could not (or would not) answer, when
//! a replay is safe and affordable.
//!
//! Owns: [`Failed`] (the answer a user gets when FALLBACK does not take it), FALLBACK's own
//! admission, the retry budget's say, and what the retry records for `env` (displaced) and for
//! FALLBACK. Must not touch: whether a replay is safe (decided by the attempt layer,
//! [`crate::proxy::upstream::attempt::Failure::replayable`]) or the users' record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Response;
use hyper::body::Incoming;

use super::record::answer_outcome;
use super::Proxy;
use crate::metrics::{Outcome, Scope};
use crate::proxy::upstream::attempt::{self, Failure, Outgoing};
use crate::proxy::upstream::body::{ReqBody, RespBody};
use crate::router::Env;

/// The answer a user gets when a fallback is refused or fails too.
pub(super) struct Failed {
    pub(super) answer: Response<RespBody>,
    /// What the attempt on the env counts as there, if not recorded yet.
    pub(super) env_outcome: Option<Outcome>,
    /// What the answer counts as for users.
    pub(super) users: Outcome,
}

impl Proxy {
    /// Try FALLBACK after `env` could not (or would not) answer. `failed` is what the user
    /// gets if the retry is not allowed — FALLBACK sheds it too, or the retry budget is spent —
    /// or FALLBACK fails as well. Returns the answer and what it counts as for users (`None`:
    /// not counted there, the client's own fault).
    pub(super) async fn fallback(
        self: &Arc<Self>,
        env: Env,
        start: Instant,
        out: &Outgoing<'_>,
        unsent: Option<Incoming>,
        failed: Failed,
    ) -> (Response<RespBody>, Option<Outcome>) {
        let refused = |this: &Self, now: Instant, failed: Failed| {
            if let Some(o) = failed.env_outcome {
                this.metrics
                    .record(Scope::from(env), o, start.elapsed(), now);
            }
            this.metrics.record_displaced(env, false, now);
            (failed.answer, Some(failed.users))
        };
        // FALLBACK's own admission first, so a shed there spends no retry token.
        let Ok(permit) = self.guard(Env::Fallback).admit().await else {
            let now = Instant::now();
            self.metrics
                .record(Scope::Fallback, Outcome::Shed, Duration::ZERO, now);
            return refused(self, now, failed);
        };
        let now = Instant::now();
        if !self.budget.try_retry(now) {
            self.metrics.record_budget_exhausted(now);
            return refused(self, now, failed);
        }
        self.metrics.record_retry(now);
        let (body, unsent) = match unsent {
            Some(b) => {
                let (body, handle) = ReqBody::replay(b, &self.metrics);
                (body, Some(handle))
            }
            None => (ReqBody::Empty, None),
        };
        let retry_start = Instant::now();
        let second = attempt::send(self.pool(Env::Fallback), out, body, unsent).await;
        let done = Instant::now();
        match second.result {
            Ok(resp) => {
                // Displaced, not an error of `env`: the user was answered elsewhere.
                self.metrics.record_displaced(env, true, done);
                let outcome = answer_outcome(&resp, out.trailers);
                self.metrics
                    .record(Scope::Fallback, outcome, done - retry_start, done);
                (
                    self.wrap(resp, second.upstream, second.conn, Env::Fallback, permit),
                    Some(outcome),
                )
            }
            Err(Failure::Env(f)) => {
                drop(permit);
                self.metrics
                    .record(Scope::Fallback, f.outcome(), done - retry_start, done);
                refused(self, done, failed)
            }
            Err(other) => {
                // Not FALLBACK's fault (the client's body broke on the way, or the proxy had
                // no socket): FALLBACK's scope is left alone; what `env` did still counts.
                drop(permit);
                let _ = refused(self, done, failed);
                (self.not_envs_fault(Env::Fallback, other, start), None)
            }
        }
    }
}
