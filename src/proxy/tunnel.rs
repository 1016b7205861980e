//! Upgrade / WebSocket tunnels, carried end to end to the user's env.
//!
//! The upgrade request is forwarded like any other (with `Upgrade` and `Connection: upgrade`
//! kept); when the env answers 101, both sides are upgraded and bytes are copied both ways
//! until either side closes. Each open tunnel counts as `active` on its env and is registered
//! in [`Tunnels`] so a shutdown can wait for tunnels (bounded by the drain timeout) and then
//! close what is left.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::attempt::{self, Outgoing};
use super::body::{ReqBody, RespBody};
use super::handler::{proxy_error, status_outcome, ENV_HEADER};
use super::Proxy;
use crate::metrics::Scope;
use crate::router::Env;

/// Open tunnels, per env, and the signal that closes them.
#[derive(Debug)]
pub struct Tunnels {
    open: [AtomicUsize; 3],
    close_all: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            open: Default::default(),
            close_all: watch::channel(false).0,
        }
    }
}

impl Tunnels {
    pub fn open(&self, env: Env) -> usize {
        self.open[env as usize].load(SeqCst)
    }

    pub fn total(&self) -> usize {
        Env::ALL.iter().map(|e| self.open(*e)).sum()
    }

    /// Wait until every tunnel has closed or `timeout` passed; then close the rest.
    /// Returns how many had to be closed.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while self.total() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.total();
        let _ = self.close_all.send(true);
        left
    }
}

/// Forward an upgrade request to `env` and, on 101, tunnel the two upgraded connections.
pub async fn open(
    proxy: &Arc<Proxy>,
    mut req: Request<Incoming>,
    client: SocketAddr,
    env: Env,
) -> Response<RespBody> {
    let start = Instant::now();
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, _body) = req.into_parts();
    proxy.prepare_headers(&mut parts, client, true);
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let out = Outgoing {
        method: &parts.method,
        path: &path,
        headers: &parts.headers,
    };
    let scope = Scope::from(env);
    let attempt = attempt::send(proxy.pool(env), &out, ReqBody::Empty, None).await;
    let mut resp = match attempt.result {
        Ok(resp) => resp,
        Err(failure) => {
            let now = Instant::now();
            proxy
                .metrics
                .record(scope, failure.outcome(), start.elapsed(), now);
            proxy
                .metrics
                .record(Scope::Users, failure.outcome(), start.elapsed(), now);
            return proxy_error(env, failure);
        }
    };
    let now = Instant::now();
    let outcome = status_outcome(resp.status());
    proxy.metrics.record(scope, outcome, start.elapsed(), now);
    proxy
        .metrics
        .record(Scope::Users, outcome, start.elapsed(), now);
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The env declined the upgrade: pass its answer through as a normal response.
        let (mut rparts, body) = resp.into_parts();
        super::headers::strip_hop_by_hop(&mut rparts.headers, false);
        rparts
            .headers
            .insert(ENV_HEADER, http::HeaderValue::from_static(env.as_str()));
        let body = match attempt.upstream {
            Some(u) => RespBody::Upstream {
                body,
                _inflight: super::upstream::InflightGuard::new(&u, &proxy.metrics, env),
            },
            None => RespBody::empty(),
        };
        return Response::from_parts(rparts, body);
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let (mut rparts, _) = resp.into_parts();
    rparts
        .headers
        .insert(ENV_HEADER, http::HeaderValue::from_static(env.as_str()));

    let tunnels = proxy.tunnels.clone();
    let metrics = proxy.metrics.clone();
    let mut close = tunnels.close_all.subscribe();
    tunnels.open[env as usize].fetch_add(1, SeqCst);
    let active = metrics.active_owned(scope);
    tokio::spawn(async move {
        let _active = active;
        let pipe = async {
            let (c, u) = tokio::try_join!(client_upgrade, upstream_upgrade)?;
            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
            tokio::io::copy_bidirectional(&mut c, &mut u).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        };
        tokio::select! {
            r = pipe => if let Err(e) = r {
                tracing::debug!(env = %env, error = %e, "tunnel ended with an error");
            },
            _ = close.wait_for(|c| *c) => tracing::debug!(env = %env, "tunnel closed by drain"),
        }
        tunnels.open[env as usize].fetch_sub(1, SeqCst);
    });
    Response::from_parts(rparts, RespBody::empty())
}
