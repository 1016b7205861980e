//! The client listener: accepts connections, speaks HTTP/1.1 and HTTP/2 (h2c, prior knowledge
//! or upgrade-free), enforces the client limits, and drains gracefully on shutdown.
//!
//! Per connection: claim a slot under `max_connections` (else 503 and close), on a TLS listener
//! shake hands within `header_read_timeout` ([`crate::tls::accept`]; counted in
//! `cutover_tls_handshakes_total`, failures logged at debug), build hyper's
//! settings from the current [`Limits`], record when bytes move and hand it to the worker's
//! [`Supervisor`] (idle close, request-head timeout, drain), and screen its HTTP/1 requests
//! for conflicting framing ([`super::screen`]).
//! Per request: load the current [`Proxy`], refuse what [`refuse`] refuses, and run the handler
//! under the request's body deadline.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::conn::{self, Activity, Busy, ClientSocket, Open, OpenGuard, Tracked};
use super::lane::{FrontConn, HyperHandoff, Setup, Stream};
use super::live::{ConnCurrent, Current, Live};
use super::refuse;
use super::rewind::Rewind;
use super::screen::Screened;
use super::settings;
use super::supervise::{Ended, Supervisor};
use crate::config::Limits;
use crate::metrics::{ClientFault, Handshake};
use crate::proxy::handler::answer;
use crate::proxy::handler::{Proxy, Session};
use crate::proxy::upstream::body::{self, ClientBody, RespBody};
use crate::proxy::upstream::body_watch::{BodyWatch, BODY_WATCH};
use crate::tls::{self, accept::NotTls};

/// Accept-queue length asked of the kernel for the client listener (capped by
/// `net.core.somaxconn`). The default of `TcpListener::bind` is 128: a reconnect storm of a
/// thousand clients would overflow it, and each dropped SYN comes back only after a 1 s (then
/// 3 s) retransmit — a herd made worse by the listener itself.
pub(crate) const LISTEN_BACKLOG: u32 = 4096;

/// Bind the client listener on `addr` with [`LISTEN_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serve clients on `listener` with the default [`Limits`] until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    serve_live(
        listener,
        Live::new(proxy, Limits::default(), drain_timeout),
        shutdown,
    )
    .await
}

/// Serve clients on `listener` until `shutdown` resolves; then stop accepting, let in-flight
/// requests and tunnels finish within the drain timeout, and return. What `live` holds may be
/// swapped at any time (a config reload). Everything runs on the caller's runtime; `cutover
/// serve` spreads connections over one runtime per core instead ([`super::workers`]).
pub async fn serve_live(
    listener: TcpListener,
    live: Arc<Live>,
    shutdown: impl Future<Output = ()>,
) {
    let supervisor = Supervisor::new();
    let sweeper = spawn_sweeper(&supervisor, &live);
    let open = Arc::new(Open::default());
    let drain = spawn_tunnel_drain(&live);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = next_conn(&listener, &live, &open) => {
                spawn_conn(accepted, &live, &supervisor, ());
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    drain.abort();
    sweeper.abort();
    drain_all(&supervisor, &live).await;
}

/// The task that closes tunnels of users moved to the other env, at the drain rate.
/// The rate is read from the live state before each drain, so a reload's rate applies.
pub(super) fn spawn_tunnel_drain(live: &Arc<Live>) -> tokio::task::JoinHandle<()> {
    let proxy = live.load().proxy.clone();
    let live = live.clone();
    tokio::spawn(crate::proxy::tunnel::drain::run(
        proxy.tunnels.clone(),
        proxy.router.clone(),
        proxy.metrics.clone(),
        move || live.load().proxy.drain_rate(),
    ))
}

/// The task that closes the idle connections of `supervisor`, at the idle timeout in force.
pub(super) fn spawn_sweeper(
    supervisor: &Arc<Supervisor>,
    live: &Arc<Live>,
) -> tokio::task::JoinHandle<()> {
    let live = live.clone();
    tokio::spawn(supervisor.clone().sweep(move || live.load().limits))
}

/// A client connection accepted and counted under `max_connections`.
pub(super) struct Accepted<S> {
    pub(crate) stream: S,
    pub(crate) client: SocketAddr,
    pub(crate) slot: OpenGuard,
}

impl<S> Accepted<S> {
    /// The same connection over another stream type (moving it between runtimes).
    pub(crate) fn try_map<T>(
        self,
        f: impl FnOnce(S) -> std::io::Result<T>,
    ) -> std::io::Result<Accepted<T>> {
        Ok(Accepted {
            stream: f(self.stream)?,
            client: self.client,
            slot: self.slot,
        })
    }
}

/// How long the acceptor waits after a failed accept (out of open files: nothing to gain by
/// trying again at once).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Failed accepts not logged yet, and when (coarse clock, ms) the last line was written.
static ACCEPT_FAILED: AtomicU64 = AtomicU64::new(0);
static ACCEPT_LOGGED_MS: AtomicU64 = AtomicU64::new(0);

/// Wait for the next connection that may be served. A failed accept backs off briefly; a
/// connection past `max_connections` is answered 503 and closed. Cancel-safe.
pub(super) async fn next_conn(
    listener: &TcpListener,
    live: &Live,
    open: &Arc<Open>,
) -> Accepted<TcpStream> {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                log_accept_failure(&e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let max = live.load().limits.max_connections;
        match open.try_claim(max) {
            Some(slot) => {
                return Accepted {
                    stream,
                    client,
                    slot,
                }
            }
            None => {
                tracing::debug!(%client, max, "connection refused: too many open");
                tokio::spawn(conn::refuse(stream));
            }
        }
    }
}

/// Log a failed accept at most once a second, with how many failed since the last line (out
/// of open files, the acceptor fails twenty times a second).
fn log_accept_failure(e: &std::io::Error) {
    ACCEPT_FAILED.fetch_add(1, Relaxed);
    let now = crate::proxy::clock::now_ms().max(1);
    let last = ACCEPT_LOGGED_MS.load(Relaxed);
    if (last == 0 || now.saturating_sub(last) >= 1000)
        && ACCEPT_LOGGED_MS
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
    {
        let failed = ACCEPT_FAILED.swap(0, Relaxed);
        tracing::warn!(error = %e, failed, "accept failed (out of open files? see LimitNOFILE in docs/operations.md)");
    }
}

/// Serve one client connection on the current runtime until it ends, or `supervisor` closes
/// it (idle) or drains it. `hold` is dropped when the connection ends. On a TLS listener the
/// handshake comes first, in the connection's own task, within the header read timeout (a
/// silent client cannot hold its slot longer than one that sends no head).
pub(super) fn spawn_conn(
    accepted: Accepted<TcpStream>,
    live: &Arc<Live>,
    supervisor: &Arc<Supervisor>,
    hold: impl Send + 'static,
) {
    let Accepted {
        stream,
        client,
        slot,
    } = accepted;
    // The connection's copy of the state; its limits are the ones this connection starts with.
    let current = ConnCurrent::new(live.clone());
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    let Some(tls) = live.tls() else {
        let watched = ClientSocket::new(stream, activity.clone(), slot);
        let conn = serve_conn(watched, Alpn::Plain, client, current, activity, supervisor);
        tokio::spawn(async move {
            let _hold = hold;
            report(conn.await, client);
        });
        return;
    };
    let supervisor = supervisor.clone();
    tokio::spawn(async move {
        let _hold = hold;
        let (deadline, metrics) = {
            let c = current.load();
            (c.limits.header_read_timeout, c.proxy.metrics.clone())
        };
        let wrap = |tcp| ClientSocket::new(tcp, activity.clone(), slot);
        let stream = match tls::accept::accept(&tls, stream, wrap, deadline).await {
            Ok(s) => s,
            Err(e) => {
                metrics.record_handshake(match e {
                    NotTls::Timeout(_) => Handshake::Timeout,
                    NotTls::PlainHttp => Handshake::PlainHttp,
                    NotTls::Closed | NotTls::Failed(_) => Handshake::Failed,
                });
                tracing::debug!(%client, error = %e, "no TLS connection");
                return;
            }
        };
        metrics.record_handshake(Handshake::Done);
        let alpn = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Alpn::H2,
            _ => Alpn::Http1,
        };
        let conn = serve_conn(stream, alpn, client, current, activity, &supervisor);
        report(conn.await, client);
    });
}

/// What a connection speaks, as far as the listener knows before its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alpn {
    /// Plain HTTP: HTTP/1.1, or HTTP/2 with prior knowledge (hyper tells them apart).
    Plain,
    /// TLS, HTTP/1.1 chosen (or nothing: HTTP/1.1 is the default).
    Http1,
    /// TLS, `h2` chosen: hyper's HTTP/2 server from the first byte.
    H2,
}

/// The future of one client connection over `stream`, supervised: the own lane first (unless
/// off, or HTTP/2), then hyper's server. The same for plain and TLS connections, so a request
/// is answered the same way on both.
fn serve_conn<S: Stream>(
    stream: S,
    alpn: Alpn,
    client: SocketAddr,
    current: ConnCurrent,
    activity: Arc<Activity>,
    supervisor: &Arc<Supervisor>,
) -> impl Future<Output = Ended<impl std::fmt::Display>> + Send + 'static {
    let (limits, lane, metrics) = {
        let c = current.load();
        (c.limits, c.client_lane, c.proxy.metrics.clone())
    };
    let setup = Setup {
        io: Screened::new(stream, activity.clone(), client).counting(metrics),
        client,
        current,
        session: Arc::new(Session::new(alpn != Alpn::Plain)),
        activity: activity.clone(),
        max_head: limits.max_header_bytes,
        max_headers: limits.max_headers,
        enabled: lane && alpn != Alpn::H2,
    };
    // hyper takes the connection from the first request the lane does not take on.
    let builder = settings::builder(&limits);
    let for_hyper = activity.clone();
    let conn = FrontConn::new(setup, move |h: HyperHandoff<S>| {
        let HyperHandoff {
            unread,
            io,
            current,
            session,
        } = h;
        let service = service_fn(move |req: Request<Incoming>| {
            let busy = for_hyper.begin();
            one_request(current.load(), req.map(Some), client, session.clone(), busy)
        });
        builder
            .serve_connection_with_upgrades(TokioIo::new(Rewind::new(unread, io)), service)
            .into_owned()
    });
    supervisor.supervise(conn, activity, &limits)
}

/// Log how a client connection ended.
fn report(ended: Ended<impl std::fmt::Display>, client: SocketAddr) {
    match ended {
        Ended::Done(Ok(())) => {}
        Ended::Done(Err(e)) => {
            tracing::debug!(error = %e, "client connection ended with an error");
        }
        Ended::Closed => tracing::debug!(%client, "closed a client connection"),
    }
}

/// After the listener stopped: let in-flight requests and then tunnels finish within the
/// drain timeout, closing what is left when it runs out.
pub(super) async fn drain_all(supervisor: &Supervisor, live: &Live) {
    let drain_timeout = live.load().drain_timeout;
    tracing::info!(?drain_timeout, "draining client connections");
    let start = tokio::time::Instant::now();
    let left = supervisor.drain(drain_timeout).await;
    if left > 0 {
        tracing::warn!(
            ?drain_timeout,
            left,
            "drain timeout: closing remaining client connections"
        );
    }
    let left = live
        .tunnels()
        .drain(drain_timeout.saturating_sub(start.elapsed()))
        .await;
    if left > 0 {
        tracing::warn!(left, "drain timeout: closed remaining tunnels");
    }
}

/// One request with the state current when it arrived, counted in flight on its connection
/// (`busy`) until its answer's body ends.
///
/// This is the whole future hyper keeps per request (no wrapper around it): a layer more
/// would hold another copy of the request and be moved in and out of hyper with it.
pub(super) async fn one_request(
    current: Arc<Current>,
    req: Request<ClientBody>,
    client: SocketAddr,
    session: Arc<Session>,
    busy: Busy,
) -> Result<Response<Tracked<RespBody>>, Infallible> {
    let resp = if let Some(refused) = refuse::check(&req, &current.limits) {
        let now = std::time::Instant::now();
        current
            .proxy
            .metrics
            .record_client_error(ClientFault::BadRequest, now);
        refused
    } else if body::is_empty(req.body()) {
        // No body, so no body deadline to watch: the common GET takes the short path. A
        // client that closes before its answer drops this future (hyper's server and the
        // lane both cancel): counted as the client's, once.
        let gone = Gone(Some(&current.proxy.metrics));
        let resp = current.proxy.handle(req, client, &session).await;
        gone.answered();
        resp
    } else {
        // Boxed: the common path's future stays small (it is moved on every request).
        Box::pin(with_body_deadline(&current, req, client, &session)).await
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        busy.mark_upgraded();
    }
    Ok(resp.map(|b| Tracked::new(b, busy)))
}

/// Counts a request whose client went away before its answer ([`ClientFault::Gone`]) when
/// dropped before [`Gone::answered`].
struct Gone<'a>(Option<&'a crate::metrics::Metrics>);

impl Gone<'_> {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            m.record_client_error(ClientFault::Gone, std::time::Instant::now());
        }
    }
}

/// Handle a request with a body under the body-read deadline: a client silent for longer gets
/// 408, and the attempt's failure is not blamed on the env.
async fn with_body_deadline(
    current: &Current,
    req: Request<ClientBody>,
    client: SocketAddr,
    session: &Session,
) -> Response<RespBody> {
    let watch = BodyWatch::new(&current.limits);
    let proxy = current.proxy.clone();
    let handled = BODY_WATCH.scope(watch.clone(), async move {
        proxy.handle(req, client, session).await
    });
    tokio::select! {
        // Checked first: once the body deadline fired, the attempt's failure is the client's
        // doing and must not be recorded against the env.
        biased;
        fault = watch.expired() => {
            tracing::debug!(%client, ?fault, "request body timed out");
            answer::body_deadline(&watch, fault)
        }
        resp = handled => resp,
    }
}
