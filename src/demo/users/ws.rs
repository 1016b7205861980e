//! A long-lived-connection user: holds a WebSocket through the proxy and chats on it; when the
//! connection breaks or cannot be opened, it reconnects its own way (naive or good).

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, StatusCode};
use rand::Rng;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::policy::reconnect_delay;
use super::{online, pause, Ctx, Phase, User};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an open WebSocket user sends a message.
const CHAT_EVERY: Duration = Duration::from_secs(1);

/// How a chat ended.
enum End {
    Stopped,
    /// The users went offline: the socket was closed on purpose.
    Offline,
    Broken,
    /// The session reached its lifetime (an app refresh, a network change): reconnect now.
    Renew,
}

/// The user's life: connect, chat until the connection ends, reconnect.
pub async fn run(mut user: User, mut ctx: Ctx) {
    let arrive = user.rng.gen_range(Duration::ZERO..=ctx.mix.think.1);
    if !pause(arrive, &mut ctx.phase).await {
        return;
    }
    let mut failures = 0;
    loop {
        if online(&mut ctx.phase).await.is_none() {
            return;
        }
        match connect(&ctx, &user.id).await {
            Ok(ws) => {
                ctx.stats.attempt(false, false);
                failures = 0;
                ctx.stats.ws_open.fetch_add(1, SeqCst);
                let (lo, hi) = ctx.mix.ws_session;
                let lifetime = if hi > lo {
                    user.rng.gen_range(lo..hi)
                } else {
                    lo
                };
                let end = chat(ws, &mut ctx, lifetime).await;
                ctx.stats.ws_open.fetch_sub(1, SeqCst);
                match end {
                    End::Stopped => return,
                    End::Offline | End::Renew => continue,
                    End::Broken => {
                        ctx.stats.ws_dropped.fetch_add(1, SeqCst);
                        let d = reconnect_delay(user.kind, 1, None, &mut user.rng);
                        if !pause(d, &mut ctx.phase).await {
                            return;
                        }
                    }
                }
            }
            Err(retry_after) => {
                ctx.stats.attempt(true, retry_after.is_some());
                failures += 1;
                let d = reconnect_delay(user.kind, failures, retry_after, &mut user.rng);
                if !pause(d, &mut ctx.phase).await {
                    return;
                }
            }
        }
    }
}

/// Open the WebSocket; on failure, the server's `Retry-After` if it sent one.
async fn connect(ctx: &Ctx, user: &str) -> Result<Ws, Option<Duration>> {
    let mut req = format!("ws://{}/ws", ctx.proxy)
        .into_client_request()
        .map_err(|_| None)?;
    let id = HeaderValue::from_str(user).map_err(|_| None)?;
    req.headers_mut().insert("x-user-id", id);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async(req)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(WsError::Http(resp))) => {
            let shed =
                resp.status() == StatusCode::SERVICE_UNAVAILABLE || resp.status().as_u16() == 429;
            Err(resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|_| shed)
                .map(Duration::from_secs))
        }
        _ => Err(None),
    }
}

/// Chat until the connection breaks, the users go offline or stop, or `lifetime` passes.
async fn chat(mut ws: Ws, ctx: &mut Ctx, lifetime: Duration) -> End {
    let end_of_life = tokio::time::sleep(lifetime);
    tokio::pin!(end_of_life);
    let mut tick = tokio::time::interval(CHAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            changed = ctx.phase.changed() => {
                let phase = if changed.is_err() { Phase::Stopped } else { *ctx.phase.borrow() };
                match phase {
                    Phase::Online => {}
                    Phase::Offline => {
                        let _ = ws.close(None).await;
                        return End::Offline;
                    }
                    Phase::Stopped => {
                        let _ = ws.close(None).await;
                        return End::Stopped;
                    }
                }
            }
            _ = tick.tick() => {
                n += 1;
                if ws.send(Message::text(format!("ping {n}"))).await.is_err() {
                    return End::Broken;
                }
            }
            _ = &mut end_of_life => {
                let _ = ws.close(None).await;
                return End::Renew;
            }
            msg = ws.next() => match msg {
                Some(Ok(m)) if !m.is_close() => {}
                _ => return End::Broken,
            },
        }
    }
}
