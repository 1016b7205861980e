//! The bytes of one tunnel, both ways, and its polite close.
//!
//! Owns: copying and closing. Must not touch: registration or metrics ([`super::registry`]).
//!
//! To close a WebSocket from the middle, the env-to-client direction is followed through a
//! [`FrameTracker`]: the close frame is written only between two frames, never inside one (if
//! the env stays mid-frame past the grace, the connection is just cut).
//!
//! Memory: most tunnels are idle most of the time (a WebSocket waiting for its next message),
//! and a proxy holds tens of thousands of them. So a direction holds no buffer while nothing
//! flows: each read goes first into a small buffer on the stack of the poll, whose bytes are
//! written on at once; only what the other side does not take at once, or a read that fills
//! the small buffer (more is coming), gets a heap buffer, which is let go as soon as the
//! direction has written everything and would wait for the next read. Both directions are
//! polled by the one future of the tunnel's task (no split halves, no lock between them).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::wsframe::{close_frame, FrameTracker, SERVICE_RESTART};

/// How long a tunnel closed by the drain waits for a frame boundary, and any closed tunnel
/// then waits for the client's reply.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The read buffer on the stack of a poll: an idle WebSocket's pings and short messages fit.
const SMALL: usize = 2 * 1024;
/// The heap buffer of a direction while data flows.
const LARGE: usize = 8 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A close from the middle: the WebSocket close code, and how long the close frame may wait
/// for a frame boundary before the tunnel is cut instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stop {
    pub(crate) code: u16,
    pub(crate) grace: Duration,
}

/// Copy both ways until either side is done or `stop` yields; then close the client politely
/// (a WebSocket close frame with the stop's code, at a frame boundary) and both.
pub(crate) async fn pipe(
    client: OnUpgrade,
    upstream: OnUpgrade,
    websocket: bool,
    stop: impl Future<Output = Stop>,
) -> Result<(), BoxError> {
    let (c, u) = tokio::try_join!(client, upstream)?;
    let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
    let mut up = Flow::default();
    let mut down = Flow::default();
    let mut frames = websocket.then(FrameTracker::default);
    tokio::pin!(stop);

    // Both ways until one ends or the stop comes.
    let stopped = std::future::poll_fn(|cx| {
        if let Poll::Ready(s) = stop.as_mut().poll(cx) {
            return Poll::Ready(Ok(Some(s)));
        }
        if !up.done {
            if let Poll::Ready(r) = up.poll_copy(cx, &mut c, &mut u, None, false) {
                // The client is done sending: the env is told, and may still answer.
                r?;
            }
        }
        match down.poll_copy(cx, &mut u, &mut c, frames.as_mut(), false) {
            // The env hung up (its end was passed on): nothing more to carry.
            Poll::Ready(r) => Poll::Ready(r.map(|()| None)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await?;
    let Some(Stop { code, grace }) = stopped else {
        return Ok(());
    };

    // Closing: the env's bytes up to a frame boundary, then the close frame, then the end.
    let mut grace = Box::pin(tokio::time::sleep(grace));
    let at_boundary = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = down.poll_copy(cx, &mut u, &mut c, frames.as_mut(), true) {
            return Poll::Ready(r.map(|()| !down.done));
        }
        if !up.done {
            if let Poll::Ready(r) = up.poll_copy(cx, &mut c, &mut u, None, false) {
                r?;
            }
        }
        match grace.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(false)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await?;
    if !at_boundary {
        // Mid-frame past the grace (or the env hung up meanwhile): just cut.
        return Ok(());
    }
    if websocket {
        let reason = match code {
            SERVICE_RESTART => "moving to your new environment",
            _ => "proxy shutting down",
        };
        down.queue(&close_frame(code, reason));
    }
    down.done = true;
    // The close frame written, the client's end shut; then a moment for the client to answer
    // the close (passed on to the env) and hang up before both are cut.
    let mut answer = Box::pin(tokio::time::sleep(CLOSE_GRACE));
    std::future::poll_fn(|cx| {
        ready!(down.poll_copy(cx, &mut u, &mut c, None, true))?;
        if !up.done {
            if let Poll::Ready(r) = up.poll_copy(cx, &mut c, &mut u, None, false) {
                r?;
                return Poll::Ready(Ok(()));
            }
        } else {
            return Poll::Ready(Ok(()));
        }
        answer.as_mut().poll(cx).map(Ok::<(), std::io::Error>)
    })
    .await?;
    Ok(())
}

/// One direction of a tunnel: bytes read and not yet written on, if any.
#[derive(Default)]
struct Flow {
    /// Heap buffer, held only while data flows (empty and unallocated when idle).
    buf: Vec<u8>,
    /// `buf[pos..len]` is still to be written.
    pos: usize,
    len: usize,
    /// The reading side ended (or the direction was closed); the end is passed on once all
    /// bytes are written.
    done: bool,
    /// The writing side has been shut down.
    shut: bool,
}

impl Flow {
    /// Put `bytes` behind what is still to be written.
    fn queue(&mut self, bytes: &[u8]) {
        self.buf.truncate(self.len);
        self.buf.drain(..self.pos);
        self.buf.extend_from_slice(bytes);
        self.pos = 0;
        self.len = self.buf.len();
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..self.len]
    }

    /// Copy from `r` to `w` until `r` ends (then shut `w` down: `Ready(Ok)`), an error, or
    /// nothing can move (`Pending`). With `at_boundary`, stop instead (`Ready(Ok)`, `done`
    /// unset) as soon as everything read was written and `frames` stands between two frames.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
        mut frames: Option<&mut FrameTracker>,
        at_boundary: bool,
    ) -> Poll<std::io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            while self.pos < self.len {
                let n = ready!(Pin::new(&mut *w).poll_write(cx, self.pending()))?;
                if n == 0 {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
            }
            if self.done {
                if !self.shut {
                    ready!(Pin::new(&mut *w).poll_flush(cx))?;
                    ready!(Pin::new(&mut *w).poll_shutdown(cx))?;
                    self.shut = true;
                }
                self.buf = Vec::new();
                return Poll::Ready(Ok(()));
            }
            if at_boundary && frames.as_deref().is_none_or(FrameTracker::at_boundary) {
                ready!(Pin::new(&mut *w).poll_flush(cx))?;
                return Poll::Ready(Ok(()));
            }
            self.pos = 0;
            self.len = 0;
            if self.buf.is_empty() {
                // Idle until now: read into the stack, write on at once, and keep on the heap
                // only what the writer does not take.
                let mut small = [0u8; SMALL];
                let mut rb = ReadBuf::new(&mut small);
                match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                    Poll::Pending => {
                        ready!(Pin::new(&mut *w).poll_flush(cx))?;
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                let got = rb.filled();
                if got.is_empty() {
                    self.done = true;
                    continue;
                }
                if let Some(f) = frames.as_deref_mut() {
                    f.feed(got);
                }
                let full = got.len() == SMALL;
                let written = match Pin::new(&mut *w).poll_write(cx, got) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => 0,
                };
                if written < got.len() || full {
                    // Data is flowing (or the writer is slow): a heap buffer until it stops.
                    let mut buf = Vec::with_capacity(LARGE);
                    buf.extend_from_slice(&got[written..]);
                    self.len = buf.len();
                    buf.resize(LARGE, 0);
                    self.buf = buf;
                }
                continue;
            }
            let mut rb = ReadBuf::new(&mut self.buf);
            match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    // Everything written and nothing to read: let the buffer go.
                    self.buf = Vec::new();
                    ready!(Pin::new(&mut *w).poll_flush(cx))?;
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let n = rb.filled().len();
            if n == 0 {
                self.done = true;
                continue;
            }
            if let Some(f) = frames.as_deref_mut() {
                f.feed(&self.buf[..n]);
            }
            self.len = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A direction copies everything, in any chunking, and holds no buffer once idle.
    #[tokio::test]
    async fn a_flow_copies_all_and_lets_its_buffer_go_when_idle() {
        let (mut src_w, mut src_r) = tokio::io::duplex(64 * 1024);
        let (mut dst_w, mut dst_r) = tokio::io::duplex(4 * 1024);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        // The source stays open afterwards: the direction goes idle rather than ending.
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(7_001) {
                src_w.write_all(chunk).await.expect("write");
            }
            src_w
        });
        let mut flow = Flow::default();
        let got = {
            let copy =
                std::future::poll_fn(|cx| flow.poll_copy(cx, &mut src_r, &mut dst_w, None, false));
            let read = async {
                let mut got = vec![0u8; data.len()];
                dst_r.read_exact(&mut got).await.expect("read");
                got
            };
            tokio::select! {
                r = copy => panic!("the copy ended with the source open: {r:?}"),
                got = read => got,
                _ = tokio::time::sleep(Duration::from_secs(20)) => panic!("stuck"),
            }
        };
        assert_eq!(got, data);
        let _src_w = writer.await.expect("join");
        // Idle now: one more poll finds nothing to read and lets the buffer go.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(flow
            .poll_copy(&mut cx, &mut src_r, &mut dst_w, None, false)
            .is_pending());
        assert_eq!(flow.buf.capacity(), 0, "an idle direction holds no buffer");
    }
}
