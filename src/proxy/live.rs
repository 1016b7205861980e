//! The data path's reloadable state: the current [`Proxy`] and [`Limits`], swapped whole.
//!
//! Owns: one `ArcSwap` read once per request (a lock-free load) and once per accepted
//! connection. A reload builds a complete new [`Proxy`] from the new config and stores it;
//! requests already running keep the `Arc` they loaded (their pools, timeouts and budget) until
//! they finish, so nothing in flight is dropped or changed midway. Router, metrics and the
//! tunnel registry are carried over, never rebuilt: the weight, the numbers and the open
//! tunnels belong to the process, not to one config.
//!
//! Must not touch: listeners, the store or the orchestrator — which config keys may change on
//! a reload is decided by the caller (`crate::serve`).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::limits::Limits;
use super::tunnel::Tunnels;
use super::Proxy;
use crate::config::Config;

/// What a reload replaces.
#[derive(Debug)]
pub struct Current {
    pub proxy: Arc<Proxy>,
    pub limits: Limits,
    /// How long a shutdown waits for requests and tunnels (read when the shutdown starts).
    pub drain_timeout: Duration,
}

/// Shared by the accept loop, every connection and whoever reloads.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Current>,
}

impl Live {
    pub fn new(proxy: Arc<Proxy>, limits: Limits, drain_timeout: Duration) -> Arc<Live> {
        Arc::new(Live {
            current: ArcSwap::from_pointee(Current {
                proxy,
                limits,
                drain_timeout,
            }),
        })
    }

    /// The state to use for one request or connection.
    pub fn load(&self) -> Arc<Current> {
        self.current.load_full()
    }

    /// The tunnel registry (the same across reloads).
    pub fn tunnels(&self) -> Arc<Tunnels> {
        self.current.load().proxy.tunnels.clone()
    }

    /// Build the data path for `cfg` and make it current for every request from now on.
    pub fn apply(&self, cfg: &Config) {
        let old = self.load();
        let mut proxy = Proxy::new(cfg, old.proxy.router.clone(), old.proxy.metrics.clone());
        proxy.tunnels = old.proxy.tunnels.clone();
        self.current.store(Arc::new(Current {
            proxy: Arc::new(proxy),
            limits: cfg.limits,
            drain_timeout: cfg.drain_timeout,
        }));
    }
}
