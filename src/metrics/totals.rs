//! Cumulative counters since start, per scope: what Prometheus scrapes.
//!
//! Owns: monotonically increasing counters, the coarse Prometheus latency buckets and the
//! active-connection gauges. What every request bumps (`Served`) is kept per data-plane
//! worker ([`Sharded`]) and added up when read. Must not touch: windows — the ring answers
//! "the last N seconds", this answers "since start", so a scrape never depends on when the
//! analyzer last looked.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};

use super::Outcome;
use crate::shard::Sharded;

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

/// What the requests of one scope added up to on one worker.
#[derive(Debug, Default)]
struct Served {
    requests: AtomicU64,
    errors: [AtomicU64; 5],
    /// Non-cumulative counts per [`PROM_BUCKETS`] bound, plus one for `+Inf`.
    latency_buckets: [AtomicU64; 12],
    latency_sum_us: AtomicU64,
    /// Open connections and tunnels opened minus closed on this worker (a guard may be
    /// dropped on another thread, so one worker's count can be negative; the sum is not).
    active: AtomicI64,
}

/// Since-start numbers of one scope.
#[derive(Debug, Default)]
pub struct ScopeTotals {
    served: Sharded<Served>,
    pub displaced_to_fallback: AtomicU64,
    pub displaced_failed: AtomicU64,
    pub probes_ok: AtomicU64,
    pub probes_failed: AtomicU64,
    pub last_probe: AtomicU8,
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
        let served = self.served.local();
        served.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(k) = error_kind_index(outcome) {
            served.errors[k].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(s) = latency_s {
            let b = PROM_BUCKETS
                .iter()
                .position(|le| s <= *le)
                .unwrap_or(PROM_BUCKETS.len());
            served.latency_buckets[b].fetch_add(1, Ordering::Relaxed);
            served
                .latency_sum_us
                .fetch_add((s * 1e6) as u64, Ordering::Relaxed);
        }
    }

    /// The sum over the workers of `field`.
    fn sum(&self, field: impl Fn(&Served) -> &AtomicU64) -> u64 {
        self.served
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    }

    /// Requests (or attempts) finished.
    pub fn requests(&self) -> u64 {
        self.sum(|s| &s.requests)
    }

    /// Failed requests of kind `k` ([`ERROR_KINDS`]).
    pub fn errors(&self, k: usize) -> u64 {
        self.sum(|s| &s.errors[k])
    }

    /// Timed requests in Prometheus bucket `i` ([`PROM_BUCKETS`], then `+Inf`), not cumulative.
    pub fn latency_bucket(&self, i: usize) -> u64 {
        self.sum(|s| &s.latency_buckets[i])
    }

    pub fn latency_sum_us(&self) -> u64 {
        self.sum(|s| &s.latency_sum_us)
    }

    /// One more open connection or tunnel (on the current thread's worker).
    pub fn open(&self) {
        self.served.local().active.fetch_add(1, Ordering::Relaxed);
    }

    /// One fewer open connection or tunnel.
    pub fn close(&self) {
        self.served.local().active.fetch_sub(1, Ordering::Relaxed);
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
        let sum: i64 = self
            .served
            .iter()
            .map(|s| s.active.load(Ordering::Relaxed))
            .sum();
        sum.max(0) as u64
    }
}

/// Since-start numbers that belong to no scope.
#[derive(Debug, Default)]
pub struct GlobalTotals {
    pub retries: AtomicU64,
    pub budget_exhausted: AtomicU64,
    /// Requests the client side's own HTTP/1.1 lane read and answered (the rest went through
    /// hyper's server); added once per connection, when it ends.
    pub client_lane_requests: AtomicU64,
    /// Failed exchanges that were the client's fault, by [`super::ClientFault::index`].
    pub client_errors: [AtomicU64; 7],
    /// Failed exchanges that were the proxy's own fault, by [`super::ProxyFault::index`].
    pub proxy_errors: [AtomicU64; 1],
    /// TLS handshakes on the users' listener, by [`super::Handshake::index`].
    pub tls_handshakes: [AtomicU64; 4],
    /// Requests forced to an env by the override header (smoke tests), by env scope index:
    /// answered below 500, and not.
    pub overrides_ok: [AtomicU64; 3],
    pub overrides_failed: [AtomicU64; 3],
}
