//! The driver's foresight side: recording each analysis tick, and the headroom it acts on.
//!
//! Owns: [`Foresight`] — the declared capacities, the ticks' retention, and the best-effort
//! recording of what the analyzer judged into the store's `ticks` tree. Must not touch: the
//! run's state or decisions — the estimate and the hold are the pure
//! [`crate::foresight::headroom`]'s; this only feeds it numbers and writes records.
//!
//! Recording never blocks the driver for long and never stops a run: each tick is written on
//! a blocking thread; while the previous write is still under way a tick is skipped; a failure
//! is logged (at most once a minute) and counted ([`Foresight::failures`]). Once a minute the
//! ticks older than the retention are pruned on the same thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::api;
use crate::foresight::headroom::{estimate, Capacity};
use crate::foresight::TickRecord;
use crate::metrics::WindowSnapshot;
use crate::router::Weight;
use crate::store::Store;

/// How often old ticks are pruned, and failures logged at most.
const EVERY_MS: u64 = 60_000;

/// Capacities, retention and the recorder's counters; shared by the driver and its writers.
#[derive(Debug)]
pub struct Foresight {
    /// Swapped by a config reload (`reload::Reloader::with_foresight`).
    capacity: arc_swap::ArcSwap<Capacity>,
    retention: Duration,
    busy: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
    skipped: AtomicU64,
    last_prune_ms: Arc<AtomicU64>,
    last_logged_ms: Arc<AtomicU64>,
}

impl Default for Foresight {
    fn default() -> Self {
        Foresight::new(Capacity::default(), crate::config::DEFAULT_TICKS_RETENTION)
    }
}

impl Foresight {
    pub fn new(capacity: Capacity, retention: Duration) -> Foresight {
        Foresight {
            capacity: arc_swap::ArcSwap::from_pointee(capacity),
            retention,
            busy: Arc::default(),
            failures: Arc::default(),
            skipped: AtomicU64::new(0),
            last_prune_ms: Arc::default(),
            last_logged_ms: Arc::default(),
        }
    }

    /// From the config: OLD's and FALLBACK's `capacity_rps`, `[store] ticks_retention`.
    pub fn from_config(cfg: &crate::config::Config) -> Foresight {
        Foresight::new(Self::capacity_of(cfg), cfg.ticks_retention)
    }

    /// OLD's and FALLBACK's declared `capacity_rps`.
    pub fn capacity_of(cfg: &crate::config::Config) -> Capacity {
        Capacity {
            old: cfg.old.capacity_rps,
            fallback: cfg.fallback.capacity_rps,
        }
    }

    /// The capacities in force.
    pub fn capacity(&self) -> Capacity {
        **self.capacity.load()
    }

    /// New capacities (a config reload); the next tick judges with them.
    pub fn set_capacity(&self, capacity: Capacity) {
        self.capacity.store(Arc::new(capacity));
    }

    /// Ticks that could not be recorded (store errors).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Ticks skipped because the previous write was still under way.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Prometheus text of the recorder's counters.
    pub fn prometheus(&self) -> String {
        format!(
            "# HELP cutover_ticks_record_failures_total Analysis ticks that could not be recorded \
             (store errors; the run goes on).\n\
             # TYPE cutover_ticks_record_failures_total counter\n\
             cutover_ticks_record_failures_total {}\n\
             # HELP cutover_ticks_record_skipped_total Analysis ticks skipped because the \
             previous write was still under way.\n\
             # TYPE cutover_ticks_record_skipped_total counter\n\
             cutover_ticks_record_skipped_total {}\n",
            self.failures(),
            self.skipped()
        )
    }

    /// The status' headroom over `snap`, when OLD declares a capacity.
    pub fn status_view(&self, snap: &WindowSnapshot) -> Option<api::Headroom> {
        estimate(snap, &self.capacity()).map(|h| api::Headroom {
            need_rps: h.need_rps,
            old_capacity_rps: h.old_capacity_rps,
            fallback_spare_rps: h.fallback_spare_rps,
            headroom_rps: h.headroom_rps,
            text: h.text(),
        })
    }

    /// Record what the analyzer judged at `now_ms` (best effort, off the driver's thread).
    /// Must be called from within a tokio runtime.
    pub fn record(
        &self,
        store: &Arc<Store>,
        now_ms: u64,
        weight: Weight,
        dt: Duration,
        snap: &WindowSnapshot,
    ) {
        if self.busy.swap(true, Ordering::AcqRel) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let tick = TickRecord::from_snapshot(now_ms, weight, dt, snap);
        let store = store.clone();
        let busy = self.busy.clone();
        let failures = self.failures.clone();
        let last_prune = self.last_prune_ms.clone();
        let last_logged = self.last_logged_ms.clone();
        let retention_ms = u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX);
        tokio::task::spawn_blocking(move || {
            let mut result = store.put_tick(&tick);
            if result.is_ok()
                && now_ms.saturating_sub(last_prune.load(Ordering::Relaxed)) >= EVERY_MS
            {
                last_prune.store(now_ms, Ordering::Relaxed);
                result = store
                    .prune_ticks(now_ms.saturating_sub(retention_ms))
                    .map(|_| ());
            }
            if let Err(e) = result {
                let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
                if now_ms.saturating_sub(last_logged.load(Ordering::Relaxed)) >= EVERY_MS {
                    last_logged.store(now_ms, Ordering::Relaxed);
                    tracing::warn!(error = %e, failures = n, "could not record an analysis tick; the run goes on");
                }
            }
            busy.store(false, Ordering::Release);
        });
    }
}
