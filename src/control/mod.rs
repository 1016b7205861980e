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

/// Serve the control API on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, control: Arc<Admin>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let control = control.clone();
                let service = service_fn(move |req| {
                    let control = control.clone();
                    async move { Ok::<_, std::convert::Infallible>(routes::route(&control, req).await) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    // Event streams never end by themselves: give other requests a moment, then stop.
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
}
