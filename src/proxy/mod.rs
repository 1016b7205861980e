//! The data path: every user request of a migration passes through here.
//!
//! Owns: the client listener ([`server`]), per-request routing and forwarding ([`handler`]),
//! single attempts and their failure classes ([`attempt`]), upstream pools ([`upstream`],
//! [`connpool`], request timeouts in [`deadlines`]),
//! streamed bodies ([`body`]), header rules ([`headers`]), a coarse clock for bookkeeping
//! ([`clock`]), the retry budget ([`budget`]) and WebSocket/Upgrade tunnels ([`tunnel`]);
//! client limits ([`limits`], [`guard`], [`conn`]) with the idle close and the drain of
//! client connections ([`supervise`]), the refusal of requests framed two ways ([`screen`],
//! following the bytes with [`framing`]) and the reloadable state ([`live`]); and herd
//! protection (docs/protection.md): admission control per env ([`admission`], adaptive limit
//! in [`gradient`]), new-session rates ([`rate`]), the 503 / waiting-room answer ([`shed`])
//! and the tunnel drain that moves long-lived connections after a weight change ([`drain`],
//! closing in [`pipe`], framing in [`wsframe`]).
//!
//! Must not touch: the store, the analyzer or the orchestrator. A request reads one routing
//! snapshot (an atomic load), records into lock-free metrics, and never waits on anything but
//! its own upstream. Upstream addresses come only from the config, never from the request, so
//! no Host header or absolute URI can steer a request to the control listener or anywhere else.

pub mod client;
pub mod clock;
pub mod handler;
pub mod headers;
pub mod protect;
pub mod tunnel;
pub mod upstream;

use std::sync::Arc;
use std::time::Instant;

use http::HeaderName;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::router::{Env, KeySource, Router};

pub use client::live::Live;
pub use client::server::{bind, serve, serve_live, Conn};
pub use client::workers::Workers;
pub use upstream::body::RespBody;

use handler::shed;
use protect::{admission, budget};

/// Everything the data path shares, built once at start (and on a config reload).
#[derive(Debug)]
pub struct Proxy {
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    pub tunnels: Arc<tunnel::registry::Tunnels>,
    pools: [upstream::pool::Pool; 3],
    guards: [admission::EnvGuard; 3],
    shed: shed::ShedAnswers,
    drain_rate: f64,
    budget: budget::RetryBudget,
    key_sources: Vec<KeySource>,
    override_header: HeaderName,
    override_secret_header: HeaderName,
    override_secret: Option<Box<[u8]>>,
    trust_forwarded: bool,
}

impl Proxy {
    pub fn new(cfg: &Config, router: Arc<Router>, metrics: Arc<Metrics>) -> Proxy {
        let origin = Instant::now();
        let pool_metrics = metrics.clone();
        Proxy {
            guards: Env::ALL
                .map(|env| admission::EnvGuard::new(env, cfg.protect(env), &metrics, origin)),
            shed: shed::ShedAnswers::new(
                cfg.protection.page.as_deref(),
                cfg.protection.retry_after_s,
            ),
            drain_rate: cfg.protection.drain_rate,
            router,
            metrics,
            tunnels: Arc::new(tunnel::registry::Tunnels::default()),
            pools: Env::ALL.map(|env| upstream::pool::Pool::new(env, cfg.env(env), &pool_metrics)),
            budget: budget::RetryBudget::new(cfg.retry_budget, origin),
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

    fn pool(&self, env: Env) -> &upstream::pool::Pool {
        &self.pools[env as usize]
    }

    /// The admission control and new-session rate of `env`.
    pub fn guard(&self, env: Env) -> &admission::EnvGuard {
        &self.guards[env as usize]
    }
}
