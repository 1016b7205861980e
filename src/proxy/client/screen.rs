//! The client socket as hyper reads it, screened for requests framed two ways: one with both
//! `Content-Length` and `Transfer-Encoding` is answered `400` and its connection closed
//! before hyper sees any of it.
//!
//! Owns: [`Screened`], the I/O wrapper between the accepted socket and hyper, which feeds
//! every byte read to a [`Tracker`] until the tracker passes, and the refusal itself. Must not
//! touch: what hyper reads once the tracker has passed (HTTP/2, tunnels, input hyper refuses
//! itself), nor requests before the bad one.
//!
//! How a refusal goes: the read that holds the bad request's first byte is cut just before
//! it, so hyper gets the requests before it whole and nothing of the bad one (a head begun in
//! an earlier read is left incomplete in hyper's buffer, never parsed). Hyper's next reads
//! wait until it has answered those requests — none in flight ([`Activity`]) and its output
//! flushed (it flushes its own buffer before it calls `poll_flush` on us). Then the socket
//! goes to a task that writes the `400` and closes it gently, and hyper reads end-of-stream
//! and lets the connection go. Why not a response through hyper: hyper has already taken
//! the request apart by the time a service could answer, and would forward it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::conn::Activity;
use super::framing::{Refusal, Tracker, Verdict};
use super::refuse::{conflicting_framing_bytes, late_http2_bytes};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every byte read goes through the tracker.
    Watch,
    /// The tracker passed: reads and writes go straight through.
    Pass,
    /// A bad request was found; hyper's reads wait for its earlier answers to be out.
    Refusing,
    /// The socket went to the refusal task; hyper reads end-of-stream.
    Refused,
}

/// A client socket whose HTTP/1 requests are screened for conflicting framing.
#[derive(Debug)]
pub(crate) struct Screened<S> {
    /// `None` once the refusal task has the socket.
    inner: Option<S>,
    tracker: Tracker,
    mode: Mode,
    activity: Arc<Activity>,
    client: SocketAddr,
    /// hyper wrote since it last flushed: its answers may not be out yet.
    unflushed: bool,
    /// A read returned `Pending` while refusing; `poll_flush` wakes it.
    parked: bool,
    /// Where a refusal is counted (a client's bad request).
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl<S> Screened<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) fn new(inner: S, activity: Arc<Activity>, client: SocketAddr) -> Screened<S> {
        Screened {
            inner: Some(inner),
            tracker: Tracker::new(),
            mode: Mode::Watch,
            activity,
            client,
            unflushed: false,
            parked: false,
            metrics: None,
        }
    }

    /// Count this connection's refusal, if any, in `metrics` (a client's bad request).
    pub(crate) fn counting(mut self, metrics: Arc<crate::metrics::Metrics>) -> Screened<S> {
        self.metrics = Some(metrics);
        self
    }

    /// hyper's read while refusing: wait for its answers to be out, then hand the socket over.
    fn poll_refuse(&mut self) -> Poll<io::Result<()>> {
        if self.activity.in_flight() > 0 || self.unflushed {
            self.parked = true;
            return Poll::Pending;
        }
        self.mode = Mode::Refused;
        if let Some(m) = &self.metrics {
            m.record_client_error(
                crate::metrics::ClientFault::BadRequest,
                std::time::Instant::now(),
            );
        }
        if let Some(stream) = self.inner.take() {
            let answer = match self.tracker.refusal() {
                Refusal::ConflictingFraming => conflicting_framing_bytes(),
                Refusal::LateHttp2 => late_http2_bytes(),
            };
            tokio::spawn(refuse(stream, answer));
        }
        Poll::Ready(Ok(()))
    }

    fn inner(&mut self) -> io::Result<&mut S> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<S> AsyncRead for Screened<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.mode {
            Mode::Watch => {}
            Mode::Pass => return Pin::new(this.inner()?).poll_read(cx, buf),
            Mode::Refusing => return this.poll_refuse(),
            Mode::Refused => return Poll::Ready(Ok(())),
        }
        if this.tracker.may_upgrade() && this.activity.upgraded() {
            this.tracker.stop();
            this.mode = Mode::Pass;
            this.activity.stop_timing_heads();
            return Pin::new(this.inner()?).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let start = this.tracker.position();
        std::task::ready!(Pin::new(this.inner()?).poll_read(cx, buf))?;
        match this.tracker.feed(&buf.filled()[before..]) {
            Verdict::Continue => Poll::Ready(Ok(())),
            Verdict::PassThrough { .. } => {
                this.mode = Mode::Pass;
                this.activity.stop_timing_heads();
                Poll::Ready(Ok(()))
            }
            Verdict::Reject { head_at } => {
                let read = buf.filled().len() - before;
                let keep =
                    usize::try_from(head_at.saturating_sub(start)).map_or(read, |k| k.min(read));
                buf.set_filled(before + keep);
                tracing::debug!(
                    client = %this.client,
                    offset = head_at,
                    why = ?this.tracker.refusal(),
                    "request refused before parsing (400, closing)"
                );
                this.mode = Mode::Refusing;
                if keep > 0 {
                    Poll::Ready(Ok(()))
                } else {
                    this.poll_refuse()
                }
            }
        }
    }
}

impl<S> AsyncWrite for Screened<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(this.inner()?).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(this.inner()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // hyper flushes us only once its own buffer is out.
        this.unflushed = false;
        if this.mode == Mode::Refusing && this.parked && this.activity.in_flight() == 0 {
            this.parked = false;
            cx.waker().wake_by_ref();
        }
        match this.inner.as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Refusing while hyper closes (its last answer said `close`): just close.
        match self.get_mut().inner.as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Write the `400`, close the sending side, and read what the client still sends for a
/// short while, so that the close is not a reset that could destroy the answer in flight.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, answer: &'static [u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < 256 * 1024 {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn screened(io: tokio::io::DuplexStream) -> Screened<tokio::io::DuplexStream> {
        Screened::new(io, Activity::new(), "127.0.0.1:1".parse().expect("addr"))
    }

    #[tokio::test]
    async fn good_requests_pass_unchanged_and_a_bad_one_is_cut_off_and_answered() {
        let (mut client, server) = duplex(64 * 1024);
        let mut s = screened(server);
        let good = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n";
        let bad = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        client
            .write_all(format!("{good}{bad}").as_bytes())
            .await
            .expect("write");
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        assert_eq!(String::from_utf8_lossy(&seen), good);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("answer");
        assert_eq!(answer, conflicting_framing_bytes());
    }

    #[tokio::test]
    async fn the_refusal_waits_for_answers_still_in_flight() {
        let (mut client, server) = duplex(64 * 1024);
        let activity = Activity::new();
        let mut s = Screened::new(
            server,
            activity.clone(),
            "127.0.0.1:1".parse().expect("addr"),
        );
        let busy = activity.begin();
        client
            .write_all(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 1024];
        let early = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
        assert!(early.is_err(), "refused with an answer still in flight");
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .expect("answer");
        drop(busy);
        s.flush().await.expect("flush");
        assert_eq!(s.read(&mut buf).await.expect("eof"), 0);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("answer");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.ends_with(std::str::from_utf8(conflicting_framing_bytes()).expect("utf8")));
    }

    #[tokio::test]
    async fn after_a_switch_of_protocols_nothing_is_screened() {
        let (mut client, server) = duplex(64 * 1024);
        let activity = Activity::new();
        let mut s = Screened::new(
            server,
            activity.clone(),
            "127.0.0.1:1".parse().expect("addr"),
        );
        let mut buf = [0u8; 1024];
        client
            .write_all(b"GET /ws HTTP/1.1\r\nUpgrade: x\r\n\r\n")
            .await
            .expect("write");
        assert!(s.read(&mut buf).await.expect("read") > 0);
        activity.begin().mark_upgraded();
        let tunnel = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        client.write_all(tunnel).await.expect("write");
        let n = s.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], tunnel);
    }
}
