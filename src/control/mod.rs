//! The control API: HTTP+JSON on the admin listener, for the CLI, the console and scripts.
//!
//! Owns: who is calling ([`access`]: the named operators of [`tokens`] and the shared token of
//! [`auth`]), which role each route needs, routing and validation of API requests ([`routes`]),
//! and the live event stream ([`sse`]). Must not touch: the store or the router directly —
//! every change goes through the orchestrator [`Handle`], which persists before it acts. Bad
//! input is answered with 400 and changes nothing; wrong-state commands get 409.

pub mod access;
pub mod auth;
pub mod routes;
pub mod sse;
pub mod ticks;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::orchestrator::Handle;
use crate::tls::accept::accept;
use crate::tls::ServerTls;

pub use access::{Access, AccessConfig, AccessError};
pub use auth::{Token, TokenError};

/// What the admin listener serves from, shared by every admin connection. (Not to be confused
/// with `orchestrator::Control`, the run's persisted state.)
pub struct Admin {
    pub handle: Handle,
    /// The operators accepted now (reloaded with the config).
    pub access: Arc<Access>,
    /// Applies `POST /v1/reload`; `None` when the server has no config file to reload.
    pub reload: Option<Arc<crate::reload::Reloader>>,
}

/// How long an admin client has to finish its TLS handshake, and then its request head.
const ADMIN_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve the control API on `listener` until `shutdown` resolves; over TLS when `tls` is set
/// (`[admin] tls_cert`), each connection's handshake in its own task.
pub async fn serve(
    listener: TcpListener,
    control: Arc<Admin>,
    tls: Option<Arc<ServerTls>>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, client)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let control = control.clone();
                let service = service_fn(move |req| {
                    let control = control.clone();
                    async move { Ok::<_, std::convert::Infallible>(routes::route(&control, req).await) }
                });
                let http = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(ADMIN_HEAD_TIMEOUT)
                    .clone();
                let Some(tls) = tls.clone() else {
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    continue;
                };
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    match accept(&tls, stream, |s| s, ADMIN_HEAD_TIMEOUT).await {
                        Ok(stream) => {
                            let conn = http.serve_connection(TokioIo::new(stream), service);
                            let _ = watcher.watch(conn).await;
                        }
                        Err(e) => tracing::debug!(%client, error = %e, "admin connection without TLS"),
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    // Event streams never end by themselves: give other requests a moment, then stop.
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
}
