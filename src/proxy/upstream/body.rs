//! Bodies of the data path, streamed frame by frame (never buffered whole).
//!
//! - [`ReqBody`]: a client's request body on its way upstream. It remembers whether anything
//!   of it was sent: if an attempt fails before the first frame was polled (connect refused,
//!   connect timeout), the untouched body is taken back and replayed on FALLBACK. While it
//!   waits on the client for more, the request's body deadline ([`super::body_watch::BodyWatch`])
//!   runs: a client silent for longer fails the body and the request is answered 408. A
//!   failure of the client's own body (its framing broken, its connection gone, its deadline
//!   passed) is counted once, here, as the client's fault
//!   ([`crate::metrics::Metrics::record_client_error`]) and comes out typed
//!   ([`ClientBodyError`], [`super::body_watch::BodyTimeout`]), so that
//!   [`super::attempt::classify`] never takes it for the env's. A mirrored user's body is also
//!   kept (up to a limit, [`super::tap`]) as it goes, and its copy to NEW is sent whole
//!   ([`ReqBody::Whole`]).
//! - [`RespBody`]: what the client gets — an upstream's streamed body (holding the in-flight
//!   and active-connection gauges and the admission slot until it ends) or a small answer of
//!   the proxy's own.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::body_watch::{BodyFault, BodyTimeout, BodyWatch, BODY_WATCH};
use super::pool::InflightGuard;
use super::rawconn::RawBody;
use super::tap::Keep;
use crate::metrics::{ClientFault, Metrics};
use crate::proxy::clock;
use crate::proxy::protect::admission::Permit;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that can be taken back while none of it has been sent.
#[derive(Debug)]
pub(crate) enum ReqBody {
    Empty,
    Stream {
        unsent: Arc<Mutex<Option<Incoming>>>,
        sending: Option<Incoming>,
        deadline: Deadline,
        /// Where a failure of the client's body is counted.
        metrics: Arc<Metrics>,
        /// A mirrored user's body is also kept for the copy to NEW ([`super::tap`]).
        keep: Option<Box<Keep>>,
    },
    /// A body known whole: a mirrored request's copy (`None` once sent).
    Whole(Option<Bytes>),
}

/// The client's request body failed: its framing was broken or its connection ended before
/// the body did. The client's fault, never the env's.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed ({}): {source}", .fault.as_str())]
pub(crate) struct ClientBodyError {
    pub(crate) fault: ClientFault,
    #[source]
    source: hyper::Error,
}

impl ClientBodyError {
    fn new(source: hyper::Error) -> ClientBodyError {
        ClientBodyError {
            fault: body_fault(&source),
            source,
        }
    }
}

/// Malformed when the body's own framing was broken (hyper's decoder says `InvalidInput` or
/// `InvalidData`: a bad chunk size, no CRLF after a chunk); aborted otherwise (the connection
/// ended early, was reset, or failed).
fn body_fault(e: &hyper::Error) -> ClientFault {
    let mut cur = e.source();
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            ) {
                return ClientFault::BodyMalformed;
            }
        }
        cur = err.source();
    }
    ClientFault::BodyAborted
}

/// The body deadlines of the request (if it runs under them), its timer while waiting, and
/// what the rate floor is judged on: bytes received over the time spent waiting on the
/// client (on the coarse clock; time the env took to read is not the client's).
#[derive(Debug, Default)]
pub(crate) struct Deadline {
    watch: Option<Arc<BodyWatch>>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    wait_from_ms: Option<u64>,
    waited_ms: u64,
    bytes: u64,
}

impl Deadline {
    /// The deadline of the request handled on this task.
    fn current() -> Deadline {
        Deadline {
            watch: BODY_WATCH.try_with(Arc::clone).ok(),
            ..Deadline::default()
        }
    }

    /// Called when the client has nothing for us yet: true once it was silent too long.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(watch) = &self.watch else {
            return false;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(watch.timeout)));
        self.wait_from_ms.get_or_insert_with(clock::now_ms);
        if timer.as_mut().poll(cx).is_ready() {
            watch.fire(BodyFault::Silent);
            return true;
        }
        false
    }

    /// A frame of `len` bytes came: the pause is over. True when the body, over all the time
    /// waited on the client, is below the rate floor.
    fn too_slow(&mut self, len: u64) -> bool {
        self.timer = None;
        let Some(watch) = &self.watch else {
            return false;
        };
        if let Some(from) = self.wait_from_ms.take() {
            self.waited_ms += clock::now_ms().saturating_sub(from);
        }
        self.bytes += len;
        if watch.too_slow(self.bytes, self.waited_ms) {
            watch.fire(BodyFault::TooSlow);
            return true;
        }
        false
    }
}

/// A client request's body as the handler gets it: hyper's, or `None` for a request read
/// without one by the client lane (whose requests have no body by construction).
pub(crate) type ClientBody = Option<Incoming>;

/// Whether a client's body is empty (nothing to send, nothing to replay).
pub(crate) fn is_empty(body: &ClientBody) -> bool {
    body.as_ref().is_none_or(Body::is_end_stream)
}

impl ReqBody {
    /// Wrap a client's body. Returns the body and, for a non-empty body, the handle through
    /// which it can be taken back while unsent.
    /// A failure of the client's body is counted in `metrics`.
    /// A mirrored user's body is also handed to `keep` as it goes.
    pub(crate) fn new(
        body: ClientBody,
        metrics: &Arc<Metrics>,
        keep: Option<Box<Keep>>,
    ) -> (ReqBody, Option<Unsent>) {
        let Some(body) = body.filter(|b| !b.is_end_stream()) else {
            return (ReqBody::Empty, None);
        };
        let (body, unsent) = ReqBody::stream(body, metrics, keep);
        (body, Some(unsent))
    }

    /// A body for a replay of what `Unsent` took back.
    pub(crate) fn replay(body: Incoming, metrics: &Arc<Metrics>) -> (ReqBody, Unsent) {
        ReqBody::stream(body, metrics, None)
    }

    fn stream(
        body: Incoming,
        metrics: &Arc<Metrics>,
        keep: Option<Box<Keep>>,
    ) -> (ReqBody, Unsent) {
        let unsent = Arc::new(Mutex::new(Some(body)));
        (
            ReqBody::Stream {
                unsent: unsent.clone(),
                sending: None,
                deadline: Deadline::current(),
                metrics: metrics.clone(),
                keep,
            },
            Unsent(unsent),
        )
    }
}

/// Handle to take an unsent request body back after a failed attempt.
#[derive(Debug)]
pub(crate) struct Unsent(Arc<Mutex<Option<Incoming>>>);

impl Unsent {
    /// The body, if not a byte of it was polled by the failed attempt.
    pub(crate) fn take(self) -> Option<Incoming> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Stream {
                unsent,
                sending,
                deadline,
                metrics,
                keep,
            } => {
                if sending.is_none() {
                    // First poll: from now on the body counts as sent. The lock is taken once
                    // per request, never across an await.
                    *sending = unsent.lock().ok().and_then(|mut g| g.take());
                }
                let Some(body) = sending else {
                    return Poll::Ready(None);
                };
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending if deadline.expired(cx) => {
                        metrics.record_client_error(ClientFault::BodyTimeout, Instant::now());
                        let limit = deadline.watch.as_ref().map(|w| w.timeout);
                        let e = BodyTimeout::Silent(limit.unwrap_or_default());
                        Poll::Ready(Some(Err(e.into())))
                    }
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Err(e))) => {
                        // The client's own body failed: counted once, here, and typed so
                        // that the attempt's failure is not taken for the env's.
                        let e = ClientBodyError::new(e);
                        metrics.record_client_error(e.fault, Instant::now());
                        if let Some(k) = keep {
                            k.failed();
                        }
                        Poll::Ready(Some(Err(Box::new(e))))
                    }
                    Poll::Ready(frame) => {
                        let len = match &frame {
                            Some(Ok(f)) => f.data_ref().map_or(0, |d| d.len() as u64),
                            _ => 0,
                        };
                        if deadline.too_slow(len) {
                            metrics.record_client_error(ClientFault::BodyTooSlow, Instant::now());
                            let floor = deadline.watch.as_ref().map_or(0, |w| w.min_rate);
                            return Poll::Ready(Some(Err(BodyTimeout::TooSlow(floor).into())));
                        }
                        if let Some(k) = keep {
                            match &frame {
                                Some(Ok(f)) => k.seen(f),
                                _ => k.ended(),
                            }
                            if body.is_end_stream() {
                                k.ended();
                            }
                        }
                        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ReqBody::Empty | ReqBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Whole(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Stream {
                unsent, sending, ..
            } => match sending {
                Some(b) => b.size_hint(),
                None => unsent
                    .lock()
                    .ok()
                    .and_then(|g| g.as_ref().map(Body::size_hint))
                    .unwrap_or_default(),
            },
        }
    }
}

/// An upstream's response body: read by hyper's client connection, off a hand-spoken
/// connection ([`super::rawconn`]), or from an HTTP/2 stream (holding its place on its
/// connection, [`super::h2`]). Trailers come through as hyper reads them (the hand-spoken
/// connection skips them: it carries only requests that did not ask for any).
pub(crate) enum UpBody {
    Hyper(Incoming),
    Raw(RawBody),
    H2 {
        body: Incoming,
        /// Held until the body ends (or is dropped).
        _stream: super::h2::H2Stream,
    },
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpBody::Hyper(b) | UpBody::H2 { body: b, .. } => {
                Pin::new(b).poll_frame(cx).map_err(Into::into)
            }
            UpBody::Raw(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Hyper(b) | UpBody::H2 { body: b, .. } => b.is_end_stream(),
            UpBody::Raw(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Hyper(b) | UpBody::H2 { body: b, .. } => b.size_hint(),
            UpBody::Raw(b) => b.size_hint(),
        }
    }
}

/// The body a client receives.
pub(crate) enum RespBody {
    Upstream {
        body: UpBody,
        /// The hyper connection it comes on, given back to its pool when the body ends
        /// (dropped with the body otherwise: a half-read connection is never reused). A
        /// hand-spoken connection is inside the body, and given back the same way.
        conn: Option<super::conns::Pooled>,
        inflight: InflightGuard,
        /// The env's admission slot, returned when the body ends.
        _permit: Permit,
    },
    Own(Full<Bytes>),
    /// An answer whose bytes are also kept for shadow traffic's comparison ([`super::tap`]).
    Tapped(Box<super::tap::Tapped>),
}

impl RespBody {
    /// A streamed upstream body; `conn` goes back to the upstream's pool once it has ended.
    pub(crate) fn upstream(
        body: UpBody,
        conn: Option<super::conns::Pooled>,
        inflight: InflightGuard,
        permit: Permit,
    ) -> RespBody {
        let mut body = RespBody::Upstream {
            body,
            conn,
            inflight,
            _permit: permit,
        };
        body.release_if_ended();
        body
    }

    fn release_if_ended(&mut self) {
        if let RespBody::Upstream {
            body,
            conn,
            inflight,
            ..
        } = self
        {
            if body.is_end_stream() {
                let conns = &inflight.upstream().conns;
                if let Some(tx) = conn.take() {
                    conns.put(tx);
                } else if let UpBody::Raw(raw) = body {
                    if let Some(c) = raw.take_reusable() {
                        conns.put_raw(c);
                    }
                }
            }
        }
    }

    pub(crate) fn text(s: impl Into<Bytes>) -> RespBody {
        RespBody::Own(Full::new(s.into()))
    }

    pub(crate) fn empty() -> RespBody {
        RespBody::Own(Full::new(Bytes::new()))
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this {
            RespBody::Upstream { body, .. } => {
                let frame = Pin::new(body).poll_frame(cx);
                if frame.is_ready() {
                    this.release_if_ended();
                }
                frame
            }
            RespBody::Own(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            RespBody::Tapped(t) => {
                let frame = Pin::new(&mut t.inner).poll_frame(cx);
                if let Poll::Ready(Some(Ok(f))) = &frame {
                    t.keep.seen(f);
                }
                if matches!(frame, Poll::Ready(None)) || t.inner.is_end_stream() {
                    t.keep.ended();
                }
                frame
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Upstream { body, .. } => body.is_end_stream(),
            RespBody::Own(full) => full.is_end_stream(),
            RespBody::Tapped(t) => t.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Upstream { body, .. } => body.size_hint(),
            RespBody::Own(full) => full.size_hint(),
            RespBody::Tapped(t) => t.inner.size_hint(),
        }
    }
}
