//! Cumulative counters since start, per scope: what Prometheus scrapes.
//!
//! Owns: monotonically increasing counters, the coarse Prometheus latency buckets and the
//! active-connection gauges. Must not touch: windows — the ring answers "the last N seconds",
//! this answers "since start", so a scrape never depends on when the analyzer last looked.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};

use super::Outcome;

/// Upper bounds (seconds) of the Prometheus latency buckets; `+Inf` is implied.
pub const PROM_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Error kinds as Prometheus label values, by [`error_kind_index`].
pub const ERROR_KINDS: [&str; 5] = ["server_error", "timeout", "refused", "reset", "shed"];

pub fn error_kind_index(o: Outcome) -> Option<usize> {
    match o {
        Outcome::Ok => None,
        Outcome::ServerError => Some(0),
        Outcome::Timeout => Some(1),
        Outcome::Refused => Some(2),
        Outcome::Reset => Some(3),
        Outcome::Shed => Some(4),
    }
}

/// Last probe result: none yet, failed, succeeded.
pub const PROBE_NONE: u8 = 0;
pub const PROBE_FAIL: u8 = 1;
pub const PROBE_OK: u8 = 2;

/// Since-start numbers of one scope.
#[derive(Debug, Default)]
pub struct ScopeTotals {
    pub requests: AtomicU64,
    pub errors: [AtomicU64; 5],
    /// Non-cumulative counts per [`PROM_BUCKETS`] bound, plus one for `+Inf`.
    pub latency_buckets: [AtomicU64; 12],
    pub latency_sum_us: AtomicU64,
    pub displaced_to_fallback: AtomicU64,
    pub displaced_failed: AtomicU64,
    pub probes_ok: AtomicU64,
    pub probes_failed: AtomicU64,
    pub last_probe: AtomicU8,
    /// Open connections and tunnels right now (signed so a stray extra drop cannot wrap).
    pub active: AtomicI64,
    /// Shed answers that were the waiting-room page.
    pub waiting_room: AtomicU64,
    /// Requests refused by the new-session rate.
    pub sessions_limited: AtomicU64,
    /// Tunnels closed by the drain (moved to their user's new env).
    pub tunnels_drained: AtomicU64,
    /// The admission limit in force (fixed or adaptive); 0: unlimited.
    pub admission_limit: AtomicU64,
}

impl ScopeTotals {
    pub fn request(&self, outcome: Outcome, latency_s: Option<f64>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(k) = error_kind_index(outcome) {
            self.errors[k].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(s) = latency_s {
            let b = PROM_BUCKETS
                .iter()
                .position(|le| s <= *le)
                .unwrap_or(PROM_BUCKETS.len());
            self.latency_buckets[b].fetch_add(1, Ordering::Relaxed);
            self.latency_sum_us
                .fetch_add((s * 1e6) as u64, Ordering::Relaxed);
        }
    }

    pub fn probe(&self, ok: bool) {
        if ok {
            self.probes_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.probes_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.last_probe
            .store(if ok { PROBE_OK } else { PROBE_FAIL }, Ordering::Relaxed);
    }

    /// The open connections now, never below zero.
    pub fn active_now(&self) -> u64 {
        self.active.load(Ordering::Relaxed).max(0) as u64
    }
}

/// Since-start numbers that belong to no scope.
#[derive(Debug, Default)]
pub struct GlobalTotals {
    pub retries: AtomicU64,
    pub budget_exhausted: AtomicU64,
}
