//! The retry budget: caps the proxy's own retries so an outage is never multiplied.
//!
//! Finagle's rule: retries over a window may not exceed `ratio` × requests in that window plus
//! a reserve of `min_per_sec` per second of the window (so a quiet service can still retry a
//! little). Counts live in one-second ring slots of atomics: no lock on the request path.
//! Under contention a handful of concurrent callers may each see the last free token; the
//! overshoot is bounded by the number of threads, which we accept instead of a lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use crate::config::RetryBudgetConfig;

#[derive(Debug)]
struct Slot {
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    reserve: f64,
    origin: Instant,
    slots: Box<[Slot]>,
}

impl RetryBudget {
    pub fn new(cfg: RetryBudgetConfig, origin: Instant) -> Self {
        let secs = cfg.window.as_secs().max(1);
        RetryBudget {
            ratio: cfg.ratio,
            reserve: f64::from(cfg.min_per_sec) * secs as f64,
            origin,
            slots: (0..secs)
                .map(|_| Slot {
                    second: AtomicU64::new(u64::MAX),
                    requests: AtomicU64::new(0),
                    retries: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn slot(&self, now: Instant) -> &Slot {
        let sec = now.saturating_duration_since(self.origin).as_secs();
        let slot = &self.slots[(sec % self.slots.len() as u64) as usize];
        let seen = slot.second.load(Relaxed);
        if seen != sec
            && slot
                .second
                .compare_exchange(seen, sec, Relaxed, Relaxed)
                .is_ok()
        {
            slot.requests.store(0, Relaxed);
            slot.retries.store(0, Relaxed);
        }
        slot
    }

    /// Count one client request (every request deposits into the budget).
    pub fn record_request(&self, now: Instant) {
        self.slot(now).requests.fetch_add(1, Relaxed);
    }

    /// Take one retry token if the budget allows it.
    pub fn try_retry(&self, now: Instant) -> bool {
        let current = self.slot(now);
        let sec = now.saturating_duration_since(self.origin).as_secs();
        let oldest = sec.saturating_sub(self.slots.len() as u64 - 1);
        let (mut requests, mut retries) = (0u64, 0u64);
        for s in self.slots.iter() {
            let at = s.second.load(Relaxed);
            if at != u64::MAX && at >= oldest && at <= sec {
                requests += s.requests.load(Relaxed);
                retries += s.retries.load(Relaxed);
            }
        }
        let allowed = self.ratio * requests as f64 + self.reserve;
        if (retries as f64) < allowed {
            current.retries.fetch_add(1, Relaxed);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget() -> (RetryBudget, Instant) {
        let origin = Instant::now();
        let cfg = RetryBudgetConfig {
            ratio: 0.2,
            window: Duration::from_secs(10),
            min_per_sec: 1,
        };
        (RetryBudget::new(cfg, origin), origin)
    }

    #[test]
    fn reserve_then_ratio() {
        let (b, t0) = budget();
        // No traffic: only the reserve (1/s × 10 s).
        let granted = (0..100).filter(|_| b.try_retry(t0)).count();
        assert_eq!(granted, 10);
        // 100 requests add 20 more.
        for _ in 0..100 {
            b.record_request(t0);
        }
        let granted = (0..100).filter(|_| b.try_retry(t0)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn old_seconds_expire() {
        let (b, t0) = budget();
        let spent = (0..100).filter(|_| b.try_retry(t0)).count();
        assert_eq!(spent, 10);
        assert!(!b.try_retry(t0 + Duration::from_secs(5)));
        // Eleven seconds later the spent retries have left the window.
        let later = t0 + Duration::from_secs(11);
        assert!(b.try_retry(later));
    }
}
