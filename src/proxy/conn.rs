//! One client connection's bookkeeping: the connection cap, what is in flight on it, when
//! bytes last moved, and the idle watchdog that closes it.
//!
//! Owns: [`Open`] (the count of client connections against `max_connections`), [`Activity`]
//! with its I/O wrapper [`Watched`] and response-body wrapper [`Tracked`] (and what
//! [`super::screen`] needs to know: answers in flight, a switch of protocols), [`idle`] (resolves
//! when a connection has had nothing in flight and no traffic for `idle_timeout`) and
//! [`refuse`] (the answer past the cap). Must not touch: requests or routing.
//!
//! Why here and not in hyper: hyper has no idle timeout for HTTP/2 and no connection cap, and
//! its HTTP/1 header timer does not cover a connection that is quiet while a request is in
//! flight. Counting in-flight requests (until their response body ends) keeps a slow upstream
//! answer from being mistaken for an idle client.

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
use tokio::time::Instant;

/// Open client connections, shared by the accept loop and every connection task.
#[derive(Debug, Default)]
pub struct Open(AtomicUsize);

impl Open {
    /// Count one more connection if fewer than `max` are open.
    pub fn try_claim(self: &Arc<Self>, max: usize) -> Option<OpenGuard> {
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

    pub fn count(&self) -> usize {
        self.0.load(Relaxed)
    }
}

/// Holds one slot of [`Open`] until dropped.
#[derive(Debug)]
pub struct OpenGuard(Arc<Open>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Relaxed);
    }
}

/// What is happening on one connection.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds after `start` when bytes last moved.
    last_io_ms: AtomicU64,
    inflight: AtomicUsize,
    /// An answer on this connection switched protocols (`101`): what follows is a tunnel.
    upgraded: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            upgraded: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_io_ms.fetch_max(ms, Relaxed);
    }

    /// Count a request in flight until the guard (moved into its response body) drops.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.inflight.fetch_add(1, Relaxed);
        Busy(self.clone())
    }

    /// Requests whose answer is not finished yet.
    pub fn in_flight(&self) -> usize {
        self.inflight.load(Relaxed)
    }

    /// Some answer on this connection was a `101 Switching Protocols`.
    pub fn upgraded(&self) -> bool {
        self.upgraded.load(Relaxed)
    }
}

/// A request in flight on its connection.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Busy {
    /// This request's answer switches the connection to another protocol.
    pub fn mark_upgraded(&self) {
        self.0.upgraded.store(true, Relaxed);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inflight.fetch_sub(1, Relaxed);
    }
}

/// Resolves when the connection has had nothing in flight and no traffic for `timeout`.
pub async fn idle(activity: Arc<Activity>, timeout: Duration) {
    loop {
        let last = activity.start + Duration::from_millis(activity.last_io_ms.load(Relaxed));
        let quiet = last.elapsed();
        if activity.inflight.load(Relaxed) == 0 && quiet >= timeout {
            return;
        }
        // Busy or recently active: look again when the quiet period could first be over.
        let wait = timeout.saturating_sub(quiet).max(Duration::from_millis(50));
        tokio::time::sleep(wait).await;
    }
}

/// A client socket that records when bytes move, and holds its connection's slot under
/// `max_connections` for as long as the socket lives — through an upgrade too, so open
/// tunnels count against the cap until they close.
#[derive(Debug)]
pub struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    _slot: OpenGuard,
}

impl Watched {
    pub fn new(inner: TcpStream, activity: Arc<Activity>, slot: OpenGuard) -> Watched {
        Watched {
            inner,
            activity,
            _slot: slot,
        }
    }
}

impl AsyncRead for Watched {
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

impl AsyncWrite for Watched {
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
pub struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B> Tracked<B> {
    pub fn new(body: B, busy: Busy) -> Tracked<B> {
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

/// Answer a connection past the cap with 503 and close it, spending at most about a second
/// on it: read (a little of) the request first, so that an HTTP client sees an answer to what
/// it sent rather than a reset or an unsolicited response.
pub async fn refuse(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
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
        stream
            .write_all(super::guard::too_many_connections_bytes())
            .await?;
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

    #[tokio::test]
    async fn idle_waits_for_requests_in_flight() {
        let activity = Activity::new();
        let busy = activity.begin();
        let limit = Duration::from_millis(200);
        let early = tokio::time::timeout(Duration::from_millis(600), idle(activity.clone(), limit));
        assert!(early.await.is_err(), "closed with a request in flight");
        drop(busy);
        let start = std::time::Instant::now();
        let late = tokio::time::timeout(Duration::from_secs(3), idle(activity, limit));
        assert!(late.await.is_ok(), "never closed once idle");
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "{:?}",
            start.elapsed()
        );
    }
}
