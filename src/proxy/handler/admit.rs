//! The admit layer: herd protection as a request meets it (docs/protection.md).
//!
//! A new session (the first request of a connection, or any tunnel) needs a token from its
//! env's new-session rate; then every request needs a slot of its env's admission limit,
//! waiting at most the queue timeout ([`crate::proxy::protect`] decides both). A request
//! refused either way is never sent to that env: it is shed ([`super::shed`]), or offered to
//! FALLBACK when nothing of it was sent.
//!
//! Owns: asking for the token and what a refusal records. Must not touch: the limits
//! themselves (the protect room's) or the attempt.

use std::time::Instant;

use http::{Request, Response};
use hyper::body::Body;

use super::fallback::Failed;
use super::forward::First;
use super::shed::Cause;
use super::{Proxy, Session};
use crate::metrics::{Outcome, Scope};
use crate::proxy::upstream::body::{ClientBody, RespBody};
use crate::router::Env;

impl Proxy {
    /// The new-session rate of `env`, for a connection's first request and for any upgrade:
    /// `Some(answer)` (a `503`, recorded) when `env` takes no new session now.
    #[inline]
    pub(super) fn open_session<B>(
        &self,
        env: Env,
        upgrade: bool,
        conn: &Session,
        req: &Request<B>,
        start: Instant,
    ) -> Option<Response<RespBody>> {
        if upgrade || !conn.established() {
            if !self.guard(env).take_session(start) {
                self.metrics.record_session_limited(env, start);
                return Some(self.shed_answer(env, Cause::NewSessions, req, start));
            }
            conn.establish();
        }
        None
    }

    /// A request `env`'s admission shed: counted as shed there, and since nothing of it was
    /// sent, FALLBACK may take it (budget permitting); the env is never asked again for it.
    pub(super) fn shed_unsent(
        &self,
        env: Env,
        parts: &http::request::Parts,
        body: ClientBody,
        start: Instant,
    ) -> First {
        let now = Instant::now();
        self.metrics
            .record(Scope::from(env), Outcome::Shed, start.elapsed(), now);
        let answer = self.shed_response(env, Cause::Overloaded, parts, now);
        if env == Env::Fallback {
            return First::Answered(answer, Some(Outcome::Shed));
        }
        let failed = Failed {
            answer,
            env_outcome: None,
            users: Outcome::Shed,
        };
        First::Fallback(failed, body.filter(|b| !b.is_end_stream()))
    }
}
