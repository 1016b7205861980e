//! A client connection's own HTTP/1.1 lane, in front of hyper's server.
//!
//! Owns: [`FrontConn`], the future a client connection runs. It reads request heads itself;
//! each one [`h1::parse_request`] takes (an HTTP/1.1 request without a body, upgrade or
//! `Expect`) goes through the same [`server::one_request`] as hyper's, and its answer is
//! written back by hand. The first request it does not take — and everything after it on that
//! connection — goes to hyper, with the bytes read so far put back in front
//! ([`super::rewind::Rewind`]), so hyper sees the connection exactly as if it had read it
//! from the start. Must not touch: what a request does (the handler's), how a connection is
//! watched ([`super::supervise`], [`super::conn`]) or screened ([`super::screen`], which sits
//! below this lane as it sits below hyper).
//!
//! Why: hyper's server was the largest cost left on the common request (about 3 µs by the
//! yardsticks of docs/benchmarks.md); with this lane the proxy needs 0.95× the CPU per request
//! ("Seventh round" there). The lane reads and writes through the same screened, watched
//! socket as hyper, and answers the way hyper's server does: the answer's length as
//! `Content-Length` when known, chunked otherwise, no body for `HEAD`, `204` and `304`, a
//! `Date` when the answer has none, `Connection: close` honoured both ways, and a request
//! cancelled when its client closes the connection before the answer, and the env's own
//! reason phrase kept where it differs from the standard one. `[proxy] client_lane = false`
//! turns the lane off: the
//! connection is hyper's from its first byte.
//!
//! TLS: the lane is generic over the stream under the screen ([`Stream`]): the watched socket
//! on a plain listener, TLS over it on an HTTPS one. Generic rather than a boxed or enum
//! stream so the plain path compiles to exactly what it was (no dispatch per read or write),
//! and rather than handing TLS connections to hyper directly so an HTTP/1.1 request is
//! answered by the same code — same headers, same refusals, same screen — on both. A
//! connection that chose `h2` by ALPN skips the lane and is hyper's HTTP/2 from its first
//! byte.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header;
use http::{Method, Response};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::conn::{Activity, ClientSocket, Tracked};
use super::h1::{self, AnswerFraming};
use super::live::ConnCurrent;
use super::screen::Screened;
use super::server;
use super::supervise::Drainable;
use crate::proxy::handler::Session;
use crate::proxy::upstream::body::RespBody;

/// What a client connection runs over: the watched socket ([`ClientSocket`]), or TLS on top
/// of it. The lane is generic over it rather than over a boxed or enum stream, so the plain
/// path compiles to what it was before TLS (no dispatch per read or write).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// The client connection as both lanes read it: the stream, screened.
pub(crate) type Io<S = ClientSocket> = Screened<S>;

/// Read this much at a time (hyper's server starts with 8 KiB too).
const READ_BUF: usize = 8 * 1024;
/// A body frame up to this size is copied behind the head (one write); larger ones are
/// written on their own.
const COALESCE: usize = 16 * 1024;

/// What hyper needs to take a connection over from the lane.
pub(crate) struct HyperHandoff<S = ClientSocket> {
    /// Bytes read from the socket and not yet taken (the first is the first byte of the
    /// request the lane did not take).
    pub(crate) unread: Bytes,
    pub(crate) io: Io<S>,
    pub(crate) current: ConnCurrent,
    pub(crate) session: Arc<Session>,
}

/// A client connection: the lane until it hands over, then hyper's connection (`H`, made by
/// `F` from the [`HyperHandoff`]).
pub(crate) struct FrontConn<S, F, H> {
    state: State<S, H>,
    make_hyper: Option<F>,
    flags: Arc<Flags>,
}

type Lane<S> = Pin<Box<dyn Future<Output = io::Result<Option<HyperHandoff<S>>>> + Send>>;

enum State<S, H> {
    Lane(Lane<S>),
    Hyper(Pin<Box<H>>),
    Done,
}

/// Shared by [`FrontConn`] and its lane (same task, so relaxed loads suffice).
#[derive(Default)]
struct Flags {
    /// A drain asked the connection to finish.
    draining: AtomicBool,
    /// The lane is waiting for a request with nothing of it read.
    idle: AtomicBool,
}

/// Everything the lane needs about its connection.
pub(crate) struct Setup<S = ClientSocket> {
    pub(crate) io: Io<S>,
    pub(crate) client: SocketAddr,
    pub(crate) current: ConnCurrent,
    pub(crate) session: Arc<Session>,
    pub(crate) activity: Arc<Activity>,
    pub(crate) max_head: usize,
    pub(crate) max_headers: usize,
    /// `false` (`[proxy] client_lane = false`): hyper takes the connection from its first
    /// byte.
    pub(crate) enabled: bool,
}

impl<S: Stream, F, H> FrontConn<S, F, H>
where
    F: FnOnce(HyperHandoff<S>) -> H,
    H: GracefulConnection,
{
    pub(crate) fn new(setup: Setup<S>, make_hyper: F) -> FrontConn<S, F, H> {
        let flags = Arc::new(Flags::default());
        FrontConn {
            state: State::Lane(Box::pin(lane(setup, flags.clone()))),
            make_hyper: Some(make_hyper),
            flags,
        }
    }
}

impl<S: Stream, F, H> Future for FrontConn<S, F, H>
where
    F: FnOnce(HyperHandoff<S>) -> H + Unpin,
    H: GracefulConnection,
{
    type Output = Result<(), H::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Lane(lane) => {
                    if this.flags.draining.load(Relaxed) && this.flags.idle.load(Relaxed) {
                        this.state = State::Done;
                        continue;
                    }
                    let handoff = match lane.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(Some(handoff))) => handoff,
                        Poll::Ready(Ok(None)) => {
                            this.state = State::Done;
                            continue;
                        }
                        Poll::Ready(Err(e)) => {
                            tracing::debug!(error = %e, "client connection ended with an error");
                            this.state = State::Done;
                            continue;
                        }
                    };
                    let Some(make) = this.make_hyper.take() else {
                        this.state = State::Done;
                        continue;
                    };
                    let mut hyper = Box::pin(make(handoff));
                    if this.flags.draining.load(Relaxed) {
                        hyper.as_mut().graceful_shutdown();
                    }
                    this.state = State::Hyper(hyper);
                }
                State::Hyper(hyper) => return hyper.as_mut().poll(cx),
                State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<S: Stream, F, H> Drainable for FrontConn<S, F, H>
where
    F: FnOnce(HyperHandoff<S>) -> H + Unpin,
    H: GracefulConnection,
{
    type Error = H::Error;

    fn drain(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.flags.draining.store(true, Relaxed);
        if let State::Hyper(hyper) = &mut this.state {
            hyper.as_mut().graceful_shutdown();
        }
    }
}

/// Serve the requests the lane takes, one after another; return the connection for hyper at
/// the first one it does not take, or `None` once the connection is over.
async fn lane<S: Stream>(
    setup: Setup<S>,
    flags: Arc<Flags>,
) -> io::Result<Option<HyperHandoff<S>>> {
    let Setup {
        mut io,
        client,
        current,
        session,
        activity,
        max_head,
        max_headers,
        enabled,
    } = setup;
    if !enabled {
        return Ok(Some(HyperHandoff {
            unread: Bytes::new(),
            io,
            current,
            session,
        }));
    }
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut out = Vec::with_capacity(1024);
    let mut served = Served(0, current.load().proxy.metrics.clone());
    loop {
        let head = loop {
            match h1::parse_request(&mut buf, max_head, max_headers) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(h1::Unfit) => {
                    return Ok(Some(HyperHandoff {
                        unread: buf.freeze(),
                        io,
                        current,
                        session,
                    }))
                }
            }
            let idle = buf.is_empty();
            if idle && flags.draining.load(Relaxed) {
                return Ok(None);
            }
            flags.idle.store(idle, Relaxed);
            if buf.capacity() - buf.len() < READ_BUF / 2 {
                buf.reserve(READ_BUF);
            }
            let n = io.read_buf(&mut buf).await?;
            flags.idle.store(false, Relaxed);
            if n == 0 {
                // The client closed (a head begun and not finished is dropped, as hyper does).
                return Ok(None);
            }
        };
        let head_request = head.req.method() == Method::HEAD;
        served.0 += 1;
        let busy = activity.begin();
        let request = server::one_request(
            current.load(),
            head.req.map(|()| None),
            client,
            session.clone(),
            busy,
        );
        tokio::pin!(request);
        // While the answer is on its way, a client that closes its connection cancels the
        // request (its upstream exchange and admission slot go with it), as hyper's server
        // does: it watches for the close only while nothing else of the client's is
        // buffered. Bytes that come instead are the next request's, and are kept.
        let Ok(resp) = if buf.is_empty() {
            tokio::select! {
                biased;
                resp = &mut request => resp,
                read = io.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return Ok(None),
                    Ok(_) => request.await,
                },
            }
        } else {
            request.await
        };
        let close = head.close
            || flags.draining.load(Relaxed)
            || resp
                .headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        write_response(&mut io, &mut out, resp, head_request, close).await?;
        if close {
            let _ = io.shutdown().await;
            return Ok(None);
        }
    }
}

/// The requests a connection's lane served, added to the metrics once, when it ends.
struct Served(u64, Arc<crate::metrics::Metrics>);

impl Drop for Served {
    fn drop(&mut self) {
        if self.0 > 0 {
            self.1.record_lane_requests(self.0);
        }
    }
}

/// Write `resp` to the client: head, then body frames as they come, flushed whenever the body
/// has nothing ready. The request stays counted in flight until the body is done (its
/// [`Tracked`] guard is dropped on return).
async fn write_response<S: Stream>(
    io: &mut Io<S>,
    out: &mut Vec<u8>,
    resp: Response<Tracked<RespBody>>,
    head_request: bool,
    close: bool,
) -> io::Result<()> {
    let (parts, mut body) = resp.into_parts();
    out.clear();
    let framing = date::with(|date| {
        h1::encode_response(
            out,
            &parts,
            body.size_hint().exact(),
            head_request,
            date,
            close,
        )
    });
    if framing == AnswerFraming::None {
        io.write_all(out).await?;
        return io.flush().await;
    }
    let chunked = framing == AnswerFraming::Chunked;
    let mut sent: u64 = 0;
    loop {
        // Whatever is ready goes behind what is waiting in `out`; only when the body has
        // nothing ready is `out` written, so a small answer leaves in one write.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(f) => f,
            Poll::Pending => {
                if !out.is_empty() {
                    io.write_all(out).await?;
                    out.clear();
                }
                io.flush().await?;
                body.frame().await
            }
        };
        match frame {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    // Trailers: not sent. hyper's server sends them only to a client that
                    // asked with `TE: trailers`, and such a request is never the lane's
                    // (`h1::parse_request` leaves it to hyper).
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                sent += data.len() as u64;
                if let AnswerFraming::Length(n) = framing {
                    if sent > n {
                        // Bytes past the promised length would be read by the client as the
                        // start of the next answer: end the connection instead.
                        return Err(io::Error::other(format!(
                            "answer body brought more than its {n} bytes"
                        )));
                    }
                }
                if chunked {
                    h1::chunk_start(out, data.len());
                }
                if out.len() + data.len() <= COALESCE {
                    out.extend_from_slice(&data);
                } else {
                    io.write_all(out).await?;
                    out.clear();
                    io.write_all(&data).await?;
                }
                if chunked {
                    out.extend_from_slice(h1::CHUNK_END);
                }
            }
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => {
                if chunked {
                    out.extend_from_slice(h1::LAST_CHUNK);
                }
                if let AnswerFraming::Length(n) = framing {
                    if sent != n {
                        // The client was promised `n` bytes: the connection cannot go on.
                        return Err(io::Error::other(format!(
                            "answer body ended after {sent} of {n} bytes"
                        )));
                    }
                }
                io.write_all(out).await?;
                out.clear();
                return io.flush().await;
            }
        }
    }
}

/// The `Date` header's value, formatted once a second per worker thread.
mod date {
    use std::cell::RefCell;
    use std::time::SystemTime;

    use crate::proxy::clock;

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }

    /// Call `f` with the current date as `Date` writes it (RFC 9110 §5.6.7).
    pub(crate) fn with<R>(f: impl FnOnce(&[u8]) -> R) -> R {
        let second = clock::now_ms() / 1000;
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != second {
                *c = (second, httpdate::fmt_http_date(SystemTime::now()));
            }
            f(c.1.as_bytes())
        })
    }
}
