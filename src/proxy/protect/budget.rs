//! The retry budget: caps the proxy's own retries so an outage is never multiplied.
//!
//! Finagle's rule: retries over a window may not exceed `ratio` × requests in that window plus
//! a reserve of `min_per_sec` per second of the window (so a quiet service can still retry a
//! little). Counts live in one-second ring slots of atomics: no lock on the request path.
//!
//! The cap is exact, also under contention and when everything fails: a caller first reserves
//! its retry (an atomic increment), then sums the window including every reservation made so
//! far, and gives the reservation back if the sum is over. With sequentially consistent
//! increments and loads, of two racing callers the later one always sees both reservations, so
//! the granted retries can never pass the allowance. Each count is stamped with its second in
//! the same atomic word (as in the metrics ring), so a slot reused a lap later can neither lose
//! nor resurrect counts.
//!
//! Requests, counted on every request, are kept per data-plane worker ([`Sharded`]) and added
//! up when a retry asks; retries stay one count per second, which the exact cap above needs.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Instant;

use crate::config::RetryBudgetConfig;
use crate::shard::Sharded;

/// A count stamped with its second: `(second + 1) << 32 | count`.
#[derive(Debug, Default)]
struct Cell(AtomicU64);

impl Cell {
    fn add(&self, stamp: u64) {
        let mut cur = self.0.load(SeqCst);
        loop {
            let next = match (cur >> 32).cmp(&stamp) {
                std::cmp::Ordering::Equal => cur.saturating_add(1).min((stamp << 32) | 0xffff_ffff),
                std::cmp::Ordering::Less => (stamp << 32) | 1,
                std::cmp::Ordering::Greater => return,
            };
            match self.0.compare_exchange_weak(cur, next, SeqCst, SeqCst) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    fn sub(&self, stamp: u64) {
        let mut cur = self.0.load(SeqCst);
        while cur >> 32 == stamp && cur & 0xffff_ffff > 0 {
            match self.0.compare_exchange_weak(cur, cur - 1, SeqCst, SeqCst) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    /// The count, if it belongs to a second stamped within `oldest..=newest`.
    fn get(&self, oldest: u64, newest: u64) -> u64 {
        let v = self.0.load(SeqCst);
        if (oldest..=newest).contains(&(v >> 32)) {
            v & 0xffff_ffff
        } else {
            0
        }
    }
}

#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    reserve: f64,
    origin: Instant,
    /// Requests per second of the window, per worker.
    requests: Sharded<Box<[Cell]>>,
    /// Retries per second of the window.
    retries: Box<[Cell]>,
}

impl RetryBudget {
    pub(crate) fn new(cfg: RetryBudgetConfig, origin: Instant) -> Self {
        let secs = cfg.window.as_secs().max(1);
        RetryBudget {
            ratio: cfg.ratio,
            reserve: f64::from(cfg.min_per_sec) * secs as f64,
            origin,
            requests: Sharded::new(|| (0..secs).map(|_| Cell::default()).collect()),
            retries: (0..secs).map(|_| Cell::default()).collect(),
        }
    }

    /// The slot index and stamp of `now`.
    fn at(&self, now: Instant) -> (usize, u64) {
        let sec = now.saturating_duration_since(self.origin).as_secs();
        let i = (sec % self.retries.len() as u64) as usize;
        (i, (sec + 1) & 0xffff_ffff)
    }

    /// Count one client request (every request deposits into the budget).
    pub(crate) fn record_request(&self, now: Instant) {
        let (i, stamp) = self.at(now);
        self.requests.local()[i].add(stamp);
    }

    /// Take one retry token if the budget allows it.
    pub(crate) fn try_retry(&self, now: Instant) -> bool {
        let (i, stamp) = self.at(now);
        let current = &self.retries[i];
        current.add(stamp);
        let oldest = stamp.saturating_sub(self.retries.len() as u64 - 1);
        let retries: u64 = self.retries.iter().map(|c| c.get(oldest, stamp)).sum();
        let requests: u64 = self
            .requests
            .iter()
            .flat_map(|slots| slots.iter())
            .map(|c| c.get(oldest, stamp))
            .sum();
        let allowed = self.ratio * requests as f64 + self.reserve;
        if retries as f64 <= allowed {
            true
        } else {
            current.sub(stamp);
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
    fn requests_counted_on_every_worker_raise_the_allowance() {
        let (b, t0) = budget();
        std::thread::scope(|s| {
            for w in 0..2 {
                let b = &b;
                s.spawn(move || {
                    crate::shard::set_worker(w);
                    for _ in 0..50 {
                        b.record_request(t0);
                    }
                });
            }
        });
        // 100 requests over two workers: 0.2 × 100 + 10.
        let granted = (0..100).filter(|_| b.try_retry(t0)).count();
        assert_eq!(granted, 30);
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

    #[test]
    fn racing_threads_never_get_more_than_the_allowance() {
        for _ in 0..20 {
            let (b, t0) = budget();
            for _ in 0..1000 {
                b.record_request(t0);
            }
            // Allowance: 0.2 × 1000 + 10 = 210.
            let granted: usize = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|_| s.spawn(|| (0..500).filter(|_| b.try_retry(t0)).count()))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
            });
            // Never more; a reservation seen mid-rollback may refuse one or two near the edge.
            assert!((200..=210).contains(&granted), "{granted}");
        }
    }
}
