//! An upstream connection spoken to by hand ([`super::h1`]) for requests without a body: the
//! request's own task writes the head and reads the answer, and the response body reads the
//! rest off the same socket. No connection task, no channel, no second header map.
//!
//! Owns: [`RawConn`] (socket, read buffer, request clock) and [`RawBody`] (a response body
//! read off it, which gives the connection back once the body has ended cleanly). Must not
//! touch: the pool's idle lists ([`super::conns`] keeps them), routing or metrics.
//!
//! The request timeout works as on hyper's connections ([`super::deadlines`]): the clock runs
//! from the write of the head to the end of the response head, and a cut by the sweeper
//! wakes the reading task, which then fails with [`RawError::TimedOut`].

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Response};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::attempt::Outgoing;
use super::deadlines::{ConnClock, DeadlineSlot};
use super::h1::{self, Chunked, EnvFraming, Parsed, Step};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Room made in the read buffer before a read.
const READ_CHUNK: usize = 8 * 1024;

/// Why a request on a [`RawConn`] got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RawError {
    /// Writing failed, or the connection closed or failed before a byte of an answer came: on
    /// a reused connection, usually one the upstream had closed while it was idle.
    #[error("no answer: {0}")]
    NoAnswer(io::Error),
    /// The answer was malformed or cut off in its head.
    #[error("broken answer: {0}")]
    Broken(BoxError),
    /// No answer head within the request timeout.
    #[error("no answer within the request timeout")]
    TimedOut,
}

/// One keep-alive connection to an upstream.
#[derive(Debug)]
pub(crate) struct RawConn {
    stream: TcpStream,
    /// Bytes read and not consumed yet.
    buf: BytesMut,
    /// The request head being written (its allocation is reused).
    out: Vec<u8>,
    watch: DeadlineSlot,
}

/// Whether an idle upstream socket has bytes (or an end of stream) waiting that nobody asked
/// for, asked of the kernel with one `recv(MSG_PEEK)`: true unless the read would block.
pub(crate) fn has_unasked_bytes(socket: &impl std::os::fd::AsFd) -> bool {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    !matches!(
        socket2::SockRef::from(socket).peek(&mut probe),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    )
}

impl RawConn {
    pub(crate) fn new(stream: TcpStream, watch: DeadlineSlot) -> RawConn {
        RawConn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(1024),
            watch,
        }
    }

    /// For an idle connection: the upstream has closed it or sent something nobody asked
    /// for (some servers send a `408` before closing an idle connection; a faulty one sends
    /// a body after a `204` or a `HEAD` answer, or bytes past its `Content-Length`, late).
    /// Such bytes must never be taken for the next request's answer, so this asks the kernel
    /// itself (one `recv` with `MSG_PEEK`) rather than tokio's readiness, which can lag behind
    /// bytes that arrived since the runtime last polled for events. What arrives after the
    /// request was written cannot be told from its answer (docs/reliability.md).
    pub(crate) fn is_stale(&self) -> bool {
        has_unasked_bytes(&self.stream)
    }

    /// Send the request `out` (which has no body; with `host` as its `Host` if set) and read
    /// the head of its answer. The body
    /// comes with the connection: once it has been read to the end, the connection can be
    /// taken back with [`RawBody::take_reusable`].
    pub(crate) async fn send(
        mut self,
        out: &Outgoing<'_>,
        host: Option<&http::HeaderValue>,
    ) -> Result<Response<RawBody>, RawError> {
        self.out.clear();
        h1::encode_request_to(&mut self.out, out.method, out.path, out.headers, host);
        let head = self.exchange(*out.method == Method::HEAD).await?;
        let state = match head.framing {
            EnvFraming::Empty | EnvFraming::Length(0) => State::Done,
            EnvFraming::Length(n) => State::Length(n),
            EnvFraming::Chunked => State::Chunked(Chunked::default()),
            EnvFraming::Close => State::Close,
        };
        let mut resp = Response::new(RawBody {
            conn: Some(self),
            state,
            keep_alive: head.keep_alive,
        });
        // The version stays HTTP/1.1: the client is answered in the proxy's own version.
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        if let Some(reason) = head.reason {
            resp.extensions_mut().insert(reason);
        }
        Ok(resp)
    }

    async fn exchange(&mut self, head_request: bool) -> Result<h1::EnvHead, RawError> {
        let RawConn {
            stream,
            buf,
            out,
            watch,
        } = self;
        let clock = watch.clock();
        clock.start();
        let head = Self::write_then_read(stream, buf, out, clock, head_request).await;
        if !clock.stop() {
            return Err(RawError::TimedOut);
        }
        head
    }

    async fn write_then_read(
        stream: &mut TcpStream,
        buf: &mut BytesMut,
        out: &[u8],
        clock: &ConnClock,
        head_request: bool,
    ) -> Result<h1::EnvHead, RawError> {
        let mut written = 0;
        std::future::poll_fn(|cx| {
            while written < out.len() {
                let write =
                    |cx: &mut Context<'_>| Pin::new(&mut *stream).poll_write(cx, &out[written..]);
                match ready!(unless_cut(clock, cx, write)) {
                    None => return Poll::Ready(Err(RawError::TimedOut)),
                    Some(Ok(0)) => {
                        return Poll::Ready(Err(RawError::NoAnswer(
                            io::ErrorKind::WriteZero.into(),
                        )))
                    }
                    Some(Ok(n)) => written += n,
                    Some(Err(e)) => return Poll::Ready(Err(RawError::NoAnswer(e))),
                }
            }
            Poll::Ready(Ok(()))
        })
        .await?;
        let mut received = false;
        loop {
            match h1::parse_response(buf, head_request) {
                Ok(Parsed::Partial) => {}
                Ok(Parsed::Interim(n)) => {
                    buf.advance(n);
                    continue;
                }
                Ok(Parsed::EnvHead(head, n)) => {
                    buf.advance(n);
                    return Ok(head);
                }
                Err(e) => return Err(RawError::Broken(e.into())),
            }
            let read = std::future::poll_fn(|cx| {
                unless_cut(clock, cx, |cx| poll_read_buf(stream, buf, cx))
            })
            .await;
            match read {
                Some(Ok(0)) if !received => {
                    return Err(RawError::NoAnswer(io::ErrorKind::UnexpectedEof.into()))
                }
                Some(Ok(0)) => {
                    return Err(RawError::Broken(
                        "the upstream closed the connection in the middle of a response head"
                            .into(),
                    ))
                }
                Some(Ok(_)) => received = true,
                None => return Err(RawError::TimedOut),
                Some(Err(e)) if !received => return Err(RawError::NoAnswer(e)),
                Some(Err(e)) => return Err(RawError::Broken(e.into())),
            }
        }
    }
}

/// Poll `io`; while it has to wait, a cut of the connection by the sweeper wakes this task
/// and ends the wait (`None`). The waker is registered only then, not on every poll.
fn unless_cut<T>(
    clock: &ConnClock,
    cx: &mut Context<'_>,
    io: impl FnOnce(&mut Context<'_>) -> Poll<T>,
) -> Poll<Option<T>> {
    match io(cx) {
        Poll::Ready(t) => Poll::Ready(Some(t)),
        // Registered before the check, so a cut in between is not missed.
        Poll::Pending if clock.cut_or_register(cx) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    }
}

/// Read what the socket has into `buf`. (tokio's own read, unlike `try_read`, forgets the
/// socket's readiness after a short read, so the next wait costs no system call.)
fn poll_read_buf(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)
}

#[derive(Debug)]
enum State {
    Length(u64),
    Chunked(Chunked),
    Close,
    Done,
}

/// A response body read off its [`RawConn`], frame by frame as bytes arrive.
#[derive(Debug)]
pub(crate) struct RawBody {
    /// `None` once failed (the connection is closed with it).
    conn: Option<RawConn>,
    state: State,
    keep_alive: bool,
}

impl RawBody {
    /// Once the body has ended: the connection, if it may carry another request (the answer
    /// allowed it and nothing unasked came after it).
    pub(crate) fn take_reusable(&mut self) -> Option<RawConn> {
        if !matches!(self.state, State::Done) || !self.keep_alive {
            return None;
        }
        self.conn.take().filter(|c| c.buf.is_empty())
    }

    fn fail(&mut self, e: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.state = State::Done;
        Poll::Ready(Some(Err(e.into())))
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let data = match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if conn.buf.is_empty() {
                        None
                    } else {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.buf.len());
                        *left -= n as u64;
                        if *left == 0 {
                            this.state = State::Done;
                        }
                        Some(conn.buf.split_to(n).freeze())
                    }
                }
                State::Chunked(dec) => match dec.step(&conn.buf) {
                    Ok(Step::Data { skip, len }) => {
                        conn.buf.advance(skip);
                        dec.took(len);
                        Some(conn.buf.split_to(len).freeze())
                    }
                    Ok(Step::More { skip }) => {
                        conn.buf.advance(skip);
                        None
                    }
                    Ok(Step::End { skip }) => {
                        conn.buf.advance(skip);
                        this.state = State::Done;
                        return Poll::Ready(None);
                    }
                    Err(e) => return this.fail(e),
                },
                State::Close => (!conn.buf.is_empty()).then(|| conn.buf.split().freeze()),
            };
            if let Some(data) = data {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            match ready!(poll_read_buf(&mut conn.stream, &mut conn.buf, cx)) {
                Ok(0) if matches!(this.state, State::Close) => {
                    this.state = State::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return this.fail("the upstream closed the connection in the middle of a body")
                }
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            State::Chunked(_) | State::Close => SizeHint::default(),
        }
    }
}
