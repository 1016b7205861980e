//! One client connection's bookkeeping: the connection cap, what is in flight on it, when
//! bytes last moved and since when it has been waiting for a request head (read by
//! [`super::supervise`], which closes idle connections and slow heads).
//!
//! Owns: [`Open`] (the count of client connections against `max_connections`), [`Activity`]
//! with its I/O wrapper [`ClientSocket`] and response-body wrapper [`Tracked`] (and what
//! [`super::screen`] needs to know: answers in flight, a switch of protocols) and [`refuse`]
//! (the answer past the cap). Must not touch: requests or routing.
//!
//! Why here and not in hyper: hyper has no idle timeout for HTTP/2 and no connection cap, and
//! its HTTP/1 header timer costs a timer reset per request (about 1.5k instructions, ~5% of
//! the proxy's own CPU per request: docs/benchmarks.md). Counting in-flight requests (until
//! their response body ends) keeps a slow upstream answer from being mistaken for an idle
//! client.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::proxy::clock;

/// Open client connections, shared by the accept loop and every connection task.
#[derive(Debug, Default)]
pub(crate) struct Open(AtomicUsize);

impl Open {
    /// Count one more connection if fewer than `max` are open.
    pub(crate) fn try_claim(self: &Arc<Self>, max: usize) -> Option<OpenGuard> {
        let mut now = self.0.load(Relaxed);
        loop {
            if now >= max {
                return None;
            }
            match self.0.compare_exchange_weak(now, now + 1, Relaxed, Relaxed) {
                Ok(_) => return Some(OpenGuard(self.clone())),
                Err(actual) => now = actual,
            }
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.0.load(Relaxed)
    }
}

/// Holds one slot of [`Open`] until dropped.
#[derive(Debug)]
pub(crate) struct OpenGuard(Arc<Open>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Relaxed);
    }
}

/// What is happening on one connection.
#[derive(Debug)]
pub(crate) struct Activity {
    /// When bytes last moved, on the coarse [`clock`].
    last_io_ms: AtomicU64,
    inflight: AtomicUsize,
    /// Since when (coarse [`clock`]) nothing has been in flight: the connection has been
    /// waiting for a request head.
    waiting_since_ms: AtomicU64,
    /// Request heads are timed (HTTP/1); cleared when the screen stops following the bytes
    /// (HTTP/2, whose streams hyper times itself, or a protocol switch).
    heads_timed: AtomicBool,
    /// An answer on this connection switched protocols (`101`): what follows is a tunnel.
    upgraded: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        let now = clock::now_ms();
        Arc::new(Activity {
            last_io_ms: AtomicU64::new(now),
            inflight: AtomicUsize::new(0),
            waiting_since_ms: AtomicU64::new(now),
            heads_timed: AtomicBool::new(true),
            upgraded: AtomicBool::new(false),
        })
    }

    /// Called on every read and write: usually the coarse clock has not moved since the last
    /// call, and then this only loads.
    fn touch(&self) -> u64 {
        let ms = clock::now_ms();
        if self.last_io_ms.load(Relaxed) < ms {
            self.last_io_ms.fetch_max(ms, Relaxed);
        }
        ms
    }

    /// Count a request in flight until the guard (moved into its response body) drops.
    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        self.inflight.fetch_add(1, Relaxed);
        Busy(self.clone())
    }

    /// Requests whose answer is not finished yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.inflight.load(Relaxed)
    }

    /// Nothing in flight and no traffic for `timeout_ms` before `now_ms` (coarse [`clock`]).
    pub(crate) fn is_idle(&self, now_ms: u64, timeout_ms: u64) -> bool {
        self.inflight.load(Relaxed) == 0
            && now_ms.saturating_sub(self.last_io_ms.load(Relaxed)) >= timeout_ms
    }

    /// Heads are timed and no request head has come in the `timeout_ms` before `now_ms` since
    /// the connection began waiting for one (it opened, or its last answer ended). Bytes of
    /// a head trickling in do not count: a slow head is cut like no head.
    pub(crate) fn head_overdue(&self, now_ms: u64, timeout_ms: u64) -> bool {
        self.heads_timed.load(Relaxed)
            && self.inflight.load(Relaxed) == 0
            && now_ms.saturating_sub(self.waiting_since_ms.load(Relaxed)) >= timeout_ms
    }

    /// Stop timing request heads (the connection no longer speaks HTTP/1 request by request).
    pub(crate) fn stop_timing_heads(&self) {
        self.heads_timed.store(false, Relaxed);
    }

    /// Some answer on this connection was a `101 Switching Protocols`.
    pub(crate) fn upgraded(&self) -> bool {
        self.upgraded.load(Relaxed)
    }
}

/// A request in flight on its connection.
#[derive(Debug)]
pub(crate) struct Busy(Arc<Activity>);

impl Busy {
    /// This request's answer switches the connection to another protocol.
    pub(crate) fn mark_upgraded(&self) {
        self.0.upgraded.store(true, Relaxed);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.touch();
        if self.0.inflight.fetch_sub(1, Relaxed) == 1 {
            self.0.waiting_since_ms.store(now, Relaxed);
        }
    }
}

/// A client socket that records when bytes move, and holds its connection's slot under
/// `max_connections` for as long as the socket lives — through an upgrade too, so open
/// tunnels count against the cap until they close.
#[derive(Debug)]
pub(crate) struct ClientSocket {
    inner: TcpStream,
    activity: Arc<Activity>,
    _slot: OpenGuard,
}

impl ClientSocket {
    pub(crate) fn new(inner: TcpStream, activity: Arc<Activity>, slot: OpenGuard) -> ClientSocket {
        ClientSocket {
            inner,
            activity,
            _slot: slot,
        }
    }
}

impl AsyncRead for ClientSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl AsyncWrite for ClientSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A response body that keeps its request counted in flight until it ends or is dropped.
pub(crate) struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, busy: Busy) -> Tracked<B> {
        Tracked { body, _busy: busy }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Answer a connection past the cap with 503 and close it ([`answer_and_close`]).
pub(crate) async fn refuse(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    answer_and_close(stream, super::refuse::too_many_connections_bytes()).await;
}

/// Answer `answer` on a connection that is not going to be served, and close it, spending at
/// most about a second on it: read (a little of) the request first, so that an HTTP client
/// sees an answer to what it sent rather than a reset or an unsolicited response.
pub(crate) async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    answer: &[u8],
) {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while seen.len() < 16 * 1024 && !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        // Drain what else the client sends until it closes, so the close is not a reset.
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_and_releases() {
        let open = Arc::new(Open::default());
        let a = open.try_claim(2).expect("first");
        let _b = open.try_claim(2).expect("second");
        assert!(open.try_claim(2).is_none());
        drop(a);
        assert_eq!(open.count(), 1);
        assert!(open.try_claim(2).is_some());
    }

    #[test]
    fn idle_needs_nothing_in_flight_and_quiet() {
        let activity = Activity::new();
        let start = activity.last_io_ms.load(Relaxed);
        let busy = activity.begin();
        assert!(
            !activity.is_idle(start + 10_000, 200),
            "idle with a request in flight"
        );
        drop(busy);
        let last = activity.last_io_ms.load(Relaxed);
        assert!(
            !activity.is_idle(last + 199, 200),
            "idle before the timeout"
        );
        assert!(
            activity.is_idle(last + 200, 200),
            "not idle after the timeout"
        );
    }

    #[test]
    fn a_head_is_overdue_only_while_waiting_for_one() {
        let activity = Activity::new();
        let opened = activity.waiting_since_ms.load(Relaxed);
        assert!(!activity.head_overdue(opened + 99, 100));
        assert!(activity.head_overdue(opened + 100, 100), "no first head");
        let busy = activity.begin();
        assert!(
            !activity.head_overdue(opened + 10_000, 100),
            "request in flight"
        );
        drop(busy);
        let answered = activity.waiting_since_ms.load(Relaxed);
        assert!(answered >= opened);
        assert!(!activity.head_overdue(answered + 99, 100));
        assert!(activity.head_overdue(answered + 100, 100), "no next head");
        activity.stop_timing_heads();
        assert!(!activity.head_overdue(answered + 10_000, 100), "HTTP/2");
    }
}
