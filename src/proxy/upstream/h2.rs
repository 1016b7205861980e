//! HTTP/2 towards an env (`[envs.X] protocol = "h2"`): cleartext with prior knowledge (h2c),
//! over a few multiplexed connections per upstream.
//!
//! Owns: [`H2Conns`] — each worker's connections to one upstream, the connect its requests
//! share, and the stream count that decides when another connection is needed — the request
//! as HTTP/2 wants it ([`H2Conns::request`]), [`Sent`] (the request body, keeping the
//! client's own error) and [`H2Stream`], a stream's place on its connection until its
//! answer's body ends. Must not touch: routing, metrics, answers to the client, or whose
//! fault a failure is ([`super::attempt::classify`] decides that from the [`SendError`]
//! returned here, exactly as for HTTP/1.1).
//!
//! Connections: a worker's requests to an upstream share that worker's connections (hyper's
//! HTTP/2 client, one task per connection); a request takes the first open one with a free
//! stream. A connection carries at most the peer's `SETTINGS_MAX_CONCURRENT_STREAMS` streams
//! and at most [`MAX_STREAMS`]; when every one is full or closed (GOAWAY, an error, a ping
//! unanswered for [`PING_TIMEOUT`]), one new connection is made, and the requests arriving
//! meanwhile wait for that same connect instead of each opening their own. A connection
//! without streams for [`IDLE_TIMEOUT`] is dropped when next looked at. A closed connection
//! is noticed before use (`is_closed`), or hyper hands the request back unsent and it goes
//! out on another connection: as on the HTTP/1.1 pools, a stale connection never costs a
//! user an error.
//!
//! Failures are the HTTP/1.1 paths' [`SendError`]s: connecting refused or timed out (nothing
//! sent, replayable on FALLBACK), the connection or the stream failed (`Failed`, a reset), no
//! answer head within the request timeout (`TimedOut`: the stream is reset with `CANCEL`; the
//! connection and its other streams go on). The request timeout is one tokio timer per
//! request here, not [`super::deadlines`]' sweeper, whose clock is one request per
//! connection. A client's body that fails is the client's fault: hyper's HTTP/2 client only
//! logs a request body's error and resets the stream, so [`Sent`] keeps the error and the
//! attempt fails with it, where `classify` finds it.
//!
//! TLS: [`handshake`] takes any byte stream, so an `https` upstream whose ALPN chose `h2`
//! can run the same connections over its TLS stream; [`H2Conns`] connects in cleartext.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::header;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::attempt::Outgoing;
use super::body::ReqBody;
use super::connect::{ConnectError, Link};
use super::conns::SendError;
use crate::proxy::clock;
use crate::shard::Sharded;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Streams one connection carries at once, at most (fewer if the peer says so): the
/// `SETTINGS_MAX_CONCURRENT_STREAMS` most servers announce, and RFC 9113's advised minimum.
pub(crate) const MAX_STREAMS: usize = 100;
/// A connection without streams for this long is dropped.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A silent connection is pinged this often…
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// …and closed when the answer takes longer than this.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connections a request handed back unsent may try before it fails.
const SENDS: usize = 3;

/// One HTTP/2 connection to an upstream.
#[derive(Debug)]
pub(crate) struct H2Conn {
    tx: SendRequest<Sent>,
    /// Streams open on it: requests sent whose answer has not ended.
    streams: AtomicUsize,
    /// The streams it may carry: the peer's limit as its task last saw it, within
    /// [`MAX_STREAMS`].
    limit: Arc<AtomicUsize>,
    /// When its last stream ended, on the coarse [`clock`].
    idle_since_ms: AtomicU64,
}

impl H2Conn {
    fn has_room(&self) -> bool {
        self.streams.load(Relaxed) < self.limit.load(Relaxed)
    }

    fn idle_too_long(&self, now_ms: u64) -> bool {
        self.streams.load(Relaxed) == 0
            && now_ms.saturating_sub(self.idle_since_ms.load(Relaxed))
                > IDLE_TIMEOUT.as_millis() as u64
    }
}

/// Start HTTP/2 on `io` (prior knowledge: the preface is sent at once) and run the
/// connection on its own task. Generic over the stream, so TLS with ALPN `h2` can use it.
pub(crate) async fn handshake<IO>(io: IO, addr: SocketAddr) -> Result<H2Conn, SendError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        // The answer-head limit of the HTTP/1.1 paths.
        .max_header_list_size(super::h1::MAX_HEAD as u32)
        .handshake::<_, Sent>(TokioIo::new(io))
        .await
        .map_err(|e| SendError::Failed(e.into()))?;
    let limit = Arc::new(AtomicUsize::new(MAX_STREAMS));
    let seen = limit.clone();
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        // The peer's stream limit is known only to the connection: read it whenever the
        // connection has had something to do (its SETTINGS may change it at any time).
        let ended = std::future::poll_fn(|cx| {
            let polled = conn.as_mut().poll(cx);
            let peer = conn.current_max_send_streams();
            seen.store(peer.clamp(1, MAX_STREAMS), Relaxed);
            polled
        })
        .await;
        if let Err(e) = ended {
            tracing::debug!(upstream = %addr, error = %e, "HTTP/2 upstream connection ended with an error");
        }
    });
    Ok(H2Conn {
        tx,
        streams: AtomicUsize::new(0),
        limit,
        idle_since_ms: AtomicU64::new(clock::now_ms()),
    })
}

/// A connect in progress, awaited by every request that needs it.
type Connecting = Shared<BoxFuture<'static, Result<Arc<H2Conn>, Arc<SendError>>>>;

/// One worker's connections to the upstream.
#[derive(Default)]
struct Slot {
    conns: Vec<Arc<H2Conn>>,
    connecting: Option<Connecting>,
}

/// What a request goes out on.
enum Pick {
    Ready(Arc<H2Conn>),
    Wait(Connecting),
}

/// The HTTP/2 connections to one upstream, kept per worker.
pub(crate) struct H2Conns {
    addr: SocketAddr,
    /// `:scheme` and `:authority` of a request whose `Host` is no valid authority.
    scheme: Scheme,
    authority: Authority,
    /// How to connect: TCP, and TLS for an `https://` upstream.
    link: Arc<Link>,
    request_timeout: Duration,
    slots: Sharded<Mutex<Slot>>,
}

impl std::fmt::Debug for H2Conns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Conns")
            .field("addr", &self.addr)
            .field("open", &self.open())
            .finish()
    }
}

impl H2Conns {
    pub(crate) fn new(addr: SocketAddr, link: Arc<Link>, request_timeout: Duration) -> H2Conns {
        // `host_header` names the env's own authority; else a socket address always is one.
        let authority = link
            .host
            .as_ref()
            .and_then(|h| Authority::try_from(h.as_bytes()).ok())
            .or_else(|| Authority::try_from(addr.to_string()).ok())
            .unwrap_or_else(|| Authority::from_static("localhost"));
        H2Conns {
            addr,
            scheme: if link.is_tls() {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            },
            authority,
            link,
            request_timeout,
            slots: Sharded::default(),
        }
    }

    /// Connections held, over all workers.
    pub(crate) fn open(&self) -> usize {
        self.slots.iter().map(|s| lock(s).conns.len()).sum()
    }

    /// `out` as an HTTP/2 request: `:authority` from its `Host` (else the upstream's address),
    /// no `Host` or `Transfer-Encoding` (HTTP/2 frames the body itself), `te: trailers` kept.
    pub(crate) fn request(&self, out: &Outgoing<'_>, body: ReqBody) -> Request<Sent> {
        let mut headers = out.headers.clone();
        let host = headers.remove(header::HOST);
        let authority = match self.link.host {
            Some(_) => self.authority.clone(),
            None => host
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                .unwrap_or_else(|| self.authority.clone()),
        };
        headers.remove(header::TRANSFER_ENCODING);
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority)
            .path_and_query(out.path.clone())
            .build()
            .unwrap_or_else(|_| Uri::from(out.path.clone()));
        let mut req = Request::new(Sent::new(body));
        *req.method_mut() = out.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_2;
        *req.headers_mut() = headers;
        req
    }

    /// Send `req` on one of this worker's connections (or a new one), waiting at most the
    /// request timeout for the answer's head. The stream comes with the answer: keep it
    /// with the answer's body.
    pub(crate) async fn send(
        &self,
        mut req: Request<Sent>,
    ) -> Result<(Response<Incoming>, H2Stream), SendError> {
        let body_failed = req.body().failed.clone();
        let mut sends = 0;
        loop {
            sends += 1;
            let (conn, fresh) = self.conn().await?;
            let stream = H2Stream::open(conn.clone());
            let mut tx = conn.tx.clone();
            let answer = tokio::time::timeout(self.request_timeout, tx.try_send_request(req));
            let mut e = match answer.await {
                Ok(Ok(resp)) => return Ok((resp, stream)),
                Err(_) => return Err(SendError::TimedOut),
                Ok(Err(e)) => e,
            };
            let Some(unsent) = e.take_message() else {
                let client = body_failed.as_deref().and_then(|f| lock(f).take());
                return Err(SendError::Failed(
                    client.unwrap_or_else(|| e.into_error().into()),
                ));
            };
            // Handed back unsent: the connection closed under it.
            self.forget(&conn);
            if fresh || sends >= SENDS {
                // A new connection that takes nothing is as good as refused.
                return Err(SendError::Connect(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    e.into_error(),
                )));
            }
            req = unsent;
        }
    }

    /// A connection with room for one more stream, and whether it is a new one.
    async fn conn(&self) -> Result<(Arc<H2Conn>, bool), SendError> {
        let connecting = match self.pick() {
            Pick::Ready(conn) => return Ok((conn, false)),
            Pick::Wait(connecting) => connecting,
        };
        let made = connecting.clone().await;
        let mut slot = lock(self.slots.local());
        if slot
            .connecting
            .as_ref()
            .is_some_and(|c| c.ptr_eq(&connecting))
        {
            // The first to see the connect end files its result.
            slot.connecting = None;
            if let Ok(conn) = &made {
                slot.conns.push(conn.clone());
            }
        }
        drop(slot);
        match made {
            Ok(conn) => Ok((conn, true)),
            Err(e) => Err(again(&e)),
        }
    }

    fn pick(&self) -> Pick {
        let mut slot = lock(self.slots.local());
        let now = clock::now_ms();
        slot.conns
            .retain(|c| !c.tx.is_closed() && !c.idle_too_long(now));
        if let Some(conn) = slot.conns.iter().find(|c| c.has_room()) {
            return Pick::Ready(conn.clone());
        }
        if let Some(connecting) = &slot.connecting {
            return Pick::Wait(connecting.clone());
        }
        let (addr, link) = (self.addr, self.link.clone());
        let connecting = async move {
            let stream = link
                .connect(addr)
                .await
                .map_err(|e| Arc::new(SendError::from(e)))?;
            let conn = handshake(stream, addr).await.map_err(Arc::new)?;
            Ok(Arc::new(conn))
        }
        .boxed()
        .shared();
        slot.connecting = Some(connecting.clone());
        Pick::Wait(connecting)
    }

    fn forget(&self, conn: &Arc<H2Conn>) {
        lock(self.slots.local())
            .conns
            .retain(|c| !Arc::ptr_eq(c, conn));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The same failure for another request that waited on the same connect.
fn again(e: &SendError) -> SendError {
    match e {
        SendError::Connect(io) => SendError::Connect(match io.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(io.kind(), io.to_string()),
        }),
        SendError::ConnectTimeout => SendError::ConnectTimeout,
        SendError::Failed(e) => SendError::Failed(e.to_string().into()),
        SendError::TimedOut => SendError::TimedOut,
        SendError::Tls(e) => SendError::Tls(match e {
            ConnectError::Tls { name, source } => ConnectError::Tls {
                name: name.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            other => ConnectError::Io(std::io::Error::other(other.to_string())),
        }),
    }
}

/// A stream's place on its connection, given back when dropped (with the answer's body).
#[derive(Debug)]
pub(crate) struct H2Stream(Arc<H2Conn>);

impl H2Stream {
    fn open(conn: Arc<H2Conn>) -> H2Stream {
        conn.streams.fetch_add(1, Relaxed);
        H2Stream(conn)
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        if self.0.streams.fetch_sub(1, Relaxed) == 1 {
            self.0.idle_since_ms.store(clock::now_ms(), Relaxed);
        }
    }
}

/// A request body on its way to an HTTP/2 upstream: the client's body, whose own error is
/// kept for the attempt (hyper's HTTP/2 client would only log it).
#[derive(Debug)]
pub(crate) struct Sent {
    body: ReqBody,
    /// The client body's error, once it failed (`None` for an empty body).
    failed: Option<Arc<Mutex<Option<BoxError>>>>,
}

impl Sent {
    fn new(body: ReqBody) -> Sent {
        let failed = (!body.is_end_stream()).then(Arc::default);
        Sent { body, failed }
    }
}

impl Body for Sent {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                let told: BoxError = e.to_string().into();
                if let Some(failed) = &this.failed {
                    *lock(failed) = Some(e);
                }
                Poll::Ready(Some(Err(told)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_repeated_for_a_waiting_request_is_classified_alike() {
        use crate::proxy::upstream::attempt::classify;
        let refused = SendError::Connect(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(classify(&again(&refused)), classify(&refused));
        let no_fd = SendError::Connect(std::io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(classify(&again(&no_fd)), classify(&no_fd));
        for e in [SendError::ConnectTimeout, SendError::TimedOut] {
            assert_eq!(classify(&again(&e)), classify(&e));
        }
    }
}
