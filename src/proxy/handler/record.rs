//! The record layer: what a request counts as, for the env that answered and for users.
//!
//! Owns: the outcome of an answer's status (and of a gRPC answer's `grpc-status`), the users'
//! record, and what a failure that was
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

/// What an env's answer counts as: [`status_outcome`], except for a gRPC call (`grpc`: the
/// request asked for trailers, as every gRPC client does) answered `200` with a
/// `grpc-status` in its head (a trailers-only answer, how gRPC servers send an error that
/// comes before any message): then it is an error when the code is the service's failure —
/// [`grpc_env_error`]. A `grpc-status` that comes in the trailers, after messages, is not
/// looked at: the answer was recorded by its head.
pub(crate) fn answer_outcome<B>(resp: &Response<B>, grpc: bool) -> Outcome {
    if grpc && resp.status() == StatusCode::OK {
        if let Some(code) = resp.headers().get("grpc-status") {
            return if grpc_env_error(code.as_bytes()) {
                Outcome::ServerError
            } else {
                Outcome::Ok
            };
        }
    }
    status_outcome(resp.status())
}

/// Whether a `grpc-status` code is the env's failure: the codes the gRPC-to-HTTP mapping of
/// grpc-gateway (and Envoy's) turns into a `5xx` — UNKNOWN (2), DEADLINE_EXCEEDED (4),
/// UNIMPLEMENTED (12), INTERNAL (13), UNAVAILABLE (14), DATA_LOSS (15). The others (a bad
/// argument, not found, denied, cancelled by the client, out of quota, …) are the caller's,
/// as a `4xx` is.
pub(crate) fn grpc_env_error(code: &[u8]) -> bool {
    matches!(code, b"2" | b"4" | b"12" | b"13" | b"14" | b"15")
}

/// What the proxy's own error answer with `status` counts as for users.
pub(super) fn error_outcome(status: StatusCode) -> Outcome {
    match status {
        StatusCode::GATEWAY_TIMEOUT => Outcome::Timeout,
        _ => Outcome::ServerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc_answer(status: u16, code: Option<&'static str>) -> Response<()> {
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::from_u16(status).expect("status");
        if let Some(code) = code {
            resp.headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static(code));
        }
        resp
    }

    #[test]
    fn a_grpc_status_counts_against_the_env_only_when_it_is_the_services_failure() {
        for code in ["2", "4", "12", "13", "14", "15"] {
            let resp = grpc_answer(200, Some(code));
            assert_eq!(answer_outcome(&resp, true), Outcome::ServerError, "{code}");
        }
        for code in ["0", "1", "3", "5", "7", "8", "9", "16", "x"] {
            let resp = grpc_answer(200, Some(code));
            assert_eq!(answer_outcome(&resp, true), Outcome::Ok, "{code}");
        }
        // Not a gRPC call, or an HTTP status that says it all: the status decides.
        assert_eq!(
            answer_outcome(&grpc_answer(200, Some("14")), false),
            Outcome::Ok
        );
        let resp = grpc_answer(503, Some("0"));
        assert_eq!(answer_outcome(&resp, true), Outcome::ServerError);
        assert_eq!(answer_outcome(&grpc_answer(200, None), true), Outcome::Ok);
    }
}
