//! A simulated environment: a real HTTP/1.1 server on loopback with knobs for faults.
//!
//! - `GET /healthz` → `{"status":"ok","env":NAME,"pool_size":N}`.
//! - `GET /ws` with a WebSocket upgrade → echoes every message, prefixed by nothing.
//! - any other request → 200 JSON `{"env","method","path","headers","body_bytes"}` after
//!   reading (and counting) the whole body, so header rules and uploads can be checked.
//!
//! Knobs ([`Behaviour`], changeable while running): extra latency, a 5xx rate, a concurrency
//! limit past which requests get 503 (or connections are refused while `refuse` is set), and a
//! connection-listed response header a proxy must strip.
//!
//! Capacity model (all off by default, see [`super::capacity`]): `capacity` slots served at once
//! with latency rising as they fill, a pool timeout past which a waiting request gets 500, and a
//! per-instance connection limit (`max_connections`: requests in flight plus open WebSocket
//! tunnels) past which requests get 503 at once — the way a pod's connection limit answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::capacity::{self, Gauge};

/// Live-tunable behaviour of a simulated environment.
#[derive(Debug, Default)]
pub struct Behaviour {
    /// Added to every answer.
    pub latency_ms: AtomicU64,
    /// Per mille of requests answered 500.
    pub error_permille: AtomicU32,
    /// Requests in flight past this answer 503 (0 = unlimited).
    pub max_inflight: AtomicUsize,
    /// Accept and immediately drop connections (a crashed process behind a live socket).
    pub reset: AtomicBool,
    /// Read each request, then close the connection without answering.
    pub close_without_answer: AtomicBool,
    /// Answer with `Connection: x-hop` and an `x-hop` header: a hop-by-hop header named by
    /// `Connection`, which a proxy must not pass on.
    pub connection_listed_header: AtomicBool,
    /// Reported as `pool_size` by /healthz (the "half-configured database" check).
    pub pool_size: AtomicU64,
    pub inflight: AtomicUsize,
    pub peak_inflight: AtomicUsize,
    pub served: AtomicU64,
    /// Requests served at once (a database pool, worker threads); 0 = no capacity model.
    pub capacity: AtomicUsize,
    /// How long a request waits for a free slot before it is answered 500.
    pub pool_timeout_ms: AtomicU64,
    /// Extra service time with every slot busy, in percent of `latency_ms`.
    pub slowdown_pct: AtomicU32,
    /// Extra service time per `capacity` requests waiting beyond it, in percent of
    /// `latency_ms` (congestion collapse; 0 = none).
    pub collapse_pct: AtomicU32,
    /// Connections in use (requests in flight plus open tunnels) past which a request is
    /// answered 503 at once; 0 = unlimited.
    pub max_connections: AtomicUsize,
    /// Slots in use, and the signal that one was freed.
    pub busy: AtomicUsize,
    pub slot_freed: Notify,
    /// Open WebSocket tunnels.
    pub tunnels: AtomicUsize,
    /// Requests refused by the connection limit or by `max_inflight`.
    pub rejected: AtomicU64,
    /// Requests that waited for a slot past the pool timeout.
    pub pool_timeouts: AtomicU64,
    /// Requests that found every slot busy and had to wait.
    pub waited: AtomicU64,
    /// In-flight gauge shared by every instance of one environment.
    pub env_inflight: Option<Arc<Gauge>>,
}

/// A running simulated env. Dropping it does not stop it; call [`SimEnv::stop`].
pub struct SimEnv {
    pub name: String,
    pub addr: SocketAddr,
    pub behaviour: Arc<Behaviour>,
    stop: watch::Sender<bool>,
}

impl SimEnv {
    /// Start `name` on `addr` (use port 0 for any free port).
    pub async fn start(name: &str, addr: SocketAddr) -> std::io::Result<SimEnv> {
        let behaviour = Behaviour {
            pool_size: AtomicU64::new(40),
            ..Default::default()
        };
        SimEnv::start_with(name, addr, behaviour).await
    }

    /// Start `name` on `addr` with the given initial behaviour.
    pub async fn start_with(
        name: &str,
        addr: SocketAddr,
        behaviour: Behaviour,
    ) -> std::io::Result<SimEnv> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let behaviour = Arc::new(behaviour);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(accept_loop(
            listener,
            name.to_owned(),
            behaviour.clone(),
            stop_rx,
        ));
        Ok(SimEnv {
            name: name.to_owned(),
            addr,
            behaviour,
            stop,
        })
    }

    /// Stop accepting; the port is closed (connections are then refused).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    name: String,
    b: Arc<Behaviour>,
    mut stop: watch::Receiver<bool>,
) {
    let name: Arc<str> = Arc::from(name);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(_) => continue,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        if b.reset.load(SeqCst) {
            let _ = stream.set_zero_linger();
            drop(stream);
            continue;
        }
        let (name, b) = (name.clone(), b.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (name, b) = (name.clone(), b.clone());
                async move {
                    let resp = answer(req, &name, &b).await;
                    if b.close_without_answer.load(SeqCst) {
                        // A service error makes hyper drop the connection without a response.
                        return Err(std::io::Error::other("closing without an answer"));
                    }
                    Ok(resp)
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }
}

struct Inflight<'a>(&'a Behaviour);

struct Tunnel<'a>(&'a Behaviour);

impl Drop for Tunnel<'_> {
    fn drop(&mut self) {
        self.0.tunnels.fetch_sub(1, SeqCst);
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, SeqCst);
    }
}

async fn answer(req: Request<Incoming>, name: &str, b: &Arc<Behaviour>) -> Response<Full<Bytes>> {
    let now = b.inflight.fetch_add(1, SeqCst) + 1;
    let _guard = Inflight(b);
    let _env_guard = b.env_inflight.as_deref().map(Gauge::enter);
    b.peak_inflight.fetch_max(now, SeqCst);
    let max_connections = b.max_connections.load(SeqCst);
    if max_connections > 0 && now + b.tunnels.load(SeqCst) > max_connections {
        b.rejected.fetch_add(1, SeqCst);
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{{\"env\":\"{name}\",\"error\":\"connection limit\"}}"),
        );
    }
    let limit = b.max_inflight.load(SeqCst);
    if limit > 0 && now > limit {
        b.rejected.fetch_add(1, SeqCst);
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{{\"env\":\"{name}\",\"error\":\"overloaded\"}}"),
        );
    }
    let capacity = b.capacity.load(SeqCst);
    let pool_timeout = Duration::from_millis(b.pool_timeout_ms.load(SeqCst));
    let Some(_slot) =
        capacity::acquire(&b.busy, &b.slot_freed, capacity, pool_timeout, &b.waited).await
    else {
        b.pool_timeouts.fetch_add(1, SeqCst);
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"env\":\"{name}\",\"error\":\"pool timeout\"}}"),
        );
    };
    let latency = b.latency_ms.load(SeqCst);
    if latency > 0 {
        let curve = capacity::Curve {
            capacity,
            slowdown_pct: b.slowdown_pct.load(SeqCst),
            collapse_pct: b.collapse_pct.load(SeqCst),
        };
        let base = Duration::from_millis(latency);
        let inflight = b.inflight.load(SeqCst);
        tokio::time::sleep(capacity::service_time(base, inflight, curve)).await;
    }
    b.served.fetch_add(1, SeqCst);
    let permille = b.error_permille.load(SeqCst);
    if permille > 0 && rand::random::<u32>() % 1000 < permille {
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"env\":\"{name}\",\"error\":\"injected\"}}"),
        );
    }
    if req.uri().path() == "/healthz" {
        let pool = b.pool_size.load(SeqCst);
        return reply(
            StatusCode::OK,
            format!("{{\"status\":\"ok\",\"env\":\"{name}\",\"pool_size\":{pool}}}"),
        );
    }
    if req.headers().contains_key(header::UPGRADE) {
        return websocket(req, name, b.clone());
    }
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = req.into_body();
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_bytes += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => return reply(StatusCode::BAD_REQUEST, "{\"error\":\"body\"}".into()),
        }
    }
    let json = serde_json::json!({
        "env": name,
        "method": method,
        "path": path,
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let mut resp = reply(StatusCode::OK, json.to_string());
    if b.connection_listed_header.load(SeqCst) {
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, http::HeaderValue::from_static("x-hop"));
        h.insert("x-hop", http::HeaderValue::from_static("must-not-leak"));
    }
    resp
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn websocket(mut req: Request<Incoming>, name: &str, b: Arc<Behaviour>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return reply(
            StatusCode::BAD_REQUEST,
            "{\"error\":\"no sec-websocket-key\"}".into(),
        );
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    let name = name.to_owned();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        b.tunnels.fetch_add(1, SeqCst);
        let _tunnel = Tunnel(&b);
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let _ = ws
            .send(tokio_tungstenite::tungstenite::Message::text(format!(
                "hello from {name}"
            )))
            .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
    h.insert(
        header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}
