//! How long the users waited: a latency histogram of their requests, recorded with one atomic
//! add, read as percentiles for the summary.
//!
//! Owns: the counts. Must not touch: what a "request" is — the user tasks decide what they
//! time (see [`super::http`]). The bucket layout is the proxy's own
//! ([`crate::metrics::histogram`]: 0.1 ms to ~60 s, within 1 %).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::metrics::histogram;

/// Counts per latency bucket.
#[derive(Debug)]
pub struct Latencies {
    counts: Box<[AtomicU64]>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            counts: (0..histogram::BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Latencies {
    pub fn record(&self, d: Duration) {
        self.counts[histogram::index(d.as_secs_f64() * 1000.0)].fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 with nothing recorded.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        histogram::quantile(&counts, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_what_was_recorded() {
        let l = Latencies::default();
        assert_eq!((l.count(), l.quantile_ms(0.5)), (0, 0.0));
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms * 10));
        }
        assert_eq!(l.count(), 100);
        let p50 = l.quantile_ms(0.5);
        let p99 = l.quantile_ms(0.99);
        assert!((p50 - 500.0).abs() < 6.0, "{p50}");
        assert!((p99 - 990.0).abs() < 11.0, "{p99}");
    }
}
