//! Admission control of one env: at most `limit` requests in flight to it, a short bounded
//! wait for a free slot, and past that a refusal (the handler answers 503 and never sends the
//! request to the env). Plus the env's new-session rate ([`super::rate`]).
//!
//! Owns: the permits, the adaptive limit's windows. Must not touch: responses or metrics of
//! requests (the handler answers and records); it only publishes the limit it is using.
//!
//! Built on `tokio::sync::Semaphore`: `try_acquire` on the fast path, a FIFO wait of at most
//! `queue_timeout` otherwise, so nothing is held across an await but the semaphore's own
//! queue entry. A permit is returned when the response body ends (it lives in the body), so
//! a streamed answer still counts as in flight. The adaptive limit ([`super::gradient`])
//! moves the number of permits: raising it adds permits; lowering it forgets free permits at
//! once and takes the rest back as busy ones are returned (a "debt"), so in-flight work is
//! never cut off. Its latency windows are summed in one packed atomic; the request that closes
//! a window computes the next limit under a `try_lock` (never waits).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, TryAcquireError};

use super::gradient::Gradient2;
use super::rate::SessionRate;
use crate::config::EnvProtection;
use crate::metrics::Metrics;
use crate::router::Env;

/// Ceiling of an adaptive limit configured without `max_inflight`.
pub(crate) const ADAPTIVE_CEILING: u32 = 1000;
/// A latency window closes after this long, once it has [`MIN_SAMPLES`].
const WINDOW: Duration = Duration::from_millis(250);
const MIN_SAMPLES: u64 = 10;
/// Packed window accumulator: sample count above this bit, summed microseconds below.
const COUNT_SHIFT: u32 = 40;
const SUM_MASK: u64 = (1 << COUNT_SHIFT) - 1;

/// The protection of one env on the request path.
#[derive(Debug)]
pub struct EnvGuard {
    limiter: Option<Arc<Limiter>>,
    sessions: Option<SessionRate>,
    queue_timeout: Duration,
}

/// The env would not take the request within its queue timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shed;

impl EnvGuard {
    pub(crate) fn new(
        env: Env,
        cfg: &EnvProtection,
        metrics: &Arc<Metrics>,
        origin: Instant,
    ) -> Self {
        let max = match (cfg.max_inflight, cfg.adaptive_limit) {
            (Some(m), _) => Some(m),
            (None, true) => Some(ADAPTIVE_CEILING),
            (None, false) => None,
        };
        let limiter = max.map(|max| {
            let adaptive = cfg.adaptive_limit.then(|| Adaptive {
                gradient: Mutex::new(Gradient2::new((max / 10).clamp(1, 20), max)),
                window_start_ns: AtomicU64::new(0),
                acc: AtomicU64::new(0),
                peak_inflight: AtomicUsize::new(0),
                origin,
            });
            metrics.set_admission_limit(env, Some(max));
            Arc::new(Limiter {
                env,
                sem: Semaphore::new(max as usize),
                limit: AtomicUsize::new(max as usize),
                debt: AtomicUsize::new(0),
                inflight: AtomicUsize::new(0),
                adaptive,
                metrics: metrics.clone(),
            })
        });
        EnvGuard {
            limiter,
            sessions: cfg
                .new_sessions
                .map(|r| SessionRate::new(r.per_sec, r.burst, origin)),
            queue_timeout: cfg.queue_timeout,
        }
    }

    /// A token for a new session (connection or tunnel); always granted without a rate.
    pub(crate) fn take_session(&self, now: Instant) -> bool {
        self.sessions.as_ref().is_none_or(|s| s.try_take(now))
    }

    /// A slot for one request, waiting at most the queue timeout. Without a limit: at once,
    /// and without touching any shared counter.
    pub(crate) async fn admit(&self) -> Result<Permit, Shed> {
        let Some(l) = &self.limiter else {
            return Ok(Permit(None));
        };
        let permit = match l.sem.try_acquire() {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) if !self.queue_timeout.is_zero() => {
                match tokio::time::timeout(self.queue_timeout, l.sem.acquire()).await {
                    Ok(Ok(p)) => p,
                    _ => return Err(Shed),
                }
            }
            Err(_) => return Err(Shed),
        };
        // The permit is given back by `Permit::drop` (or kept to pay a lowered limit's debt).
        permit.forget();
        l.inflight.fetch_add(1, Relaxed);
        Ok(Permit(Some(l.clone())))
    }

    /// Whether [`EnvGuard::sample`] uses what it is given (the env has an admission limit).
    pub(crate) fn is_adaptive(&self) -> bool {
        self.limiter.is_some()
    }

    /// One answered request's latency, for the adaptive limit (no-op without one).
    pub(crate) fn sample(&self, latency: Duration, now: Instant) {
        if let Some(l) = &self.limiter {
            l.sample(latency, now);
        }
    }

    /// The limit in force (`None`: unlimited) and the requests in flight under it.
    pub fn limit(&self) -> Option<(usize, usize)> {
        self.limiter
            .as_ref()
            .map(|l| (l.limit.load(Relaxed), l.inflight.load(Relaxed)))
    }
}

/// A slot of an env's admission limit, returned on drop.
#[derive(Debug)]
pub(crate) struct Permit(Option<Arc<Limiter>>);

impl Permit {
    /// No slot of any limit: for a copy of shadow traffic, which NEW's admission never
    /// counts (its own per-worker bound holds it instead).
    pub(crate) fn unlimited() -> Permit {
        Permit(None)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(l) = self.0.take() {
            l.inflight.fetch_sub(1, Relaxed);
            l.release();
        }
    }
}

#[derive(Debug)]
struct Limiter {
    env: Env,
    sem: Semaphore,
    limit: AtomicUsize,
    /// Permits still to be withheld after the limit was lowered below what was in use.
    debt: AtomicUsize,
    inflight: AtomicUsize,
    adaptive: Option<Adaptive>,
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct Adaptive {
    gradient: Mutex<Gradient2>,
    window_start_ns: AtomicU64,
    /// `count << COUNT_SHIFT | sum of microseconds` of the open window.
    acc: AtomicU64,
    peak_inflight: AtomicUsize,
    origin: Instant,
}

impl Limiter {
    fn release(&self) {
        let mut d = self.debt.load(Relaxed);
        while d > 0 {
            match self.debt.compare_exchange_weak(d, d - 1, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(seen) => d = seen,
            }
        }
        self.sem.add_permits(1);
    }

    /// Move the limit; callers are serialized (the gradient lock).
    fn set_limit(&self, next: usize) {
        let cur = self.limit.swap(next, Relaxed);
        if next < cur {
            let cut = cur - next;
            let forgotten = self.sem.forget_permits(cut);
            self.debt.fetch_add(cut - forgotten, Relaxed);
        } else if next > cur {
            let mut add = next - cur;
            let mut d = self.debt.load(Relaxed);
            while d > 0 && add > 0 {
                let pay = d.min(add);
                match self
                    .debt
                    .compare_exchange_weak(d, d - pay, Relaxed, Relaxed)
                {
                    Ok(_) => {
                        add -= pay;
                        break;
                    }
                    Err(seen) => d = seen,
                }
            }
            if add > 0 {
                self.sem.add_permits(add);
            }
        }
        self.metrics
            .set_admission_limit(self.env, Some(next.min(u32::MAX as usize) as u32));
    }

    fn sample(&self, latency: Duration, now: Instant) {
        let Some(a) = &self.adaptive else { return };
        let us = (latency.as_micros() as u64).clamp(1, u64::from(u32::MAX));
        a.acc.fetch_add((1 << COUNT_SHIFT) | us, Relaxed);
        a.peak_inflight
            .fetch_max(self.inflight.load(Relaxed), Relaxed);
        let now_ns = now.saturating_duration_since(a.origin).as_nanos() as u64;
        let start = a.window_start_ns.load(Relaxed);
        if now_ns.saturating_sub(start) < WINDOW.as_nanos() as u64 {
            return;
        }
        // Whoever gets the lock closes the window; everyone else just counted.
        let Ok(mut g) = a.gradient.try_lock() else {
            return;
        };
        let acc = a.acc.swap(0, Relaxed);
        let count = acc >> COUNT_SHIFT;
        if count < MIN_SAMPLES {
            a.acc.fetch_add(acc, Relaxed);
            return;
        }
        a.window_start_ns.store(now_ns, Relaxed);
        let avg_s = (acc & SUM_MASK) as f64 / count as f64 / 1e6;
        let peak = a.peak_inflight.swap(0, Relaxed);
        let next = g.update(avg_s, peak.min(u32::MAX as usize) as u32);
        if next as usize != self.limit.load(Relaxed) {
            tracing::debug!(env = %self.env, limit = next, avg_ms = avg_s * 1e3, "adaptive limit");
            self.set_limit(next as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvProtection;

    fn guard(max: u32, adaptive: bool, queue_ms: u64) -> (EnvGuard, Arc<Metrics>) {
        let m = Arc::new(Metrics::new());
        let cfg = EnvProtection {
            max_inflight: Some(max),
            adaptive_limit: adaptive,
            queue_timeout: Duration::from_millis(queue_ms),
            new_sessions: None,
        };
        (EnvGuard::new(Env::Old, &cfg, &m, Instant::now()), m)
    }

    #[tokio::test]
    async fn the_limit_holds_and_a_freed_slot_goes_to_a_waiter() {
        let (g, _) = guard(2, false, 200);
        let a = g.admit().await.expect("first");
        let _b = g.admit().await.expect("second");
        assert_eq!(g.limit(), Some((2, 2)));
        let g = Arc::new(g);
        let waiter = tokio::spawn({
            let g = g.clone();
            async move { g.admit().await.is_ok() }
        });
        drop(a);
        assert!(waiter.await.expect("join"), "the waiter got the freed slot");
    }

    /// On paused time: the queue timeout is waited out exactly, whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn a_full_env_sheds_after_the_queue_timeout() {
        let (g, _) = guard(1, false, 30);
        let _a = g.admit().await.expect("first");
        let t = tokio::time::Instant::now();
        assert_eq!(g.admit().await.err(), Some(Shed));
        assert_eq!(t.elapsed(), Duration::from_millis(30));
        let (g0, _) = guard(1, false, 0);
        let _b = g0.admit().await.expect("first");
        let t = tokio::time::Instant::now();
        assert!(g0.admit().await.is_err());
        assert_eq!(t.elapsed(), Duration::ZERO, "no wait with 0s");
    }

    #[tokio::test]
    async fn lowering_the_limit_never_cuts_in_flight_work_and_is_paid_back() {
        let (g, _) = guard(4, false, 0);
        let l = g.limiter.clone().expect("limiter");
        let held: Vec<_> = [(); 3].iter().map(|_| g.admit()).collect();
        let mut held2 = Vec::new();
        for f in held {
            held2.push(f.await.expect("admit"));
        }
        l.set_limit(1); // 1 free permit forgotten, 2 owed
        assert!(
            g.admit().await.is_err(),
            "no slot while above the new limit"
        );
        held2.pop();
        held2.pop();
        assert!(
            g.admit().await.is_err(),
            "the two returned slots paid the debt"
        );
        held2.pop();
        let one = g.admit().await.expect("back to one slot");
        assert!(g.admit().await.is_err());
        drop(one);
        l.set_limit(3);
        let three: Vec<_> = vec![g.admit().await, g.admit().await, g.admit().await];
        assert!(three.iter().all(Result::is_ok));
        assert!(g.admit().await.is_err());
    }

    #[tokio::test]
    async fn slow_answers_lower_an_adaptive_limit() {
        let (g, m) = guard(100, true, 0);
        let t0 = Instant::now();
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(g.admit().await.expect("admit"));
        }
        // 4 s of 10 ms answers, then 4 s of 200 ms answers, at full load.
        for i in 0..800u64 {
            let lat = if i < 400 { 10 } else { 200 };
            g.sample(
                Duration::from_millis(lat),
                t0 + Duration::from_millis(i * 10),
            );
        }
        let (limit, _) = g.limit().expect("limit");
        assert!(limit < 60, "{limit}");
        assert_eq!(m.admission_limit(Env::Old), Some(limit as u64));
    }
}
