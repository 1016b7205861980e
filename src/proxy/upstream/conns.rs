//! Keep-alive HTTP/1.1 connections to one upstream: connect, send one request, take the
//! connection back when its response has been read to the end.
//!
//! Owns the idle connections of an upstream and nothing else (no routing, metrics or
//! timeouts of the request as a whole: [`super::attempt`] does those). Idle connections are
//! kept per data-plane worker thread ([`crate::shard`]), so a worker reuses the connections whose
//! tasks run on its own runtime and the slot lock is never contended there. The most recently
//! used connection is reused first (warm, least likely to have been closed by the upstream).
//!
//! Two kinds, kept apart: a request without a body goes out on a connection spoken to by
//! hand ([`super::rawconn`], read by the request's own task); a request with a body, and
//! every upgrade, on a hyper client connection (with its own task), which streams bodies both
//! ways at once and hands over upgraded connections. The connection of an upgrade attempt
//! never comes back: on `101` it becomes the tunnel, and one whose upgrade the env declined is
//! dropped by the upgrade handshake (the handler's) and closes after its answer (the env may
//! still be reading or skipping something of that request).
//!
//! A stale keep-alive connection (closed by the upstream while idle) never costs a user an
//! error. On hyper's, it is detected before use (`ready` fails) or, if it races, hyper hands
//! the request back unsent and it goes out on a new connection. A hand-spoken one is checked
//! before use ([`RawConn::is_stale`]: free unless the socket became readable while idle);
//! if the close races the request, an idempotent request that got no byte of an answer is
//! sent once more on a new connection, and any other fails as a reset.
//!
//! An `https://` upstream is spoken to on hyper's connections only, over the TLS stream of
//! [`super::connect`]. Its staleness is judged after decryption, by hyper's own connection
//! task (which reads while idle and closes on an end, an alert or unasked bytes, and hands an
//! unsent request back if the close races it; an idempotent request without a body that a
//! reused connection lost anyway is sent once more on a new one, as on the hand-spoken path),
//! never by peeking the socket: there a TLS 1.3
//! session ticket or a key update would look like unasked bytes and throw away good
//! connections. The hand-spoken path (whose whole point is to skip hyper's per-request work)
//! would need its own TLS record handling for little gain next to the cost of TLS itself.
//!
//! An address that leaves its name's set ([`Conns::retire`]) drops its idle connections at
//! once and every connection that comes back to it afterwards.
//!
//! The request timeout (to the response head) is kept per connection by [`super::deadlines`]:
//! a request whose connection was cut there fails as [`SendError::TimedOut`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::attempt::{idempotent, Outgoing};
use super::body::ReqBody;
use super::connect::{ConnectError, Link, UpStream};
use super::deadlines::{ConnClock, Deadlines};
use super::h2::H2Conns;
use super::rawconn::{has_unasked_bytes, RawBody, RawConn, RawError};
use crate::proxy::clock;
use crate::shard::Sharded;

/// Idle connections kept per worker slot; more are closed when they come back.
const MAX_IDLE_PER_SLOT: usize = 1024;
/// An idle connection older than this is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a returned connection may take to become ready for the next request.
const READY_WAIT: Duration = Duration::from_secs(5);

fn expired<C>(idle: &Idle<C>, now_ms: u64) -> bool {
    now_ms.saturating_sub(idle.since_ms) > IDLE_TIMEOUT.as_millis() as u64
}

/// Why no answer came back from the upstream.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Connecting failed: nothing was sent.
    Connect(std::io::Error),
    /// No connection within the connect timeout: nothing was sent.
    ConnectTimeout,
    /// The connection closed or failed; the request may have been (partly) sent.
    Failed(Box<dyn std::error::Error + Send + Sync>),
    /// No answer within the request timeout (the connection was cut).
    TimedOut,
    /// The TLS handshake failed (the env's certificate did not verify): nothing was sent.
    Tls(ConnectError),
}

impl From<ConnectError> for SendError {
    fn from(e: ConnectError) -> SendError {
        match e {
            ConnectError::Io(e) => SendError::Connect(e),
            ConnectError::TimedOut => SendError::ConnectTimeout,
            e @ ConnectError::Tls { .. } => SendError::Tls(e),
        }
    }
}

/// An upstream connection out of the pool, with its request clock.
pub(crate) struct Pooled {
    tx: SendRequest<ReqBody>,
    clock: Arc<ConnClock>,
    /// A second descriptor of the connection's socket, to ask the kernel whether the upstream
    /// sent something while the connection was idle (see [`Pooled::is_stale`]). Holding it
    /// keeps the socket open until the connection leaves the pool, at most the idle timeout.
    /// `None` over TLS (see the module's doc).
    peek: Option<std::os::fd::OwnedFd>,
}

impl Pooled {
    /// Whether the upstream closed this idle connection or sent bytes nobody asked for. hyper's
    /// own task notices either only once the runtime has polled for the socket's events; a
    /// request sent before that would take the stray bytes for its answer. The kernel knows at
    /// once (`RawConn::is_stale` does the same for the hand-spoken connections).
    fn is_stale(&self) -> bool {
        self.tx.is_closed() || self.peek.as_ref().is_some_and(has_unasked_bytes)
    }
}

struct Idle<C> {
    conn: C,
    /// When it came back, on the coarse [`clock`].
    since_ms: u64,
}

/// Idle connections of one kind, per worker ([`Sharded`]: a worker takes back its own).
struct Slots<C>(Sharded<Mutex<Vec<Idle<C>>>>);

impl<C> Slots<C> {
    fn len(&self) -> usize {
        self.0.iter().map(|s| s.lock().map_or(0, |v| v.len())).sum()
    }

    fn keep(&self, conn: C) {
        let Ok(mut idle) = self.0.local().lock() else {
            return;
        };
        let now = clock::now_ms();
        if idle.first().is_some_and(|oldest| expired(oldest, now)) {
            idle.retain(|i| !expired(i, now));
        }
        if idle.len() < MAX_IDLE_PER_SLOT {
            idle.push(Idle {
                conn,
                since_ms: now,
            });
        }
    }

    /// Close every idle connection, in every slot.
    fn clear(&self) {
        for slot in self.0.iter() {
            if let Ok(mut idle) = slot.lock() {
                idle.clear();
            }
        }
    }

    /// The most recently used idle connection that is fresh enough and `usable`.
    fn take(&self, usable: impl Fn(&C) -> bool) -> Option<C> {
        let mut idle = self.0.local().lock().ok()?;
        let now = clock::now_ms();
        while let Some(i) = idle.pop() {
            if !expired(&i, now) && usable(&i.conn) {
                return Some(i.conn);
            }
        }
        None
    }
}

/// The idle connections of one upstream.
pub(crate) struct Conns {
    addr: SocketAddr,
    /// How to connect (shared by every address of one configured upstream).
    link: Arc<Link>,
    /// The address left its name's set: connections coming back are dropped.
    pub(super) retired: AtomicBool,
    deadlines: Arc<Deadlines>,
    /// Idle hyper connections (requests with a body, upgrades).
    slots: Slots<Pooled>,
    /// Idle hand-spoken connections (requests without a body).
    raw: Slots<RawConn>,
    /// Its HTTP/2 connections, for an env with `protocol = "h2"` (upgrades still go over
    /// HTTP/1.1, on the connections above).
    pub(crate) h2: Option<H2Conns>,
}

impl std::fmt::Debug for Conns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conns")
            .field("addr", &self.addr)
            .field("idle", &self.idle())
            .finish()
    }
}

impl Conns {
    pub(crate) fn new(addr: SocketAddr, link: Arc<Link>, request_timeout: Duration) -> Conns {
        Conns {
            addr,
            retired: AtomicBool::new(false),
            deadlines: Deadlines::new(request_timeout),
            slots: Slots(Sharded::default()),
            raw: Slots(Sharded::default()),
            h2: link
                .h2
                .then(|| H2Conns::new(addr, link.clone(), request_timeout)),
            link,
        }
    }

    /// Idle connections held, over all slots and both kinds.
    pub(crate) fn idle(&self) -> usize {
        self.slots.len() + self.raw.len()
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    /// The address left its name's set: close the idle connections, and every one that comes
    /// back from now on. Requests in flight on it finish.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Relaxed);
        self.slots.clear();
        self.raw.clear();
    }

    /// Send `out`, a request without a body, on an idle hand-spoken connection (or a new
    /// one), waiting at most the request timeout for the response head. The connection comes
    /// with the response body: give it back with [`Conns::put_raw`] once the body has ended.
    pub(crate) async fn send_raw(
        &self,
        out: &Outgoing<'_>,
    ) -> Result<Response<RawBody>, SendError> {
        let resend_ok = idempotent(out.method);
        let mut pooled_ok = true;
        loop {
            // A pooled connection the upstream closed (or sent something unasked on) while
            // it was idle is dropped here. If the close races the request, an idempotent
            // request is sent once more, on a new connection; any other is not.
            let pooled = pooled_ok
                .then(|| self.raw.take(|c| !c.is_stale()))
                .flatten();
            let (conn, reused) = match pooled {
                Some(conn) => (conn, true),
                None => (self.connect_raw().await?, false),
            };
            match conn.send(out, self.link.host.as_ref()).await {
                Ok(resp) => return Ok(resp),
                // Most likely stale: the upstream closed it while it was idle.
                Err(RawError::NoAnswer(_)) if reused && resend_ok => pooled_ok = false,
                Err(RawError::NoAnswer(e)) => {
                    tracing::debug!(upstream = %self.addr, error = %e, "no answer from the upstream");
                    return Err(SendError::Failed(e.into()));
                }
                Err(RawError::Broken(e)) => {
                    tracing::debug!(upstream = %self.addr, error = %e, "broken answer from the upstream");
                    return Err(SendError::Failed(e));
                }
                Err(RawError::TimedOut) => return Err(SendError::TimedOut),
            }
        }
    }

    /// Give back a hand-spoken connection whose response has been read to the end.
    pub(crate) fn put_raw(&self, conn: RawConn) {
        if !self.retired.load(Relaxed) {
            self.raw.keep(conn);
        }
    }

    /// Send `req` on an idle connection (or a new one), waiting at most the request timeout
    /// for the response head once it is handed over. On success, the connection comes with
    /// the response: give it back with [`Conns::put`] once the response body has ended.
    pub(crate) async fn send(
        &self,
        mut req: Request<ReqBody>,
    ) -> Result<(Response<Incoming>, Pooled), SendError> {
        if let Some(host) = &self.link.host {
            req.headers_mut().insert(http::header::HOST, host.clone());
        }
        // Over TLS every request comes here, the bodiless ones included: as on the hand-spoken
        // path, an idempotent one that a reused connection lost (closed under it) is sent once
        // more on a new connection, from a copy of its head.
        let mut again = self.link.is_tls().then(|| bodiless_copy(&req)).flatten();
        loop {
            let (mut conn, reused) = match self.take() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            if let Err(e) = conn.tx.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Failed(e.into()));
            }
            let answer = conn.tx.try_send_request(req);
            conn.clock.start();
            let answer = answer.await;
            if !conn.clock.stop() {
                return Err(SendError::TimedOut);
            }
            match answer {
                Ok(resp) => return Ok((resp, conn)),
                Err(mut e) => match e.take_message() {
                    // Handed back unsent: the connection died under it. A pooled one was
                    // stale; a new one is given up on as if it had refused.
                    Some(unsent) if reused => req = unsent,
                    Some(_) => {
                        return Err(SendError::Connect(std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            e.into_error(),
                        )))
                    }
                    None if reused && closed_under(e.error()) => match again.take() {
                        Some(copy) => req = copy,
                        None => return Err(SendError::Failed(e.into_error().into())),
                    },
                    None => return Err(SendError::Failed(e.into_error().into())),
                },
            }
        }
    }

    /// Give back a connection whose response has been read to the end.
    ///
    /// Usually it is ready for the next request at once. When it is not — the upstream
    /// answered before the request body was all sent — a task waits (boundedly) for it, so a
    /// request never queues behind someone else's upload.
    pub(crate) fn put(self: &Arc<Self>, mut conn: Pooled) {
        if conn.tx.is_closed() || self.retired.load(Relaxed) {
            return;
        }
        if !conn.tx.is_ready() {
            let conns = self.clone();
            tokio::spawn(async move {
                let ready = tokio::time::timeout(READY_WAIT, conn.tx.ready()).await;
                if matches!(ready, Ok(Ok(()))) && !conns.retired.load(Relaxed) {
                    conns.slots.keep(conn);
                }
            });
            return;
        }
        self.slots.keep(conn);
    }

    /// The most recently used idle hyper connection that is still open and fresh enough.
    fn take(&self) -> Option<Pooled> {
        self.slots.take(|c| !c.is_stale())
    }

    async fn connect_raw(&self) -> Result<RawConn, SendError> {
        let stream = self.link.connect_tcp(self.addr).await?;
        Ok(RawConn::new(stream, self.deadlines.watch()))
    }

    async fn connect(&self) -> Result<Pooled, SendError> {
        let stream = self.link.connect(self.addr).await?;
        // Without a second descriptor (the process is out of them) the connection still works;
        // it is then checked only as hyper sees it. Over TLS the socket is never peeked.
        let peek = match &stream {
            UpStream::Plain(tcp) => std::os::fd::AsFd::as_fd(tcp).try_clone_to_owned().ok(),
            UpStream::Tls(_) => None,
        };
        let (tx, conn) = http1::Builder::new()
            .writev(false)
            // The answer-head limit of cutover's own client (an answer whose head is larger
            // is refused whole on both paths).
            .max_buf_size(super::h1::MAX_HEAD)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Failed(e.into()))?;
        let addr = self.addr;
        let watched = self.deadlines.watch();
        let clock = watched.clock().clone();
        watched.run(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(upstream = %addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(Pooled { tx, clock, peek })
    }
}

/// The connection closed (or was reset) under the request: hyper's own word for it, or, over
/// TLS, the end of the stream as rustls reports it (an env that closes without `close_notify`).
fn closed_under(e: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    e.is_incomplete_message()
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| matches!(io.kind(), UnexpectedEof | ConnectionReset | BrokenPipe))
}

/// A copy of `req`'s head, if it is an idempotent request without a body (safe to send again).
fn bodiless_copy(req: &Request<ReqBody>) -> Option<Request<ReqBody>> {
    if !matches!(req.body(), ReqBody::Empty) || !idempotent(req.method()) {
        return None;
    }
    let mut copy = Request::new(ReqBody::Empty);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_reused_until_the_idle_timeout_then_dropped() {
        clock::follow_tokio();
        let slots: Slots<u32> = Slots(Sharded::default());
        slots.keep(1);
        tokio::time::advance(IDLE_TIMEOUT).await;
        assert_eq!(slots.take(|_| true), Some(1), "fresh enough at the timeout");
        slots.keep(1);
        tokio::time::advance(IDLE_TIMEOUT + Duration::from_millis(1)).await;
        assert_eq!(slots.take(|_| true), None, "reused past the idle timeout");
        assert_eq!(
            slots.len(),
            0,
            "an expired connection is dropped when looked at"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expired_connections_are_dropped_when_another_comes_back() {
        clock::follow_tokio();
        let slots: Slots<u32> = Slots(Sharded::default());
        slots.keep(1);
        slots.keep(2);
        tokio::time::advance(IDLE_TIMEOUT / 2).await;
        slots.keep(3);
        tokio::time::advance(IDLE_TIMEOUT / 2 + Duration::from_millis(1)).await;
        slots.keep(4);
        assert_eq!(slots.len(), 2, "the two expired ones went when 4 came back");
        assert_eq!(
            slots.take(|&c| c != 4),
            Some(3),
            "the most recent usable one"
        );
    }
}
