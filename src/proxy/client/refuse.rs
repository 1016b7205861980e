//! Checks a request must pass before it is routed.
//!
//! Owns: refusing what the proxy never forwards — `CONNECT` (this is a reverse proxy, not a
//! tunnel to wherever a client asks), request targets longer than `max_uri_bytes` and a `Host`
//! that breaks RFC 9112 §3.2 — and the answers written by hand where no HTTP parser runs
//! (too many connections, conflicting framing, a late HTTP/2 preface). Must not touch:
//! routing or upstreams; the wording of answers that go through the handler lives in
//! [`crate::proxy::handler::answer`].
//!
//! What hyper already refuses before any of this runs (and answers itself, then closes the
//! connection): malformed request lines and header bytes (400), conflicting or invalid
//! `Content-Length`s, a `Transfer-Encoding` whose last coding is not `chunked`, obs-fold (400),
//! a head larger than `max_header_bytes` or with more than `max_headers` fields (431), and a
//! target over 64 KiB (414). A request with both `Content-Length` and `Transfer-Encoding`
//! never gets this far: [`super::screen`] answers it 400 before hyper parses
//! it (hyper would accept it, reading the body as chunked).

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::config::Limits;
use crate::proxy::handler::answer::closing;
use crate::proxy::upstream::body::RespBody;

/// The proxy's answer to a request it refuses before routing, if it does.
pub(crate) fn check<B>(req: &Request<B>, limits: &Limits) -> Option<Response<RespBody>> {
    if req.method() == Method::CONNECT {
        let mut resp = closing(
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
        return Some(closing(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            format!(
                "cutover: the request target is {target} bytes; the limit is {}\n",
                limits.max_uri_bytes
            ),
        ));
    }
    check_host(req)
}

/// The `Host` rules of RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`, and
/// it is an authority (`host[:port]`, no spaces or user info; empty only when the target has
/// no authority); an HTTP/1.0 request has at most one. A target in authority form
/// (`GET host:port`) belongs to `CONNECT` alone (§3.2.3). NGINX and HAProxy answer each of
/// these 400; so does the proxy, before routing, so none of them reaches an env or counts
/// anywhere but as the client's.
fn check_host<B>(req: &Request<B>) -> Option<Response<RespBody>> {
    let uri = req.uri();
    if uri.scheme().is_none() && uri.authority().is_some() {
        return Some(bad_request(
            "authority-form",
            "cutover: a request target in authority form (host:port) is for CONNECT only\n",
        ));
    }
    if req.version() >= http::Version::HTTP_2 {
        // :authority is the target's; a Host beside it is checked like HTTP/1.1's.
        return check_host_values(req, false);
    }
    check_host_values(req, req.version() == http::Version::HTTP_11)
}

fn check_host_values<B>(req: &Request<B>, required: bool) -> Option<Response<RespBody>> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let Some(host) = hosts.next() else {
        return required.then(|| {
            bad_request(
                "missing-host",
                "cutover: an HTTP/1.1 request needs a Host header\n",
            )
        });
    };
    if hosts.next().is_some() {
        return Some(bad_request(
            "duplicate-host",
            "cutover: a request may carry one Host header, not several\n",
        ));
    }
    if !valid_host(host.as_bytes()) {
        return Some(bad_request(
            "invalid-host",
            "cutover: the Host header is not a host[:port]\n",
        ));
    }
    None
}

/// `uri-host [":" port]` of RFC 3986, loosely: the characters of a registered name, an IPv4
/// or a bracketed IPv6 literal and a port. Empty is allowed (RFC 9110 §7.2).
fn valid_host(host: &[u8]) -> bool {
    host.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            )
    })
}

fn bad_request(code: &'static str, text: &'static str) -> Response<RespBody> {
    closing(StatusCode::BAD_REQUEST, code, text)
}

/// 503 for a connection past `max_connections` (written by hand: no HTTP parser runs).
pub(crate) fn too_many_connections_bytes() -> &'static [u8] {
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
      x-cutover-error: too-many-connections\r\nconnection: close\r\ncontent-length: 51\r\n\r\n\
      cutover: too many open connections; retry shortly.\n"
}

/// 400 for a request with both `Content-Length` and `Transfer-Encoding` (written by hand by
/// [`super::screen`]: hyper never parses that request).
pub(crate) fn conflicting_framing_bytes() -> &'static [u8] {
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
      x-cutover-error: conflicting-framing\r\nconnection: close\r\ncontent-length: 77\r\n\r\n\
      cutover: a request with both Content-Length and Transfer-Encoding is refused\n"
}

/// 400 for HTTP/2's preface after an HTTP/1.1 request on the same connection (written by
/// hand by [`super::screen`]).
pub(crate) fn late_http2_bytes() -> &'static [u8] {
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
      x-cutover-error: late-http2-preface\r\nconnection: close\r\ncontent-length: 73\r\n\r\n\
      cutover: HTTP/2 must be spoken from a connection's first byte, not after\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::handler::answer::ERROR_HEADER;

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
            .header(header::HOST, "127.0.0.1:9900")
            .body(())
            .expect("request");
        assert!(check(&fine, &limits).is_none());
    }

    #[test]
    fn host_must_be_one_authority_on_http_1_1() {
        let limits = Limits::default();
        let code = |req: Request<()>| {
            check(&req, &limits).map(|r| (r.status(), r.headers()[ERROR_HEADER].clone()))
        };
        let req = |host: &[&str]| {
            let mut b = Request::builder().uri("/x");
            for h in host {
                b = b.header(header::HOST, *h);
            }
            b.body(()).expect("request")
        };
        assert_eq!(code(req(&["app.example:8080"])), None);
        assert_eq!(code(req(&["[::1]:80"])), None);
        assert_eq!(code(req(&[""])), None, "empty Host is allowed");
        for (hosts, expected) in [
            (&[][..], "missing-host"),
            (&["a.example", "b.example"][..], "duplicate-host"),
            (&["a.example", "a.example"][..], "duplicate-host"),
            (&["a example"][..], "invalid-host"),
            (&["user@a.example"][..], "invalid-host"),
            (&["a.example/x"][..], "invalid-host"),
        ] {
            let got = code(req(hosts));
            assert_eq!(
                got.as_ref().map(|(s, c)| (*s, c.to_str().unwrap_or(""))),
                Some((StatusCode::BAD_REQUEST, expected)),
                "{hosts:?}"
            );
        }
        let http10 = Request::builder()
            .uri("/x")
            .version(http::Version::HTTP_10)
            .body(())
            .expect("request");
        assert_eq!(code(http10), None, "HTTP/1.0 may omit Host");
        let authority_form = Request::builder()
            .uri("app.example:80")
            .header(header::HOST, "app.example")
            .body(())
            .expect("request");
        assert_eq!(
            code(authority_form).map(|(s, _)| s),
            Some(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn the_hand_written_answers_have_a_correct_length() {
        for bytes in [
            too_many_connections_bytes(),
            conflicting_framing_bytes(),
            late_http2_bytes(),
        ] {
            let text = std::str::from_utf8(bytes).expect("utf8");
            let (head, body) = text.split_once("\r\n\r\n").expect("head");
            assert!(
                head.contains(&format!("content-length: {}", body.len())),
                "{text}"
            );
        }
    }
}
