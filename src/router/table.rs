//! The routing snapshot and the one place it is swapped.
//!
//! A [`RoutingTable`] is immutable; the orchestrator (or a manual weight change) builds a new
//! one and [`Router::publish`]es it. The proxy calls [`Router::load`] once per request: an
//! atomic pointer load, no lock, no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use super::hash::{bucket, salt_seed, BUCKETS};

/// The environments a request can be sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Env {
    Old,
    New,
    Fallback,
}

impl Env {
    pub const ALL: [Env; 3] = [Env::Old, Env::New, Env::Fallback];

    pub fn as_str(self) -> &'static str {
        match self {
            Env::Old => "old",
            Env::New => "new",
            Env::Fallback => "fallback",
        }
    }

    pub fn parse(s: &str) -> Option<Env> {
        match s.trim().to_ascii_lowercase().as_str() {
            "old" => Some(Env::Old),
            "new" => Some(Env::New),
            "fallback" => Some(Env::Fallback),
            _ => None,
        }
    }
}

impl std::fmt::Display for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Share of users on NEW, in basis points of the 10,000 buckets (0 ..= 10000).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Weight(u32);

impl Weight {
    pub const ZERO: Weight = Weight(0);
    pub const FULL: Weight = Weight(BUCKETS);

    /// From basis points, clamped to 0..=10000.
    pub fn from_bp(bp: u32) -> Weight {
        Weight(bp.min(BUCKETS))
    }

    /// From a percentage (e.g. 2.5 → 250 bp), clamped to 0..=100 and rounded to a basis point.
    /// Non-finite input is treated as 0.
    pub fn from_percent(pct: f64) -> Weight {
        if !pct.is_finite() {
            return Weight::ZERO;
        }
        Weight((pct.clamp(0.0, 100.0) * 100.0).round() as u32)
    }

    pub fn bp(self) -> u32 {
        self.0
    }

    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

/// One immutable routing decision table.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    weight: Weight,
    salt: Arc<str>,
    seed: u64,
    pins: HashMap<Box<[u8]>, Env>,
}

impl RoutingTable {
    pub fn new(weight: Weight, salt: &str) -> Self {
        RoutingTable {
            weight,
            salt: Arc::from(salt),
            seed: salt_seed(salt),
            pins: HashMap::new(),
        }
    }

    /// The same table with another weight (salt and pins kept).
    pub fn with_weight(&self, weight: Weight) -> Self {
        RoutingTable {
            weight,
            ..self.clone()
        }
    }

    /// The same table with another salt (reshuffles users; weight and pins kept).
    pub fn with_salt(&self, salt: &str) -> Self {
        RoutingTable {
            salt: Arc::from(salt),
            seed: salt_seed(salt),
            ..self.clone()
        }
    }

    /// The same table with `key` pinned to `env` (or unpinned with `None`).
    pub fn with_pin(&self, key: &[u8], env: Option<Env>) -> Self {
        let mut next = self.clone();
        match env {
            Some(env) => next.pins.insert(key.into(), env),
            None => next.pins.remove(key),
        };
        next
    }

    pub fn weight(&self) -> Weight {
        self.weight
    }

    pub fn salt(&self) -> &str {
        &self.salt
    }

    pub fn pins(&self) -> impl Iterator<Item = (&[u8], Env)> {
        self.pins.iter().map(|(k, v)| (&**k, *v))
    }

    /// The environment of a user key: a pin if there is one, else NEW when the key's bucket
    /// is below the weight, else OLD.
    #[inline]
    pub fn route(&self, key: &[u8]) -> Env {
        if !self.pins.is_empty() {
            if let Some(env) = self.pins.get(key) {
                return *env;
            }
        }
        if bucket(self.seed, key) < self.weight.0 {
            Env::New
        } else {
            Env::Old
        }
    }
}

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
    fn weight_conversions_clamp() {
        assert_eq!(Weight::from_percent(2.5).bp(), 250);
        assert_eq!(Weight::from_percent(150.0), Weight::FULL);
        assert_eq!(Weight::from_percent(-1.0), Weight::ZERO);
        assert_eq!(Weight::from_percent(f64::NAN), Weight::ZERO);
        assert_eq!(Weight::from_bp(20_000), Weight::FULL);
    }

    #[test]
    fn zero_and_full_weights_are_absolute() {
        let zero = RoutingTable::new(Weight::ZERO, "s");
        let full = zero.with_weight(Weight::FULL);
        for i in 0..1000 {
            let k = format!("user{i}");
            assert_eq!(zero.route(k.as_bytes()), Env::Old);
            assert_eq!(full.route(k.as_bytes()), Env::New);
        }
    }

    #[test]
    fn pins_override_the_hash() {
        let t = RoutingTable::new(Weight::ZERO, "s").with_pin(b"vip", Some(Env::New));
        assert_eq!(t.route(b"vip"), Env::New);
        assert_eq!(t.with_pin(b"vip", None).route(b"vip"), Env::Old);
    }

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
