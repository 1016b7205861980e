//! The attempt layer: one attempt on the routed env, and what its result means for the rest
//! of the request — the answer as it is, a fallback, or an error of the env's.
//!
//! Owns: [`First`] (what the first attempt came to), the adaptive limit's latency sample, and
//! the env's answer as the client gets it ([`Proxy::wrap`]). Must not touch: the retry on
//! FALLBACK ([`super::fallback`]) or the users' record ([`super::record`]).

use std::sync::Arc;
use std::time::Instant;

use http::header::HeaderValue;
use http::{Response, StatusCode};
use hyper::body::Incoming;

use super::answer::{env_error, ENV_HEADER_NAME};
use super::fallback::Failed;
use super::record::{answer_outcome, error_outcome};
use super::Proxy;
use crate::metrics::{Outcome, Scope};
use crate::proxy::headers::strip_hop_by_hop;
use crate::proxy::protect::admission::Permit;
use crate::proxy::upstream::attempt::{self, Failure, Outgoing};
use crate::proxy::upstream::body::{ClientBody, ReqBody, RespBody, UpBody};
use crate::proxy::upstream::conns::Pooled;
use crate::proxy::upstream::pool::{InflightGuard, Upstream};
use crate::proxy::upstream::tap::Keep;
use crate::router::Env;

/// What the first attempt on the routed env (or its admission) came to.
pub(super) enum First {
    /// The answer, already recorded for the env and for users: it goes to the client as is.
    Done(Response<RespBody>),
    /// The answer, recorded for the env; what it counts as for users is still to record
    /// (`None`: not counted there).
    Answered(Response<RespBody>, Option<Outcome>),
    /// FALLBACK may take it: the answer if it does not, and the body if nothing of it was sent.
    Fallback(Failed, Option<Incoming>),
}

impl Proxy {
    /// Send the request to `env` holding its admission slot `permit` (its body also handed
    /// to `keep` for a mirrored user's copy).
    pub(super) async fn forward(
        self: &Arc<Self>,
        env: Env,
        out: &Outgoing<'_>,
        body: ClientBody,
        keep: Option<Box<Keep>>,
        permit: Permit,
        start: Instant,
    ) -> First {
        let guard = self.guard(env);
        let (body, unsent) = ReqBody::new(body, &self.metrics, keep);
        let body_empty = unsent.is_none();
        // The adaptive limit wants the env's own latency, without the wait for a slot; nothing
        // else needs a second reading of the clock.
        let sent_at = if guard.is_adaptive() {
            Instant::now()
        } else {
            start
        };
        let first = attempt::send(self.pool(env), out, body, unsent).await;
        let empty_idempotent = body_empty && attempt::idempotent(out.method);

        match first.result {
            Ok(resp)
                if resp.status() == StatusCode::SERVICE_UNAVAILABLE
                    && env != Env::Fallback
                    && empty_idempotent =>
            {
                // The env says it is overloaded: a safe request goes to FALLBACK (budget
                // permitting); the 503 stays the answer otherwise.
                guard.sample(sent_at.elapsed(), Instant::now());
                let failed = Failed {
                    answer: self.wrap(resp, first.upstream, first.conn, env, permit),
                    env_outcome: Some(Outcome::ServerError),
                    users: Outcome::ServerError,
                };
                First::Fallback(failed, None)
            }
            Ok(resp) => {
                let now = Instant::now();
                guard.sample(now - sent_at, now);
                // The env's answer is what the user gets: one record for both.
                let outcome = answer_outcome(&resp, out.trailers);
                let scopes = [Scope::from(env), Scope::Users];
                self.metrics.record_in(&scopes, outcome, now - start, now);
                First::Done(self.wrap(resp, first.upstream, first.conn, env, permit))
            }
            Err(Failure::Env(fault))
                if env != Env::Fallback
                    && Failure::Env(fault).replayable(first.unsent.is_some(), empty_idempotent) =>
            {
                drop(permit);
                let answer = env_error(env, fault);
                let failed = Failed {
                    users: error_outcome(answer.status()),
                    answer,
                    env_outcome: Some(fault.outcome()),
                };
                First::Fallback(failed, first.unsent)
            }
            Err(Failure::Env(fault)) => {
                drop(permit);
                let now = Instant::now();
                self.metrics
                    .record(Scope::from(env), fault.outcome(), start.elapsed(), now);
                if env != Env::Fallback {
                    self.metrics.record_displaced(env, false, now);
                }
                let answer = env_error(env, fault);
                let users = error_outcome(answer.status());
                First::Answered(answer, Some(users))
            }
            Err(other) => {
                // Not the env's fault: nothing goes into its scope, and it is never replayed.
                drop(permit);
                First::Done(self.not_envs_fault(env, other, start))
            }
        }
    }

    /// An env's answer as the client gets it: hop-by-hop headers dropped, the env named, and
    /// the body holding the in-flight count, the admission slot and the connection to give
    /// back to the pool until it ends.
    pub(super) fn wrap(
        self: &Arc<Self>,
        resp: Response<UpBody>,
        upstream: Option<Arc<Upstream>>,
        conn: Option<Pooled>,
        env: Env,
        permit: Permit,
    ) -> Response<RespBody> {
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        parts
            .headers
            .insert(ENV_HEADER_NAME, HeaderValue::from_static(env.as_str()));
        let body = match upstream {
            Some(u) => RespBody::upstream(body, conn, InflightGuard::new(u), permit),
            None => RespBody::empty(),
        };
        Response::from_parts(parts, body)
    }
}
