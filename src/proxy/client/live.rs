//! The data path's reloadable state: the current [`Proxy`] and [`Limits`], swapped whole.
//!
//! Owns: one `ArcSwap` read once per accepted connection, and a generation number that every
//! request reads (one plain atomic load) to see whether its connection's copy
//! ([`ConnCurrent`]) is still current. A reload builds a complete new [`Proxy`] from the new
//! config and stores it; requests already running keep the `Arc` they loaded (their pools,
//! timeouts and budget) until they finish, so nothing in flight is dropped or changed midway.
//! Router, metrics and the tunnel registry are carried over, never rebuilt: the weight, the
//! numbers and the open tunnels belong to the process, not to one config.
//!
//! The listener's certificates ([`ServerTls`]) are held here too, for the connections to shake
//! hands with; they swap on their own (a reload installs them), not with the rest.
//!
//! Must not touch: listeners, the store or the orchestrator — which config keys may change on
//! a reload is decided by the caller (`crate::serve`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::config::Limits;
use crate::proxy::tunnel::registry::Tunnels;
use crate::proxy::Proxy;
use crate::tls::ServerTls;

/// What a reload replaces.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) limits: Limits,
    /// How long a shutdown waits for requests and tunnels (read when the shutdown starts).
    pub(crate) drain_timeout: Duration,
    /// New connections start in the client lane (`[proxy] client_lane`).
    pub(crate) client_lane: bool,
}

impl Current {
    /// What `cfg` says, with `proxy` built from it.
    fn new(proxy: Arc<Proxy>, cfg: &Config) -> Current {
        Current {
            proxy,
            limits: cfg.limits,
            drain_timeout: cfg.drain_timeout,
            client_lane: cfg.client_lane,
        }
    }
}

/// Shared by the accept loop, every connection and whoever reloads.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Current>,
    /// Bumped after every store into `current`.
    generation: AtomicU64,
    /// The listener's certificates when it speaks TLS (`[listen] tls_cert`); a reload swaps
    /// what it holds ([`ServerTls::install`]), never whether there is one.
    tls: Option<Arc<ServerTls>>,
}

impl Live {
    /// The state `cfg` describes, with `proxy` built from it.
    pub fn from_config(proxy: Arc<Proxy>, cfg: &Config) -> Arc<Live> {
        Live::with(Current::new(proxy, cfg), None)
    }

    /// As [`Live::from_config`], on a listener that speaks TLS with `tls`.
    pub fn from_config_tls(proxy: Arc<Proxy>, cfg: &Config, tls: Arc<ServerTls>) -> Arc<Live> {
        Live::with(Current::new(proxy, cfg), Some(tls))
    }

    /// `limits` and `drain_timeout` for `proxy`, with the client lane on.
    pub fn new(proxy: Arc<Proxy>, limits: Limits, drain_timeout: Duration) -> Arc<Live> {
        Live::with(
            Current {
                proxy,
                limits,
                drain_timeout,
                client_lane: true,
            },
            None,
        )
    }

    fn with(current: Current, tls: Option<Arc<ServerTls>>) -> Arc<Live> {
        Arc::new(Live {
            current: ArcSwap::from_pointee(current),
            generation: AtomicU64::new(0),
            tls,
        })
    }

    /// The listener's certificates, if it speaks TLS.
    pub fn tls(&self) -> Option<Arc<ServerTls>> {
        self.tls.clone()
    }

    /// The current state, for the accept loop, the sweepers and shutdown (a request uses its
    /// connection's [`ConnCurrent`]).
    pub(crate) fn load(&self) -> Arc<Current> {
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
        self.current
            .store(Arc::new(Current::new(Arc::new(proxy), cfg)));
        // After the store: whoever sees the new generation loads the new state.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A connection's own copy of the current state, for [`ConnCurrent`].
    fn copy(&self) -> (u64, Arc<Current>) {
        let generation = self.generation.load(Ordering::Acquire);
        (generation, Arc::new(Current::clone(&self.current.load())))
    }
}

/// One client connection's copy of [`Current`], handed to each of its requests.
///
/// Why a copy: an `Arc` shared by every connection has one reference count, and a clone and a
/// drop per request on two cores move that cache line between them on every request. The
/// copy's count is touched only by its connection's worker; each request checks the
/// generation (a read-only load) and takes a fresh copy after a reload. An idle connection
/// keeps the state it last used (a replaced `Proxy` and its idle upstream connections) until
/// its next request or its close.
#[derive(Debug)]
pub(crate) struct ConnCurrent {
    live: Arc<Live>,
    /// Used by the connection's own task only.
    copy: RefCell<(u64, Arc<Current>)>,
}

impl ConnCurrent {
    pub fn new(live: Arc<Live>) -> ConnCurrent {
        let copy = RefCell::new(live.copy());
        ConnCurrent { live, copy }
    }

    /// The state for the next request on this connection.
    pub(crate) fn load(&self) -> Arc<Current> {
        let now = self.live.generation.load(Ordering::Acquire);
        let mut copy = self.copy.borrow_mut();
        if copy.0 != now {
            *copy = self.live.copy();
        }
        copy.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::router::{Router, RoutingTable, Weight};

    /// The README's example config (any valid config does: every reload builds a new `Proxy`).
    fn config() -> Config {
        Config::parse(
            include_str!("../../../examples/cutover.toml"),
            "cutover.toml",
        )
        .expect("examples/cutover.toml is valid")
    }

    #[test]
    fn a_connection_keeps_its_copy_until_a_reload_and_then_takes_the_new_state() {
        let cfg = config();
        let router = Arc::new(Router::new(RoutingTable::new(Weight::ZERO, &cfg.salt)));
        let proxy = Arc::new(Proxy::new(&cfg, router, Arc::new(Metrics::new())));
        let live = Live::new(proxy.clone(), cfg.limits, cfg.drain_timeout);
        let conn = ConnCurrent::new(live.clone());

        let first = conn.load();
        let second = conn.load();
        assert!(Arc::ptr_eq(&first, &second), "one copy per connection");
        assert!(Arc::ptr_eq(&first.proxy, &proxy));
        assert!(
            !Arc::ptr_eq(&first, &live.load()),
            "a copy of its own, not the shared Arc"
        );

        live.apply(&config());
        let after = conn.load();
        assert!(
            !Arc::ptr_eq(&after.proxy, &proxy),
            "the reload was not seen"
        );
        assert!(Arc::ptr_eq(&after.proxy, &live.load().proxy));
        assert!(
            Arc::ptr_eq(&after, &conn.load()),
            "a copy per reload, not per request"
        );
    }
}
