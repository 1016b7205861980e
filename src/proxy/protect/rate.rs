//! A lock-free token bucket for new sessions, as GCRA (the generic cell rate algorithm of
//! ATM networks, RFC-less but described in ITU-T I.371): one atomic "theoretical arrival time".
//!
//! Owns: the rate arithmetic. Must not touch: requests — the handler asks [`SessionRate`] for
//! a token when a client opens a new connection or tunnel.
//!
//! A take succeeds when, after it, the arrival time is at most `burst` intervals ahead of now;
//! so from idle `burst` takes pass at once, and over any span `t` at most `burst + rate × t`
//! pass. One CAS loop, no lock, no background refill task.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

#[derive(Debug)]
pub(crate) struct SessionRate {
    origin: Instant,
    interval_ns: u64,
    tolerance_ns: u64,
    /// Theoretical arrival time of the next take, ns since `origin`.
    tat: AtomicU64,
}

impl SessionRate {
    /// `per_sec` > 0 tokens a second, up to `burst` (≥ 1) at once.
    pub(crate) fn new(per_sec: f64, burst: u32, origin: Instant) -> Self {
        let interval_ns = (1e9 / per_sec.max(1e-9)).min(u64::MAX as f64 / 4.0) as u64;
        let interval_ns = interval_ns.max(1);
        SessionRate {
            origin,
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst.max(1))),
            tat: AtomicU64::new(0),
        }
    }

    /// Take one token if there is one at `now`.
    pub(crate) fn try_take(&self, now: Instant) -> bool {
        let now_ns = now.saturating_duration_since(self.origin).as_nanos() as u64;
        let mut tat = self.tat.load(Relaxed);
        loop {
            let next = tat.max(now_ns).saturating_add(self.interval_ns);
            if next - now_ns > self.tolerance_ns {
                return false;
            }
            match self.tat.compare_exchange_weak(tat, next, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let r = SessionRate::new(10.0, 5, t0);
        assert_eq!((0..100).filter(|_| r.try_take(t0)).count(), 5);
        // 10/s: one more every 100 ms.
        assert!(!r.try_take(t0 + Duration::from_millis(50)));
        assert!(r.try_take(t0 + Duration::from_millis(100)));
        assert!(!r.try_take(t0 + Duration::from_millis(150)));
        // Over 2 s of constant demand: at most 5 + 10 × 2 in total.
        let mut granted = 6;
        for ms in (151..=2000).step_by(7) {
            granted += usize::from(r.try_take(t0 + Duration::from_millis(ms)));
        }
        assert!(granted <= 25, "{granted}");
        assert!(granted >= 24, "{granted}");
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let t0 = Instant::now();
        let r = SessionRate::new(100.0, 3, t0);
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..50).filter(|_| r.try_take(later)).count(), 3);
    }

    #[test]
    fn concurrent_takes_never_exceed_the_burst() {
        let t0 = Instant::now();
        let r = std::sync::Arc::new(SessionRate::new(1.0, 100, t0));
        let granted: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let r = r.clone();
                    s.spawn(move || (0..1000).filter(|_| r.try_take(t0)).count())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(granted, 100);
    }
}
