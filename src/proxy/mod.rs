//! The data path: every user request of a migration passes through here.
//!
//! Owns: the client listener ([`server`]), per-request routing and forwarding ([`handler`]),
//! single attempts and their failure classes ([`attempt`]), upstream pools ([`upstream`]),
//! streamed bodies ([`body`]), header rules ([`headers`]), the retry budget ([`budget`]) and
//! WebSocket/Upgrade tunnels ([`tunnel`]); client limits ([`limits`], [`guard`], [`conn`]) and
//! the reloadable state ([`live`]).
//!
//! Must not touch: the store, the analyzer or the orchestrator. A request reads one routing
//! snapshot (an atomic load), records into lock-free metrics, and never waits on anything but
//! its own upstream. Upstream addresses come only from the config, never from the request, so
//! no Host header or absolute URI can steer a request to the control listener or anywhere else.

pub mod attempt;
pub mod body;
pub mod budget;
pub mod conn;
pub mod guard;
pub mod handler;
pub mod headers;
pub mod limits;
pub mod live;
pub mod server;
pub mod tunnel;
pub mod upstream;

use std::sync::Arc;
use std::time::Instant;

use http::HeaderName;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::router::{Env, KeySource, Router};

pub use body::RespBody;
pub use server::{serve, serve_live};

/// Everything the data path shares, built once at start (and on a config reload).
#[derive(Debug)]
pub struct Proxy {
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    pub tunnels: Arc<tunnel::Tunnels>,
    pools: [upstream::Pool; 3],
    budget: budget::RetryBudget,
    key_sources: Vec<KeySource>,
    override_header: HeaderName,
    override_secret_header: HeaderName,
    override_secret: Option<Box<[u8]>>,
    trust_forwarded: bool,
}

impl Proxy {
    pub fn new(cfg: &Config, router: Arc<Router>, metrics: Arc<Metrics>) -> Proxy {
        Proxy {
            router,
            metrics,
            tunnels: Arc::new(tunnel::Tunnels::default()),
            pools: Env::ALL.map(|env| upstream::Pool::new(env, cfg.env(env))),
            budget: budget::RetryBudget::new(cfg.retry_budget, Instant::now()),
            key_sources: cfg.user_key.clone(),
            override_header: cfg.override_header.clone(),
            override_secret_header: cfg.override_secret_header.clone(),
            override_secret: cfg
                .override_secret
                .as_ref()
                .map(|s| s.as_bytes().to_vec().into_boxed_slice()),
            trust_forwarded: cfg.trust_forwarded,
        }
    }

    fn pool(&self, env: Env) -> &upstream::Pool {
        &self.pools[env as usize]
    }
}
