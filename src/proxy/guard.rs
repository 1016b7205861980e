//! Checks a request must pass before it is routed, and the client-body deadline.
//!
//! Owns: refusing what the proxy never forwards — `CONNECT` (this is a reverse proxy, not a
//! tunnel to wherever a client asks) and request targets longer than `max_uri_bytes` — with
//! the proxy's own short answers, [`BodyWatch`], which notices a client that stops sending
//! its request body, and the answers to requests that failed by the client's own fault
//! ([`client_fault`]). Must not touch: routing or upstreams.
//!
//! What hyper already refuses before any of this runs (and answers itself, then closes the
//! connection): malformed request lines and header bytes (400), conflicting or invalid
//! `Content-Length`s, a `Transfer-Encoding` whose last coding is not `chunked`, obs-fold (400),
//! a head larger than `max_header_bytes` or with more than `max_headers` fields (431), and a
//! target over 64 KiB (414). A request with both `Content-Length` and `Transfer-Encoding`
//! never gets this far: [`super::screen`] answers it 400 before hyper parses it (hyper would
//! accept it, reading the body as chunked).

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tokio::sync::watch;

use super::body::RespBody;
use super::handler::ERROR_HEADER;
use super::limits::Limits;
use crate::metrics::ClientFault;

tokio::task_local! {
    /// The body deadline of the request being handled on this task; [`super::body::ReqBody`]
    /// picks it up when it wraps a client's body.
    pub(crate) static BODY_WATCH: Arc<BodyWatch>;
}

/// The proxy's answer to a request it refuses before routing, if it does.
pub fn check<B>(req: &Request<B>, limits: &Limits) -> Option<Response<RespBody>> {
    if req.method() == Method::CONNECT {
        let mut resp = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "connect-refused",
            "cutover: CONNECT is not supported; this is a reverse proxy to its configured environments\n",
        );
        resp.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        return Some(resp);
    }
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    if target > limits.max_uri_bytes {
        return Some(answer(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            format!(
                "cutover: the request target is {target} bytes; the limit is {}\n",
                limits.max_uri_bytes
            ),
        ));
    }
    None
}

/// 408 for a client that stopped sending its body.
pub fn body_timeout(limit: Duration) -> Response<RespBody> {
    answer(
        StatusCode::REQUEST_TIMEOUT,
        "client-body-timeout",
        format!("cutover: no request body data for {limit:?}; the request was abandoned\n"),
    )
}

/// The answer to a request that failed by the client's own fault ([`ClientFault`]): `408` for
/// a body that stopped arriving, `400` otherwise — never `502`, which would name the env.
/// Closes the connection: the request was not read to its end.
pub fn client_fault(kind: ClientFault) -> Response<RespBody> {
    match kind {
        ClientFault::BodyTimeout => {
            body_timeout(BODY_WATCH.try_with(|w| w.timeout).unwrap_or_default())
        }
        ClientFault::BodyMalformed => answer(
            StatusCode::BAD_REQUEST,
            "client-body-malformed",
            "cutover: the request body is malformed (its chunked framing is broken); the request was abandoned\n",
        ),
        ClientFault::BodyAborted => answer(
            StatusCode::BAD_REQUEST,
            "client-body-aborted",
            "cutover: the connection ended before the request body was all sent; the request was abandoned\n",
        ),
        ClientFault::UpgradeWithBody => answer(
            StatusCode::BAD_REQUEST,
            "upgrade-with-body",
            "cutover: an upgrade request must not carry a body (Content-Length or Transfer-Encoding)\n",
        ),
    }
}

/// 503 for a connection past `max_connections` (written by hand: no HTTP parser runs).
pub fn too_many_connections_bytes() -> &'static [u8] {
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
      x-cutover-error: too-many-connections\r\nconnection: close\r\ncontent-length: 51\r\n\r\n\
      cutover: too many open connections; retry shortly.\n"
}

/// 400 for a request with both `Content-Length` and `Transfer-Encoding` (written by hand by
/// [`super::screen`]: hyper never parses that request).
pub fn conflicting_framing_bytes() -> &'static [u8] {
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
      x-cutover-error: conflicting-framing\r\nconnection: close\r\ncontent-length: 77\r\n\r\n\
      cutover: a request with both Content-Length and Transfer-Encoding is refused\n"
}

/// An answer of the proxy's own that also closes the connection (the request was not read
/// to its end, or the client is not to be trusted with the connection any longer).
fn answer(status: StatusCode, code: &'static str, text: impl Into<String>) -> Response<RespBody> {
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

/// The deadline on pauses in one request's body. Set off by the body (from any task); the
/// request's own task waits on [`BodyWatch::expired`] and answers 408 instead of blaming the
/// env for the client's silence.
#[derive(Debug)]
pub struct BodyWatch {
    pub timeout: Duration,
    fired: watch::Sender<bool>,
}

impl BodyWatch {
    pub fn new(timeout: Duration) -> Arc<BodyWatch> {
        Arc::new(BodyWatch {
            timeout,
            fired: watch::channel(false).0,
        })
    }

    /// Called by the body when the client has been silent for `timeout`.
    pub fn fire(&self) {
        self.fired.send_replace(true);
    }

    /// Resolves once the deadline has fired.
    pub async fn expired(&self) {
        let mut rx = self.fired.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }
}

/// The error a body returns when its deadline fires.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body data for {0:?}")]
pub struct BodyTimeout(pub Duration);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_and_long_targets_are_refused() {
        let limits = Limits {
            max_uri_bytes: 20,
            ..Limits::default()
        };
        let connect = Request::builder()
            .method(Method::CONNECT)
            .uri("127.0.0.1:9900")
            .body(())
            .expect("request");
        let r = check(&connect, &limits).expect("refused");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let long = Request::builder()
            .uri(format!("/{}", "a".repeat(20)))
            .body(())
            .expect("request");
        assert_eq!(
            check(&long, &limits).map(|r| r.status()),
            Some(StatusCode::URI_TOO_LONG)
        );
        let fine = Request::builder()
            .uri("http://127.0.0.1:9900/x")
            .body(())
            .expect("request");
        assert!(check(&fine, &limits).is_none());
    }

    #[test]
    fn the_hand_written_answers_have_a_correct_length() {
        for bytes in [too_many_connections_bytes(), conflicting_framing_bytes()] {
            let text = std::str::from_utf8(bytes).expect("utf8");
            let (head, body) = text.split_once("\r\n\r\n").expect("head");
            assert!(
                head.contains(&format!("content-length: {}", body.len())),
                "{text}"
            );
        }
    }
}
