//! The client listener: accepts connections, speaks HTTP/1.1 and HTTP/2 (h2c, prior knowledge
//! or upgrade-free), and drains gracefully on shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::Proxy;

/// Accept-queue length asked of the kernel for the client listener (capped by
/// `net.core.somaxconn`). The default of `TcpListener::bind` is 128: a reconnect storm of a
/// thousand clients would overflow it, and each dropped SYN comes back only after a 1 s (then
/// 3 s) retransmit — a herd made worse by the listener itself.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Bind the client listener on `addr` with [`LISTEN_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What the proxy knows about one client connection.
///
/// A connection is a new session until one of its requests has been let in by its env's
/// new-session rate; requests on an established (keep-alive) connection need no token, so
/// users already in are preferred over newcomers during a reconnect storm.
#[derive(Debug, Default)]
pub struct Conn {
    established: AtomicBool,
}

impl Conn {
    pub fn established(&self) -> bool {
        self.established.load(Relaxed)
    }

    pub fn establish(&self) {
        self.established.store(true, Relaxed);
    }
}

/// Serve clients on `listener` until `shutdown` resolves; then stop accepting, let in-flight
/// requests and tunnels finish within `drain_timeout`, and return.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(64 * 1024)
        .max_pending_accept_reset_streams(Some(20))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let graceful = GracefulShutdown::new();
    let drain = tokio::spawn(super::drain::run(
        proxy.tunnels.clone(),
        proxy.router.clone(),
        proxy.metrics.clone(),
        proxy.drain_rate,
    ));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let conn = Arc::new(Conn::default());
                let service = service_fn(move |req| {
                    let (proxy, conn) = (proxy.clone(), conn.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(proxy.handle(req, client, &conn).await)
                    }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "client connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    drain.abort();
    tracing::info!("draining client connections");
    let start = tokio::time::Instant::now();
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain_timeout,
            "drain timeout: closing remaining client connections"
        );
    }
    let left = proxy
        .tunnels
        .drain(drain_timeout.saturating_sub(start.elapsed()))
        .await;
    if left > 0 {
        tracing::warn!(left, "drain timeout: closed remaining tunnels");
    }
}
