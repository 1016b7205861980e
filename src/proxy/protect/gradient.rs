//! The adaptive concurrency limit: Netflix's Gradient2 (concurrency-limits,
//! `com.netflix.concurrency.limits.limit.Gradient2Limit`), as a pure function of samples.
//!
//! Owns: the arithmetic only. Must not touch: clocks, atomics or the semaphore — the admission
//! layer ([`super::admission`]) aggregates request latencies into windows and feeds one sample
//! per window here.
//!
//! The idea: compare the short-term latency (this window's average) with a long-term
//! exponential average. When they agree the env is not queueing, and the limit grows by a
//! small "queue size"; when the short latency rises above the long one the limit shrinks in
//! proportion (`gradient = tolerance × long / short`, kept within 0.5..=1), smoothed so one
//! slow window cannot halve it. The limit does not grow while the env is app-limited (fewer
//! than half the permits in use), and the long average is pulled down when latency recovers
//! after a long overload so the limit climbs back promptly.

/// Netflix's defaults, except the bounds, which come from the config.
const SMOOTHING: f64 = 0.2;
const TOLERANCE: f64 = 1.5;
const QUEUE_SIZE: f64 = 4.0;
const LONG_WINDOW: f64 = 600.0;
const WARMUP: u32 = 10;

/// Gradient2 state of one env.
#[derive(Debug, Clone)]
pub(crate) struct Gradient2 {
    limit: f64,
    min_limit: f64,
    max_limit: f64,
    long_rtt: f64,
    samples: u32,
}

impl Gradient2 {
    /// Starts at `max_limit` (the configured ceiling) and never leaves `min_limit..=max_limit`.
    pub(crate) fn new(min_limit: u32, max_limit: u32) -> Self {
        let max_limit = f64::from(max_limit.max(1));
        Gradient2 {
            limit: max_limit,
            min_limit: f64::from(min_limit.max(1)).min(max_limit),
            max_limit,
            long_rtt: 0.0,
            samples: 0,
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit as u32
    }

    /// One window: its average latency `rtt_s` (seconds, > 0) and the most requests that were
    /// in flight in it. Returns the new limit.
    pub(crate) fn update(&mut self, rtt_s: f64, inflight: u32) -> u32 {
        if !(rtt_s.is_finite() && rtt_s > 0.0) {
            return self.limit();
        }
        let short = rtt_s;
        // Exponential average, plain average while warming up (ExpAvgMeasurement).
        self.samples = self.samples.saturating_add(1);
        self.long_rtt = if self.samples <= WARMUP {
            self.long_rtt + (short - self.long_rtt) / f64::from(self.samples)
        } else {
            let factor = 2.0 / (LONG_WINDOW + 1.0);
            self.long_rtt * (1.0 - factor) + short * factor
        };
        let long = self.long_rtt;
        if long / short > 2.0 {
            self.long_rtt *= 0.95;
        }
        if f64::from(inflight) < self.limit / 2.0 {
            return self.limit();
        }
        let gradient = (TOLERANCE * long / short).clamp(0.5, 1.0);
        let next = self.limit * gradient + QUEUE_SIZE;
        let next = self.limit * (1.0 - SMOOTHING) + next * SMOOTHING;
        self.limit = next.clamp(self.min_limit, self.max_limit);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rising_latency_lowers_the_limit_and_recovery_raises_it() {
        let mut g = Gradient2::new(10, 200);
        for _ in 0..50 {
            g.update(0.010, 200);
        }
        assert_eq!(g.limit(), 200, "steady latency at the ceiling stays there");
        let mut last = g.limit();
        for _ in 0..20 {
            let l = g.update(0.100, 200);
            assert!(l <= last, "{l} > {last}");
            last = l;
        }
        assert!(
            last < 60,
            "a 10x slower env is given far fewer permits: {last}"
        );
        assert!(last >= 10, "never below the floor");
        for _ in 0..200 {
            last = g.update(0.010, last);
        }
        assert!(
            last > 150,
            "latency back to normal: the limit grows back ({last})"
        );
    }

    #[test]
    fn an_app_limited_env_does_not_move_the_limit() {
        let mut g = Gradient2::new(10, 100);
        for _ in 0..5 {
            g.update(0.010, 100);
        }
        let before = g.limit();
        assert_eq!(g.update(1.0, 3), before, "3 in flight of 100: app-limited");
    }

    #[test]
    fn one_slow_window_cannot_halve_the_limit() {
        let mut g = Gradient2::new(1, 100);
        for _ in 0..20 {
            g.update(0.010, 100);
        }
        let after = g.update(10.0, 100);
        assert!(after >= 90, "{after}");
        assert_eq!(
            g.update(f64::NAN, 100),
            after,
            "garbage samples are ignored"
        );
    }
}
