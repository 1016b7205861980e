//! The proxy's own answers: what a client gets when the proxy, not an env, answers — an env
//! that failed, a client's own fault, a refusal before routing, a body past its deadline.
//!
//! Owns: the wording, status and `x-cutover-error` code of each answer, and the headers that
//! name who answered ([`ERROR_HEADER`], [`ENV_HEADER`]). Must not touch: metrics (the handler
//! records what it answers) or the decision to answer (the caller's).

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::metrics::{ClientFault, ProxyFault};
use crate::proxy::upstream::attempt::{EnvFault, Failure};
use crate::proxy::upstream::body::RespBody;
use crate::proxy::upstream::body_watch::{BodyFault, BodyWatch, BODY_WATCH};
use crate::router::Env;

/// Header on the proxy's own error answers, naming what went wrong (for operators and tests).
pub(crate) const ERROR_HEADER: &str = "x-cutover-error";
/// Header on every answer naming the env that served it.
pub(crate) const ENV_HEADER: &str = "x-cutover-served-by";
pub(crate) const ENV_HEADER_NAME: header::HeaderName = header::HeaderName::from_static(ENV_HEADER);

/// The proxy's answer to a failed attempt on `env`, by whose fault it was.
pub(crate) fn failure_answer(env: Env, failure: Failure) -> Response<RespBody> {
    match failure {
        Failure::Env(fault) => env_error(env, fault),
        Failure::Client(kind) => client_fault(kind),
        Failure::Proxy(kind) => proxy_fault(env, kind),
    }
}

/// The proxy's own answer when `env` could not answer.
pub(crate) fn env_error(env: Env, fault: EnvFault) -> Response<RespBody> {
    let text = format!("cutover: the {env} environment {}\n", fault.describe());
    let mut resp = own_answer(fault.status(), fault.code(), text);
    resp.headers_mut()
        .insert(ENV_HEADER_NAME, HeaderValue::from_static(env.as_str()));
    resp
}

/// `503` when the proxy itself had no socket to reach `env` (the env is not named as the one
/// that answered: it was never asked).
fn proxy_fault(env: Env, kind: ProxyFault) -> Response<RespBody> {
    match kind {
        ProxyFault::Resources => own_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "proxy-resources",
            format!(
                "cutover: the proxy is out of resources (file handles, local ports or memory) \
                 to reach the {env} environment; retry shortly\n"
            ),
        ),
    }
}

fn own_answer(status: StatusCode, code: &'static str, text: String) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::text(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(ERROR_HEADER, HeaderValue::from_static(code));
    resp
}

/// 408 for a client that stopped sending its body.
fn body_timeout(limit: Duration) -> Response<RespBody> {
    closing(
        StatusCode::REQUEST_TIMEOUT,
        "client-body-timeout",
        format!("cutover: no request body data for {limit:?}; the request was abandoned\n"),
    )
}

/// 408 for a client whose body came slower than `min_rate` bytes per second.
fn body_too_slow(min_rate: u64) -> Response<RespBody> {
    closing(
        StatusCode::REQUEST_TIMEOUT,
        "client-body-too-slow",
        format!(
            "cutover: the request body came slower than {min_rate} bytes/s; the request was abandoned\n"
        ),
    )
}

/// The answer to a request that failed by the client's own fault ([`ClientFault`]): `408` for
/// a body that stopped arriving, `400` otherwise — never `502`, which would name the env.
/// Closes the connection: the request was not read to its end.
pub(crate) fn client_fault(kind: ClientFault) -> Response<RespBody> {
    match kind {
        ClientFault::BodyTimeout => {
            body_timeout(BODY_WATCH.try_with(|w| w.timeout).unwrap_or_default())
        }
        ClientFault::BodyTooSlow => {
            body_too_slow(BODY_WATCH.try_with(|w| w.min_rate).unwrap_or_default())
        }
        ClientFault::BodyMalformed => closing(
            StatusCode::BAD_REQUEST,
            "client-body-malformed",
            "cutover: the request body is malformed (its chunked framing is broken); the request was abandoned\n",
        ),
        ClientFault::BodyAborted => closing(
            StatusCode::BAD_REQUEST,
            "client-body-aborted",
            "cutover: the connection ended before the request body was all sent; the request was abandoned\n",
        ),
        ClientFault::BadRequest => closing(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "cutover: the request is malformed\n",
        ),
        ClientFault::Gone => closing(
            // Nobody is left to read it (other proxies log this as 499).
            StatusCode::BAD_REQUEST,
            "client-gone",
            "cutover: the client closed its connection before its answer\n",
        ),
        ClientFault::UpgradeWithBody => closing(
            StatusCode::BAD_REQUEST,
            "upgrade-with-body",
            "cutover: an upgrade request must not carry a body (Content-Length or Transfer-Encoding)\n",
        ),
    }
}

/// The proxy's 408 for a request body that failed its deadline `fault`.
pub(crate) fn body_deadline(watch: &BodyWatch, fault: BodyFault) -> Response<RespBody> {
    match fault {
        BodyFault::Silent => body_timeout(watch.timeout),
        BodyFault::TooSlow => body_too_slow(watch.min_rate),
    }
}

/// An answer of the proxy's own that also closes the connection (the request was not read
/// to its end, or the client is not to be trusted with the connection any longer).
pub(crate) fn closing(
    status: StatusCode,
    code: &'static str,
    text: impl Into<String>,
) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::text(text.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(ERROR_HEADER, HeaderValue::from_static(code));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
