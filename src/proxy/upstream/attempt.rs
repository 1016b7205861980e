//! One attempt of a request on one env, and what its failure means.
//!
//! A failed attempt is one [`Failure`] that knows whose fault it was, decided in one place
//! ([`classify`]):
//! - the env's ([`EnvFault`]: refused, connect timeout, a TLS handshake that failed (its
//!   certificate did not verify), reset or closed before a whole answer, no answer in time, no
//!   upstream): counted in that env's scope, where its gates see it;
//! - the client's ([`ClientFault`]: its body's framing broken, its connection gone mid-body,
//!   its body paused too long): answered `400`/`408`, counted in
//!   `cutover_client_errors_total` only — never in an env's scope nor in `users`, never
//!   replayed. The request body marks these itself ([`super::body::ClientBodyError`],
//!   [`super::body_watch::BodyTimeout`]), so hyper's "error from user's Body stream" is told apart
//!   from a connection the env broke;
//! - the proxy's own ([`ProxyFault`]: no socket for the upstream connection — out of file
//!   handles, local ports or kernel memory): answered `503` (`proxy-resources`), counted in
//!   `cutover_proxy_errors_total` with a rate-limited warning, never in an env's scope.
//!
//! The classification also decides fallback ([`Failure::replayable`]): a request may be
//! replayed on FALLBACK only after an env's failure, and only when that is safe — nothing of it
//! reached the upstream (connect refused or timed out), or it is idempotent with an empty
//! body. A timeout waiting for the answer is never replayed: the upstream may still be working
//! on it, and a replay would double the load on a slow world.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::body::{ClientBodyError, ReqBody, Unsent, UpBody};
use super::body_watch::BodyTimeout;
use super::connect::ConnectError;
use super::conns::{Pooled, SendError};
use super::h1;
use super::pool::{Pool, Upstream};
use crate::metrics::Outcome;
pub(crate) use crate::metrics::{ClientFault, ProxyFault};
use crate::proxy::clock;
use crate::proxy::headers::Seen;

/// Why an attempt got no answer, by whose fault it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The env's: counted in its scope (and its gates).
    Env(EnvFault),
    /// The client's: never counted against an env nor in `users`, never replayed.
    Client(ClientFault),
    /// The proxy's own: never counted against an env, never replayed.
    Proxy(ProxyFault),
}

/// What an env did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvFault {
    /// No upstream is configured for the env.
    NoUpstream,
    Refused,
    ConnectTimeout,
    /// The TLS handshake failed (most often: the env's certificate did not verify). Counted
    /// as a refused connect: nothing was sent.
    Tls,
    /// The connection was reset or closed before an answer.
    Reset,
    /// No answer within the env's request timeout.
    Timeout,
}

impl EnvFault {
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            EnvFault::NoUpstream | EnvFault::Refused | EnvFault::Tls => Outcome::Refused,
            EnvFault::ConnectTimeout | EnvFault::Timeout => Outcome::Timeout,
            EnvFault::Reset => Outcome::Reset,
        }
    }

    /// Nothing of the request reached the upstream.
    pub(crate) fn nothing_sent(self) -> bool {
        matches!(
            self,
            EnvFault::NoUpstream | EnvFault::Refused | EnvFault::ConnectTimeout | EnvFault::Tls
        )
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            EnvFault::NoUpstream => "has no upstream configured",
            EnvFault::Refused => "refused the connection",
            EnvFault::ConnectTimeout => "did not accept the connection in time",
            EnvFault::Tls => "failed the TLS handshake (its certificate did not verify?)",
            EnvFault::Reset => "closed the connection without an answer",
            EnvFault::Timeout => "did not answer in time",
        }
    }

    /// The `x-cutover-error` of the proxy's answer.
    pub(crate) fn code(self) -> &'static str {
        match self {
            EnvFault::NoUpstream => "no-upstream",
            EnvFault::Refused => "refused",
            EnvFault::ConnectTimeout => "connect-timeout",
            EnvFault::Tls => "tls-handshake",
            EnvFault::Reset => "reset",
            EnvFault::Timeout => "timeout",
        }
    }

    /// The status of the proxy's answer.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            EnvFault::Timeout | EnvFault::ConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
            EnvFault::NoUpstream => StatusCode::SERVICE_UNAVAILABLE,
            EnvFault::Refused | EnvFault::Reset | EnvFault::Tls => StatusCode::BAD_GATEWAY,
        }
    }
}

impl Failure {
    /// Whether the request may be replayed on FALLBACK after this failure: only after an
    /// env's failure other than a timeout, and only if nothing of it was sent, its body was
    /// `taken_back` untouched, or it is `empty_idempotent` (no body, idempotent method). A
    /// client's failure would fail the same way again (and its body is partly gone); the
    /// proxy's own would need one more of the socket it just could not get.
    pub(crate) fn replayable(self, taken_back: bool, empty_idempotent: bool) -> bool {
        match self {
            Failure::Env(EnvFault::Timeout) => false,
            Failure::Env(f) => f.nothing_sent() || taken_back || empty_idempotent,
            Failure::Client(_) | Failure::Proxy(_) => false,
        }
    }
}

/// The method is idempotent (RFC 9110 §9.2.2), so a replay cannot do anything twice.
pub(crate) fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// What the upstream request is made of; reused for a replay.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a http::uri::PathAndQuery,
    pub(crate) headers: &'a HeaderMap,
    /// An upgrade (the answer may switch protocols): sent through hyper, which hands over
    /// the upgraded connection.
    pub(crate) upgrade: bool,
    /// The client asked for trailers (`te: trailers`, kept by the handler): sent through
    /// hyper, whose HTTP/1.1 client reads them (the hand-spoken one skips them).
    pub(crate) trailers: bool,
}

impl<'a> Outgoing<'a> {
    /// The request of `parts`, prepared for the env (its target reduced to `path`); `seen`
    /// is the scan of its headers before they were prepared (no lookup for `TE` unless it
    /// found a hop-by-hop header).
    pub(crate) fn of(
        parts: &'a http::request::Parts,
        path: &'a http::uri::PathAndQuery,
        upgrade: bool,
        seen: Seen,
    ) -> Self {
        Outgoing {
            method: &parts.method,
            path,
            headers: &parts.headers,
            upgrade,
            trailers: seen.hop_by_hop() && parts.headers.contains_key(http::header::TE),
        }
    }
}

pub(crate) struct Attempt {
    pub(crate) result: Result<Response<UpBody>, Failure>,
    pub(crate) upstream: Option<Arc<Upstream>>,
    /// The hyper connection the answer came on, to give back once its body has ended (a
    /// hand-spoken connection travels inside the body instead).
    pub(crate) conn: Option<Pooled>,
    /// The request body, taken back if none of it was sent.
    pub(crate) unsent: Option<Incoming>,
}

/// Send `out` with `body` to one upstream of `pool`, waiting at most the env's request timeout
/// for the response head (kept by the upstream's connections, [`super::deadlines`]).
pub(crate) async fn send(
    pool: &Pool,
    out: &Outgoing<'_>,
    body: ReqBody,
    unsent: Option<Unsent>,
) -> Attempt {
    let Some(upstream) = pool.pick() else {
        return Attempt {
            result: Err(Failure::Env(EnvFault::NoUpstream)),
            upstream: None,
            conn: None,
            unsent: unsent.and_then(Unsent::take),
        };
    };
    // An upgrade (or CONNECT) goes out in HTTP/1.1 even to an HTTP/2 env: hyper hands over
    // the connection it switched on.
    let tunnel = out.upgrade || *out.method == Method::CONNECT;
    let h2 = upstream.conns.h2.as_ref().filter(|_| !tunnel);
    // TLS goes through hyper only (see `conns`).
    let by_hand = matches!(body, ReqBody::Empty)
        && !tunnel
        && !out.trailers
        && !upstream.conns.link().is_tls();
    let (result, conn) = if let Some(h2) = h2 {
        match h2.send(h2.request(out, body)).await {
            Ok((mut resp, stream)) => {
                if h1::normalize_answer(&mut resp, false) {
                    (
                        Ok(resp.map(|body| UpBody::H2 {
                            body,
                            _stream: stream,
                        })),
                        None,
                    )
                } else {
                    // An invalid answer (a head over the limit): the env failed the request.
                    (Err(Failure::Env(EnvFault::Reset)), None)
                }
            }
            Err(e) => (Err(failed(&e, &upstream)), None),
        }
    } else if by_hand {
        // The common request, no body: spoken by hand, straight from the prepared headers.
        match upstream.conns.send_raw(out).await {
            Ok(resp) => (Ok(resp.map(UpBody::Raw)), None),
            Err(e) => (Err(failed(&e, &upstream)), None),
        }
    } else {
        // Origin form (`/path?query`): the upstream connection is to this upstream already.
        let mut req = Request::new(body);
        *req.method_mut() = out.method.clone();
        *req.uri_mut() = Uri::from(out.path.clone());
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = out.headers.clone();
        match upstream.conns.send(req).await {
            Ok((mut resp, conn)) => {
                if h1::normalize_answer(&mut resp, out.upgrade) {
                    (Ok(resp.map(UpBody::Hyper)), Some(conn))
                } else {
                    // An invalid answer (a `101` nobody asked for, a head over the limit):
                    // the connection is dropped, not given back, and the env failed the
                    // request as if it had closed.
                    (Err(Failure::Env(EnvFault::Reset)), None)
                }
            }
            Err(e) => (Err(failed(&e, &upstream)), None),
        }
    };
    let unsent = if result.is_err() {
        unsent.and_then(Unsent::take)
    } else {
        None
    };
    Attempt {
        result,
        upstream: Some(upstream),
        conn,
        unsent,
    }
}

/// [`classify`], warning (rate-limited) when the proxy itself is short of resources or an
/// env's TLS handshake failed.
fn failed(e: &SendError, upstream: &Upstream) -> Failure {
    let failure = classify(e);
    match (failure, e) {
        (Failure::Proxy(kind), SendError::Connect(io)) => warn_proxy_fault(kind, upstream, io),
        (_, SendError::Tls(e)) => warn_tls(upstream, e),
        _ => {}
    }
    failure
}

/// Whose fault a failed send was: the one place that decides it.
pub(crate) fn classify(e: &SendError) -> Failure {
    match e {
        SendError::Connect(io) if out_of_resources(io) => Failure::Proxy(ProxyFault::Resources),
        SendError::Connect(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            Failure::Env(EnvFault::ConnectTimeout)
        }
        SendError::Connect(_) => Failure::Env(EnvFault::Refused),
        SendError::ConnectTimeout => Failure::Env(EnvFault::ConnectTimeout),
        SendError::Failed(e) => match client_fault(&**e) {
            Some(kind) => Failure::Client(kind),
            None => Failure::Env(EnvFault::Reset),
        },
        SendError::TimedOut => Failure::Env(EnvFault::Timeout),
        SendError::Tls(_) => Failure::Env(EnvFault::Tls),
    }
}

/// The client's fault behind a failed send, if its request body failed: hyper's client
/// reports it as "error from user's Body stream" with the body's own error as the source.
fn client_fault(e: &(dyn std::error::Error + 'static)) -> Option<ClientFault> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(body) = err.downcast_ref::<ClientBodyError>() {
            return Some(body.fault);
        }
        if let Some(t) = err.downcast_ref::<BodyTimeout>() {
            return Some(match t {
                BodyTimeout::Silent(_) => ClientFault::BodyTimeout,
                BodyTimeout::TooSlow(_) => ClientFault::BodyTooSlow,
            });
        }
        cur = err.source();
    }
    None
}

/// Connecting failed for want of the proxy's own resources, not because of the env: no file
/// handle for the socket (`EMFILE`, `ENFILE`), no free local port (`EADDRNOTAVAIL`), no kernel
/// memory (`ENOBUFS`, `ENOMEM`).
pub(crate) fn out_of_resources(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return matches!(
            code,
            libc::EMFILE | libc::ENFILE | libc::EADDRNOTAVAIL | libc::ENOBUFS | libc::ENOMEM
        );
    }
    matches!(
        e.kind(),
        std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::OutOfMemory
    )
}

/// At most one warning of a kind per this interval; the rest are counted.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// A rate-limited warning: when the next may be logged (on the coarse [`clock`]) and how many
/// were not logged since the last.
struct Warn {
    next_ms: AtomicU64,
    unlogged: AtomicU64,
}

impl Warn {
    const fn new() -> Warn {
        Warn {
            next_ms: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    /// `Some(unlogged since the last)` when this one may be logged.
    fn due(&self) -> Option<u64> {
        let now = clock::now_ms();
        let next = self.next_ms.load(Relaxed);
        let interval = WARN_INTERVAL.as_millis() as u64;
        if now < next
            || self
                .next_ms
                .compare_exchange(next, now + interval, Relaxed, Relaxed)
                .is_err()
        {
            self.unlogged.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.unlogged.swap(0, Relaxed))
    }
}

static PROXY_FAULTS: Warn = Warn::new();
static TLS_FAILURES: Warn = Warn::new();

fn warn_proxy_fault(kind: ProxyFault, upstream: &Upstream, e: &std::io::Error) {
    let Some(unlogged) = PROXY_FAULTS.due() else {
        return;
    };
    tracing::warn!(
        kind = kind.as_str(),
        upstream = %upstream.addr,
        error = %e,
        unlogged,
        "cutover itself could not connect to an upstream (out of file handles, local ports or \
         memory): answered 503 proxy-resources, not counted against the env"
    );
}

fn warn_tls(upstream: &Upstream, e: &ConnectError) {
    let Some(unlogged) = TLS_FAILURES.due() else {
        return;
    };
    tracing::warn!(
        env = upstream.scope_name(),
        upstream = %upstream.addr,
        error = %e,
        unlogged,
        "TLS handshake with an env failed: counted as a refused connect of the env (replayed on \
         FALLBACK when allowed); check the env's certificate, [envs.X] ca_file and sni"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn connect(e: io::Error) -> Failure {
        classify(&SendError::Connect(e))
    }

    #[test]
    fn the_proxy_short_of_resources_is_its_own_fault() {
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::EADDRNOTAVAIL,
            libc::ENOBUFS,
            libc::ENOMEM,
        ] {
            assert_eq!(
                connect(io::Error::from_raw_os_error(code)),
                Failure::Proxy(ProxyFault::Resources),
                "errno {code}"
            );
        }
        assert_eq!(
            connect(io::Error::from_raw_os_error(libc::ECONNREFUSED)),
            Failure::Env(EnvFault::Refused)
        );
        assert_eq!(
            connect(io::Error::from_raw_os_error(libc::ETIMEDOUT)),
            Failure::Env(EnvFault::ConnectTimeout)
        );
        assert_eq!(
            connect(io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
            Failure::Env(EnvFault::Refused)
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapped(#[source] BodyTimeout);

    #[test]
    fn a_body_that_timed_out_is_the_clients_fault_wherever_it_sits_in_the_chain() {
        let direct = SendError::Failed(Box::new(BodyTimeout::Silent(Duration::from_secs(1))));
        assert_eq!(classify(&direct), Failure::Client(ClientFault::BodyTimeout));
        let nested = SendError::Failed(Box::new(Wrapped(BodyTimeout::Silent(
            Duration::from_secs(1),
        ))));
        assert_eq!(classify(&nested), Failure::Client(ClientFault::BodyTimeout));
        let reset = SendError::Failed(Box::new(io::Error::from(io::ErrorKind::ConnectionReset)));
        assert_eq!(classify(&reset), Failure::Env(EnvFault::Reset));
        assert_eq!(
            classify(&SendError::TimedOut),
            Failure::Env(EnvFault::Timeout)
        );
    }

    #[test]
    fn a_failed_tls_handshake_is_the_envs_failed_connect() {
        let e = SendError::Tls(ConnectError::Tls {
            name: "new.test".into(),
            source: io::Error::new(io::ErrorKind::InvalidData, "invalid peer certificate"),
        });
        let failure = classify(&e);
        assert_eq!(failure, Failure::Env(EnvFault::Tls));
        assert!(failure.replayable(false, false), "nothing was sent");
        assert_eq!(EnvFault::Tls.outcome(), Outcome::Refused);
        assert_eq!(EnvFault::Tls.code(), "tls-handshake");
    }

    #[test]
    fn only_an_env_failure_other_than_a_timeout_is_replayed() {
        let refused = Failure::Env(EnvFault::Refused);
        assert!(refused.replayable(false, false));
        assert!(!Failure::Env(EnvFault::Reset).replayable(false, false));
        assert!(Failure::Env(EnvFault::Reset).replayable(true, false));
        assert!(!Failure::Env(EnvFault::Timeout).replayable(true, true));
        for kind in ClientFault::ALL {
            assert!(!Failure::Client(kind).replayable(true, true));
        }
        assert!(!Failure::Proxy(ProxyFault::Resources).replayable(true, true));
    }
}
