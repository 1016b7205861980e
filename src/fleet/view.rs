//! What one instance knows of the fleet: the records the instances publish, added up.
//!
//! Owns: the instance record's shape, which records count (live and fresh), their sum, and
//! the API's [`FleetView`]. Must not touch: etcd (the membership task reads and writes the
//! records) or the clock (times come in as arguments).

use serde::{Deserialize, Serialize};

use crate::api::{FleetView, InstanceView};
use crate::metrics::{RawWindow, Scope};

/// What each instance publishes under `<prefix>/instances/<id>`, bound to its lease.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    pub admin: String,
    pub proxy: String,
    /// The publisher's wall clock when it wrote the record (ms since the epoch).
    pub seen_ms: u64,
    /// Its own counts over the current analysis window.
    pub window: RawWindow,
}

/// The fleet as last read from etcd.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peers {
    pub records: Vec<InstanceRecord>,
    /// Value of the leader key (an instance id), if held.
    pub leader: Option<String>,
    pub etcd_ok: bool,
    pub etcd_error: Option<String>,
    pub down_since_ms: Option<u64>,
}

/// A record older than this is left out of the sums: its instance lost etcd (or its clock is
/// off by more than this), and its figures would be judged twice over a stale window.
pub const FRESH_MS: u64 = 3_000;

impl Peers {
    /// `own` (this instance's counts, read just now) plus every other instance's fresh counts.
    pub fn merged(&self, own_id: &str, own: &RawWindow, now_ms: u64) -> RawWindow {
        let mut sum = own.clone();
        for r in self.fresh(now_ms).filter(|r| r.id != own_id) {
            sum.merge(&r.window);
        }
        sum
    }

    fn fresh(&self, now_ms: u64) -> impl Iterator<Item = &InstanceRecord> {
        self.records
            .iter()
            .filter(move |r| now_ms.saturating_sub(r.seen_ms) <= FRESH_MS)
    }

    /// The API's view, with this instance's own line from `own` (fresher than its record).
    pub fn view(&self, own: &InstanceRecord) -> FleetView {
        let mut instances: Vec<InstanceView> = self
            .records
            .iter()
            .filter(|r| r.id != own.id)
            .chain(std::iter::once(own))
            .map(|r| InstanceView {
                id: r.id.clone(),
                admin: r.admin.clone(),
                proxy: r.proxy.clone(),
                last_seen_ms: r.seen_ms,
                leader: self.leader.as_deref() == Some(r.id.as_str()),
                rps: r.window.snapshot().scope(Scope::Users).rps,
            })
            .collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        FleetView {
            instance: own.id.clone(),
            leader: self.leader.clone(),
            etcd_ok: self.etcd_ok,
            etcd_error: self.etcd_error.clone(),
            etcd_down_since_ms: self.down_since_ms,
            instances,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RawScope;

    fn window(requests: u64, errors: u64) -> RawWindow {
        let mut counters = vec![0; 20];
        counters[0] = requests;
        counters[1] = errors;
        RawWindow {
            window_ms: 10_000,
            span_s: 10.0,
            scopes: (0..4)
                .map(|_| RawScope {
                    counters: counters.clone(),
                    latency: vec![(100, requests)],
                    active: 1,
                })
                .collect(),
        }
    }

    fn record(id: &str, seen_ms: u64, w: RawWindow) -> InstanceRecord {
        InstanceRecord {
            id: id.into(),
            admin: format!("{id}:1"),
            proxy: format!("{id}:2"),
            seen_ms,
            window: w,
        }
    }

    #[test]
    fn the_sum_adds_fresh_peers_and_skips_stale_ones_and_our_own_record() {
        let peers = Peers {
            records: vec![
                record("a", 10_000, window(999, 999)),
                record("b", 9_500, window(100, 10)),
                record("c", 5_000, window(500, 500)),
            ],
            leader: Some("a".into()),
            etcd_ok: true,
            ..Peers::default()
        };
        let sum = peers.merged("a", &window(300, 0), 10_000);
        let snap = sum.snapshot();
        let users = snap.scope(Scope::Users);
        assert_eq!(
            users.requests, 400,
            "own 300 + b's 100; c is stale, a's record is ours"
        );
        assert_eq!(users.errors, 10);
        assert_eq!(users.active, 2);
        assert!((users.error_rate - 0.025).abs() < 1e-9);
    }

    #[test]
    fn the_view_lists_everyone_once_with_the_leader_marked() {
        let peers = Peers {
            records: vec![record("b", 1, window(10, 0)), record("a", 1, window(1, 0))],
            leader: Some("b".into()),
            etcd_ok: true,
            ..Peers::default()
        };
        let v = peers.view(&record("a", 2, window(20, 0)));
        let ids: Vec<_> = v
            .instances
            .iter()
            .map(|i| (i.id.as_str(), i.leader))
            .collect();
        assert_eq!(ids, [("a", false), ("b", true)]);
        assert_eq!(
            v.instances[0].last_seen_ms, 2,
            "our own line is the fresh one"
        );
        assert!((v.instances[0].rps - 2.0).abs() < 1e-9);
    }
}
