//! The capacity model of a simulated environment: how a real server behaves under load.
//!
//! Owns: the slot pool (an instance serves at most `capacity` requests at once — think of its
//! database pool; a request waits for a free slot up to the pool timeout, then fails), the
//! service-time curve (latency rises with the share of slots in use, so a busy server is a slow
//! server before it is a failing one; and past capacity every waiting request slows the served
//! ones further — context switches, memory, locks — so a server far past its capacity serves
//! fewer requests per second, not more: the collapse a thundering herd causes), and [`Gauge`], an in-flight counter that remembers its
//! peak (shared by all instances of one env, so the demo can report an env's peak in-flight).
//!
//! Must not touch: sockets or the proxy. [`service_time`] is a pure function; the pool only
//! waits on a [`Notify`] and a clock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The shape of the service-time curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Curve {
    pub capacity: usize,
    /// Extra time with every slot busy, in percent of the base.
    pub slowdown_pct: u32,
    /// Extra time per `capacity` requests waiting beyond the slots, in percent of the base.
    pub collapse_pct: u32,
}

/// How long one request takes when `inflight` requests are in the instance (itself included):
/// `base × (1 + slowdown × min(inflight, capacity)/capacity + collapse × excess/capacity)`,
/// the excess (capped at ten capacities) being the requests waiting for a slot. With no
/// capacity model (`capacity == 0`) the base latency is the service time.
pub fn service_time(base: Duration, inflight: usize, curve: Curve) -> Duration {
    let Curve {
        capacity,
        slowdown_pct,
        collapse_pct,
    } = curve;
    if capacity == 0 {
        return base;
    }
    let cap = capacity as f64;
    let busy = inflight.min(capacity) as f64 / cap;
    let excess = (inflight.saturating_sub(capacity) as f64 / cap).min(10.0);
    let factor =
        1.0 + f64::from(slowdown_pct) / 100.0 * busy + f64::from(collapse_pct) / 100.0 * excess;
    base.mul_f64(factor)
}

/// A counter of things in flight that remembers the most it ever held.
#[derive(Debug, Default)]
pub struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    /// Count one in; it is counted out when the guard drops.
    pub fn enter(&self) -> GaugeGuard<'_> {
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(n, SeqCst);
        GaugeGuard(self)
    }

    pub fn now(&self) -> usize {
        self.now.load(SeqCst)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }
}

pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, SeqCst);
    }
}

/// A taken slot of the pool; freed (and a waiter woken) on drop.
pub struct Slot<'a> {
    busy: &'a AtomicUsize,
    freed: &'a Notify,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.busy.fetch_sub(1, SeqCst);
        self.freed.notify_one();
    }
}

/// Take one of `capacity` slots counted by `busy`, waiting up to `timeout` for one to free up
/// (`waited` counts the requests that had to). `None` when none freed up in time. With
/// `capacity == 0` (no model) a slot is always given.
pub async fn acquire<'a>(
    busy: &'a AtomicUsize,
    freed: &'a Notify,
    capacity: usize,
    timeout: Duration,
    waited: &AtomicU64,
) -> Option<Slot<'a>> {
    if capacity == 0 {
        busy.fetch_add(1, SeqCst);
        return Some(Slot { busy, freed });
    }
    let deadline = Instant::now() + timeout;
    let mut counted = false;
    loop {
        let notified = freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let current = busy.load(SeqCst);
        if current < capacity {
            if busy
                .compare_exchange(current, current + 1, SeqCst, SeqCst)
                .is_ok()
            {
                return Some(Slot { busy, freed });
            }
            continue;
        }
        if !counted {
            counted = true;
            waited.fetch_add(1, SeqCst);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            // Pass on a wake-up this waiter may have consumed as it timed out.
            freed.notify_one();
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_rises_with_the_share_of_busy_slots() {
        let base = Duration::from_millis(20);
        let curve = |capacity, collapse_pct| Curve {
            capacity,
            slowdown_pct: 200,
            collapse_pct,
        };
        assert_eq!(service_time(base, 5, curve(0, 100)), base);
        assert_eq!(service_time(base, 0, curve(10, 100)), base);
        assert_eq!(
            service_time(base, 5, curve(10, 100)),
            Duration::from_millis(40)
        );
        assert_eq!(
            service_time(base, 10, curve(10, 100)),
            Duration::from_millis(60)
        );
        // Without collapse the waiting excess only waits.
        assert_eq!(
            service_time(base, 30, curve(10, 0)),
            Duration::from_millis(60)
        );
        // With it, two capacities waiting add two bases each...
        assert_eq!(
            service_time(base, 30, curve(10, 100)),
            Duration::from_millis(100)
        );
        // ...and it stops growing at ten capacities.
        assert_eq!(
            service_time(base, 10_000, curve(10, 100)),
            service_time(base, 110, curve(10, 100))
        );
    }

    #[test]
    fn far_past_capacity_an_instance_serves_fewer_requests_per_second() {
        let base = Duration::from_millis(20);
        let curve = Curve {
            capacity: 40,
            slowdown_pct: 200,
            collapse_pct: 100,
        };
        let throughput = |inflight: usize| 40.0 / service_time(base, inflight, curve).as_secs_f64();
        assert!(throughput(40) > throughput(400) * 2.0);
    }

    #[test]
    fn a_gauge_keeps_its_peak() {
        let g = Gauge::default();
        let a = g.enter();
        let b = g.enter();
        assert_eq!((g.now(), g.peak()), (2, 2));
        drop(a);
        drop(b);
        let _c = g.enter();
        assert_eq!((g.now(), g.peak()), (1, 2));
    }

    #[tokio::test]
    async fn a_full_pool_times_out_and_a_freed_slot_is_handed_on() {
        let busy = AtomicUsize::new(0);
        let freed = Notify::new();
        let waited = AtomicU64::new(0);
        let first = acquire(&busy, &freed, 1, Duration::from_millis(100), &waited)
            .await
            .expect("a free slot");
        assert_eq!(waited.load(SeqCst), 0);
        assert!(
            acquire(&busy, &freed, 1, Duration::from_millis(100), &waited)
                .await
                .is_none()
        );
        let waiter = acquire(&busy, &freed, 1, Duration::from_secs(5), &waited);
        let release = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(first);
        };
        let (slot, ()) = tokio::join!(waiter, release);
        assert!(slot.is_some());
        assert_eq!(busy.load(SeqCst), 1);
        assert_eq!(waited.load(SeqCst), 2);
    }
}
