//! Keep-alive HTTP/1.1 connections to one upstream: connect, send one request, take the
//! connection back when its response has been read to the end.
//!
//! Owns the idle connections of an upstream and nothing else (no routing, metrics or
//! timeouts of the request as a whole: [`super::attempt`] does those). Idle connections are
//! kept per data-plane worker thread ([`crate::shard`]), so a worker reuses the connections whose
//! tasks run on its own runtime and the slot lock is never contended there. The most recently
//! used connection is reused first (warm, least likely to have been closed by the upstream).
//!
//! A pooled connection the upstream closed meanwhile is detected before use (`ready` fails)
//! or, if it races, hyper hands the request back unsent and it goes out on a new connection:
//! a stale keep-alive connection never costs a user an error.
//!
//! The request timeout (to the response head) is kept per connection by [`super::deadlines`]:
//! a request whose connection was cut there fails as [`SendError::TimedOut`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::ReqBody;
use super::clock;
use super::deadlines::{ConnClock, Deadlines};
use crate::shard::Sharded;

/// Idle connections kept per worker slot; more are closed when they come back.
const MAX_IDLE_PER_SLOT: usize = 1024;
/// An idle connection older than this is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a returned connection may take to become ready for the next request.
const READY_WAIT: Duration = Duration::from_secs(5);
/// TCP keep-alive probes on upstream connections after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

fn expired(idle: &Idle, now_ms: u64) -> bool {
    now_ms.saturating_sub(idle.since_ms) > IDLE_TIMEOUT.as_millis() as u64
}

/// Why no answer came back from the upstream.
#[derive(Debug)]
pub enum SendError {
    /// Connecting failed: nothing was sent.
    Connect(std::io::Error),
    /// No connection within the connect timeout: nothing was sent.
    ConnectTimeout,
    /// The connection closed or failed; the request may have been (partly) sent.
    Failed(hyper::Error),
    /// No answer within the request timeout (the connection was cut).
    TimedOut,
}

/// An upstream connection out of the pool, with its request clock.
pub struct Pooled {
    tx: SendRequest<ReqBody>,
    clock: Arc<ConnClock>,
}

struct Idle {
    conn: Pooled,
    /// When it came back, on the coarse [`clock`].
    since_ms: u64,
}

/// The idle connections of one upstream.
pub struct Conns {
    addr: SocketAddr,
    connect_timeout: Duration,
    deadlines: Arc<Deadlines>,
    /// Idle connections per worker ([`Sharded`]: a worker takes back its own).
    slots: Sharded<Mutex<Vec<Idle>>>,
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
    pub fn new(addr: SocketAddr, connect_timeout: Duration, request_timeout: Duration) -> Conns {
        Conns {
            addr,
            connect_timeout,
            deadlines: Deadlines::new(request_timeout),
            slots: Sharded::default(),
        }
    }

    /// Idle connections held, over all slots.
    pub fn idle(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.lock().map_or(0, |v| v.len()))
            .sum()
    }

    /// Send `req` on an idle connection (or a new one), waiting at most the request timeout
    /// for the response head once it is handed over. On success, the connection comes with
    /// the response: give it back with [`Conns::put`] once the response body has ended.
    pub async fn send(
        &self,
        mut req: Request<ReqBody>,
    ) -> Result<(Response<Incoming>, Pooled), SendError> {
        loop {
            let (mut conn, reused) = match self.take() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            if let Err(e) = conn.tx.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Failed(e));
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
                    None => return Err(SendError::Failed(e.into_error())),
                },
            }
        }
    }

    /// Give back a connection whose response has been read to the end.
    ///
    /// Usually it is ready for the next request at once. When it is not — the upstream
    /// answered before the request body was all sent — a task waits (boundedly) for it, so a
    /// request never queues behind someone else's upload.
    pub fn put(self: &Arc<Self>, mut conn: Pooled) {
        if conn.tx.is_closed() {
            return;
        }
        if !conn.tx.is_ready() {
            let conns = self.clone();
            tokio::spawn(async move {
                if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, conn.tx.ready()).await {
                    conns.keep(conn);
                }
            });
            return;
        }
        self.keep(conn);
    }

    fn keep(&self, conn: Pooled) {
        let Ok(mut idle) = self.slots.local().lock() else {
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

    /// The most recently used idle connection that is still open and fresh enough.
    fn take(&self) -> Option<Pooled> {
        let mut idle = self.slots.local().lock().ok()?;
        let now = clock::now_ms();
        while let Some(i) = idle.pop() {
            if !i.conn.tx.is_closed() && !expired(&i, now) {
                return Some(i.conn);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Pooled, SendError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(SendError::Connect(e)),
                Err(_) => return Err(SendError::ConnectTimeout),
            };
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let (tx, conn) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Failed)?;
        let addr = self.addr;
        let watched = self.deadlines.watch();
        let clock = watched.clock().clone();
        watched.run(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(upstream = %addr, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(Pooled { tx, clock })
    }
}
