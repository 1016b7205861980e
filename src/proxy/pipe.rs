//! The bytes of one tunnel, both ways, and its polite close.
//!
//! Owns: copying and closing. Must not touch: registration or metrics ([`super::tunnel`]).
//!
//! To close a WebSocket from the middle, the env-to-client direction is copied by hand through
//! a [`FrameTracker`]: the close frame is written only between two frames, never inside one (if
//! the env stalls mid-frame for a second, the connection is just cut). The client-to-env
//! direction is a plain copy.

use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wsframe::{close_frame, FrameTracker, SERVICE_RESTART};

/// How long a closing tunnel waits for a frame boundary, and then for the client's reply.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Copy both ways until either side is done or `stop` yields a close code; then close the
/// client politely (a WebSocket close frame with that code, at a frame boundary) and both.
pub async fn pipe(
    client: OnUpgrade,
    upstream: OnUpgrade,
    websocket: bool,
    stop: impl std::future::Future<Output = u16>,
) -> Result<(), BoxError> {
    let (c, u) = tokio::try_join!(client, upstream)?;
    let (mut cr, mut cw) = tokio::io::split(TokioIo::new(c));
    let (mut ur, mut uw) = tokio::io::split(TokioIo::new(u));
    let up = async {
        let r = tokio::io::copy(&mut cr, &mut uw).await;
        let _ = uw.shutdown().await;
        r
    };
    let down = async {
        let mut buf = vec![0u8; 8 * 1024];
        let mut frames = FrameTracker::default();
        let mut closing: Option<u16> = None;
        let grace = tokio::time::sleep(Duration::from_secs(86_400));
        tokio::pin!(stop, grace);
        loop {
            if let Some(code) = closing {
                if !websocket || frames.at_boundary() {
                    if websocket {
                        let reason = match code {
                            SERVICE_RESTART => "moving to your new environment",
                            _ => "proxy shutting down",
                        };
                        cw.write_all(&close_frame(code, reason)).await?;
                    }
                    cw.flush().await?;
                    cw.shutdown().await?;
                    return Ok::<bool, std::io::Error>(true);
                }
            }
            tokio::select! {
                code = &mut stop, if closing.is_none() => {
                    closing = Some(code);
                    grace.as_mut().reset(tokio::time::Instant::now() + CLOSE_GRACE);
                }
                _ = &mut grace, if closing.is_some() => return Ok(false),
                n = ur.read(&mut buf) => {
                    let n = n?;
                    if n == 0 {
                        cw.shutdown().await?;
                        return Ok(false);
                    }
                    if websocket {
                        frames.feed(&buf[..n]);
                    }
                    cw.write_all(&buf[..n]).await?;
                }
            }
        }
    };
    tokio::pin!(up, down);
    tokio::select! {
        closed = &mut down => {
            if closed? {
                // Give the client a moment to answer the close (and hang up) before cutting.
                let _ = tokio::time::timeout(CLOSE_GRACE, &mut up).await;
            }
        }
        r = &mut up => {
            r?;
            down.await?;
        }
    }
    Ok(())
}
