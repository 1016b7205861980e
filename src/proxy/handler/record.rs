//! The record layer: what a request counts as, for the env that answered and for users.
//!
//! Owns: the outcome of an answer's status, the users' record, and what a failure that was
//! not the env's records (the proxy's own, or the client's: never in an env's scope). Must not
//! touch: answers' wording ([`super::answer`]) or the decision to fall back.

use std::time::Instant;

use http::{Response, StatusCode};

use super::answer::failure_answer;
use super::Proxy;
use crate::metrics::{Outcome, Scope};
use crate::proxy::upstream::attempt::Failure;
use crate::proxy::upstream::body::RespBody;
use crate::router::Env;

impl Proxy {
    /// What the user got counts in `users` (`None`: not counted there, the client's own
    /// fault).
    #[inline]
    pub(super) fn record_users(&self, users: Option<Outcome>, start: Instant) {
        if let Some(users) = users {
            let end = Instant::now();
            self.metrics.record(Scope::Users, users, end - start, end);
        }
    }

    /// Record and answer a failure that was not `env`'s fault
    /// ([`crate::proxy::upstream::attempt::classify`]). A client's fault is counted in its own
    /// counter only — by the body that failed ([`crate::proxy::upstream::body::ReqBody`]) or by
    /// the refusal — never in an env's scope nor in `users`: a client's broken request is not
    /// something the service did to its users. The proxy's own is counted in its counter and,
    /// as what the user got (a `503`), in `users`. (An env's failure is recorded by the caller;
    /// it is only answered here.)
    pub(super) fn not_envs_fault(
        &self,
        env: Env,
        failure: Failure,
        start: Instant,
    ) -> Response<RespBody> {
        if let Failure::Proxy(kind) = failure {
            let now = Instant::now();
            self.metrics.record_proxy_error(kind, now);
            self.metrics
                .record(Scope::Users, Outcome::ServerError, now - start, now);
        }
        failure_answer(env, failure)
    }
}

/// What an env's answer with `status` counts as: an error only for a `5xx`.
pub(crate) fn status_outcome(status: StatusCode) -> Outcome {
    if status.is_server_error() {
        Outcome::ServerError
    } else {
        Outcome::Ok
    }
}

/// What the proxy's own error answer with `status` counts as for users.
pub(super) fn error_outcome(status: StatusCode) -> Outcome {
    match status {
        StatusCode::GATEWAY_TIMEOUT => Outcome::Timeout,
        _ => Outcome::ServerError,
    }
}
