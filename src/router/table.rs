//! The routing snapshot: which env a user key goes to at a weight and salt.
//!
//! Owns: [`Env`], [`Weight`] and the immutable [`RoutingTable`]. Must not touch: how a table
//! is shared or swapped ([`super::publish`]), clocks, I/O, tokio — this file is pure. The
//! orchestrator (or a manual weight change) builds a new table; the proxy routes with the one
//! it loaded for the request.

use std::sync::Arc;

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
    /// Share of OLD's users whose requests are also copied to NEW (shadow traffic).
    mirror: Weight,
    /// The first bucket past the mirrored users: OLD's users are buckets `weight..`, the
    /// mirrored ones `weight..mirror_end` — the users the next weight step moves first.
    mirror_end: u32,
    /// Compare NEW's answers to the copies with OLD's (a step's `compare`).
    compare: bool,
}

impl RoutingTable {
    pub fn new(weight: Weight, salt: &str) -> Self {
        RoutingTable {
            weight,
            salt: Arc::from(salt),
            seed: salt_seed(salt),
            mirror: Weight::ZERO,
            mirror_end: weight.0,
            compare: false,
        }
    }

    /// The same table with another weight (salt and mirror kept).
    pub fn with_weight(&self, weight: Weight) -> Self {
        RoutingTable {
            weight,
            ..self.clone()
        }
        .with_mirror(self.mirror, self.compare)
    }

    /// The same table copying `mirror` of OLD's users' requests to NEW, comparing the
    /// answers when `compare` (weight and salt kept).
    pub fn with_mirror(&self, mirror: Weight, compare: bool) -> Self {
        let old_buckets = BUCKETS - self.weight.0;
        let mirrored = u64::from(old_buckets) * u64::from(mirror.0) / u64::from(BUCKETS);
        RoutingTable {
            mirror,
            mirror_end: self.weight.0 + mirrored as u32,
            compare: compare && mirror > Weight::ZERO,
            ..self.clone()
        }
    }

    /// Share of OLD's users whose requests are copied to NEW.
    pub fn mirror(&self) -> Weight {
        self.mirror
    }

    /// Whether the copies' answers are compared with OLD's.
    pub fn compare(&self) -> bool {
        self.compare
    }

    /// The same table with another salt (reshuffles users; weight kept).
    pub fn with_salt(&self, salt: &str) -> Self {
        RoutingTable {
            salt: Arc::from(salt),
            seed: salt_seed(salt),
            ..self.clone()
        }
    }

    pub fn weight(&self) -> Weight {
        self.weight
    }

    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// The environment of a user key: NEW when the key's bucket is below the weight, else OLD.
    /// (To force one request to an env, the proxy's override header with its secret is the
    /// way; docs/config.md.)
    #[inline]
    pub fn route(&self, key: &[u8]) -> Env {
        self.route_mirrored(key).0
    }

    /// [`RoutingTable::route`], and whether the request is also copied to NEW: a user on OLD
    /// whose bucket is among the mirrored ones (whole users, by the same sticky bucket).
    #[inline]
    pub fn route_mirrored(&self, key: &[u8]) -> (Env, bool) {
        let b = bucket(self.seed, key);
        if b < self.weight.0 {
            (Env::New, false)
        } else {
            (Env::Old, b < self.mirror_end)
        }
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
    fn mirror_copies_whole_users_of_old_only() {
        let t = RoutingTable::new(Weight::from_percent(20.0), "s")
            .with_mirror(Weight::from_percent(50.0), true);
        let (mut new, mut mirrored, mut old) = (0, 0, 0);
        for i in 0..20_000 {
            let k = format!("u{i}");
            match t.route_mirrored(k.as_bytes()) {
                (Env::New, m) => {
                    assert!(!m, "a user on NEW is never mirrored");
                    new += 1;
                }
                (_, true) => mirrored += 1,
                _ => old += 1,
            }
            assert_eq!(t.route_mirrored(k.as_bytes()).0, t.route(k.as_bytes()));
        }
        assert!((3_600..4_400).contains(&new), "{new}");
        // Half of OLD's 80 %: about 8,000 of 20,000.
        assert!((7_400..8_600).contains(&mirrored), "{mirrored}");
        assert!((7_400..8_600).contains(&old), "{old}");
        // The weight moves, the mirror share of OLD stays.
        let t2 = t.with_weight(Weight::from_percent(60.0));
        assert_eq!(t2.mirror(), Weight::from_percent(50.0));
        assert!(t2.compare());
        assert!(!RoutingTable::new(Weight::ZERO, "s").compare());
        let full = RoutingTable::new(Weight::ZERO, "s").with_mirror(Weight::FULL, false);
        assert!(
            (0..500).all(|i| full.route_mirrored(format!("u{i}").as_bytes()) == (Env::Old, true))
        );
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
}
