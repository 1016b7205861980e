//! The one shared routing snapshot and the signal that it changed.
//!
//! Owns: [`Router`], the cell every worker reads once per request ([`Router::load`]: an atomic
//! pointer load, no lock, no I/O) and the one place a new [`RoutingTable`] is swapped in
//! ([`Router::publish`]), with a tokio `watch` bumped on each publish so watchers (the tunnel
//! drain) wake on a change instead of polling. Must not touch: the routing rule — that is the
//! pure [`super::table`]; this file is the router's only one that uses tokio.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::table::{RoutingTable, Weight};

/// The single atomically swapped routing snapshot shared by the proxy and its writers.
#[derive(Debug)]
pub struct Router {
    table: ArcSwap<RoutingTable>,
    /// Bumped after every publish, so watchers (the tunnel drain) wake on a change instead of
    /// polling. The request path never touches it.
    version: tokio::sync::watch::Sender<u64>,
}

impl Router {
    pub fn new(table: RoutingTable) -> Self {
        Router {
            table: ArcSwap::from_pointee(table),
            version: tokio::sync::watch::channel(0).0,
        }
    }

    /// A receiver that is marked changed after each later publish (its value: the count of
    /// publishes so far).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The current snapshot. Cheap; hold it only for the routing decision.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.table.load()
    }

    pub fn snapshot(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Replace the snapshot. Callers that change state durably must persist first.
    pub fn publish(&self, table: RoutingTable) {
        self.table.store(Arc::new(table));
        self.bump();
    }

    /// Publish the current table with a new mirror share and comparison (weight kept).
    pub fn set_mirror(&self, mirror: Weight, compare: bool) {
        self.table.rcu(|t| t.with_mirror(mirror, compare));
        self.bump();
    }

    /// Publish the current table with a new weight.
    pub fn set_weight(&self, weight: Weight) {
        self.table.rcu(|t| t.with_weight(weight));
        self.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_swaps_snapshots() {
        let r = Router::new(RoutingTable::new(Weight::ZERO, "s"));
        let mut seen = r.watch();
        r.set_weight(Weight::from_percent(30.0));
        assert!(seen.has_changed().unwrap_or(false));
        assert_eq!(*seen.borrow_and_update(), 1);
        assert_eq!(r.load().weight().bp(), 3000);
        assert_eq!(r.load().salt(), "s");
    }
}
