//! Shadow traffic's own counts: copies dropped at the bound, requests of mirrored users not
//! copied, copies compared with OLD's answer and those that differed, with a bounded sample of
//! the latest mismatches.
//!
//! Owns: [`MirrorTotals`] (since-start counts for Prometheus, per worker) and the sample.
//! Must not touch: the copies' requests, errors and latency — those are the `mirror` scope's
//! ring and totals like any other scope's ([`super::Metrics::record`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use super::ring::Counter;
use super::{Metrics, Scope};
use crate::api::MismatchSample;
use crate::shard::Sharded;

/// Mismatches kept for `cutover status`.
pub const SAMPLES: usize = 10;

/// One sampled mismatch.
pub type Mismatch = MismatchSample;

/// What the mirror counts besides its requests, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorCount {
    Dropped,
    Skipped,
    Compared,
    Mismatches,
}

impl MirrorCount {
    pub const ALL: [MirrorCount; 4] = [
        MirrorCount::Dropped,
        MirrorCount::Skipped,
        MirrorCount::Compared,
        MirrorCount::Mismatches,
    ];

    fn counter(self) -> Counter {
        match self {
            MirrorCount::Dropped => Counter::MirrorDropped,
            MirrorCount::Skipped => Counter::MirrorSkipped,
            MirrorCount::Compared => Counter::MirrorCompared,
            MirrorCount::Mismatches => Counter::MirrorMismatches,
        }
    }

    /// The Prometheus family's suffix: `cutover_mirror_<name>_total`.
    pub fn name(self) -> &'static str {
        match self {
            MirrorCount::Dropped => "dropped",
            MirrorCount::Skipped => "skipped",
            MirrorCount::Compared => "compared",
            MirrorCount::Mismatches => "mismatches",
        }
    }
}

/// Since-start counts, one copy per worker, and the latest mismatches.
#[derive(Debug, Default)]
pub struct MirrorTotals {
    counts: Sharded<[AtomicU64; 4]>,
    /// Written only by a copy that differed (off the users' path), read by the status.
    samples: Mutex<VecDeque<Mismatch>>,
    /// Mismatches already reported in the event log ([`Metrics::unreported_mismatches`]).
    reported: AtomicU64,
}

impl MirrorTotals {
    fn total(&self, kind: MirrorCount) -> u64 {
        self.counts
            .iter()
            .map(|c| c[kind as usize].load(Relaxed))
            .sum()
    }
}

impl Metrics {
    /// One more of `kind` for shadow traffic.
    pub fn record_mirror(&self, kind: MirrorCount, now: Instant) {
        self.rings[Scope::Mirror.index()].add(self.second(now), kind.counter(), 1);
        self.mirror.counts.local()[kind as usize].fetch_add(1, Relaxed);
    }

    /// A compared copy; `mismatch` when its answer differed from OLD's.
    pub fn record_comparison(&self, mismatch: Option<Mismatch>, now: Instant) {
        self.record_mirror(MirrorCount::Compared, now);
        let Some(m) = mismatch else { return };
        self.record_mirror(MirrorCount::Mismatches, now);
        if let Ok(mut samples) = self.mirror.samples.lock() {
            if samples.len() == SAMPLES {
                samples.pop_front();
            }
            samples.push_back(m);
        }
    }

    /// Shadow traffic's count of `kind` since start.
    pub fn mirror_total(&self, kind: MirrorCount) -> u64 {
        self.mirror.total(kind)
    }

    /// Mismatches since the last call, with the latest of them, if there were any: what the
    /// driver reports in one event per tick.
    pub fn unreported_mismatches(&self) -> Option<(u64, Mismatch)> {
        let total = self.mirror.total(MirrorCount::Mismatches);
        let before = self.mirror.reported.swap(total, Relaxed);
        let latest = self.mirror.samples.lock().ok()?.back().cloned()?;
        (total > before).then_some((total - before, latest))
    }

    /// The latest mismatches, newest last.
    pub fn mismatch_samples(&self) -> Vec<Mismatch> {
        self.mirror
            .samples
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The `cutover_mirror_*` families: what NEW made of the copies (`env="new"`, the env the
/// copies go to), and the mirror's own counts.
pub(super) fn render(o: &mut String, metrics: &Metrics) {
    use super::prometheus::{header, num};
    use super::totals::{ERROR_KINDS, PROM_BUCKETS};
    use std::fmt::Write;

    let t = &metrics.totals[Scope::Mirror.index()];
    header(
        o,
        "cutover_mirror_requests_total",
        "counter",
        "Copies of users' requests (shadow traffic) that NEW finished.",
    );
    let _ = writeln!(
        o,
        "cutover_mirror_requests_total{{env=\"new\"}} {}",
        t.requests()
    );
    header(
        o,
        "cutover_mirror_errors_total",
        "counter",
        "Copies NEW failed, per kind (5xx, timeout, refused, reset).",
    );
    for (k, kind) in ERROR_KINDS.iter().enumerate().take(4) {
        let v = t.errors(k);
        let _ = writeln!(
            o,
            "cutover_mirror_errors_total{{env=\"new\",kind=\"{kind}\"}} {v}"
        );
    }
    header(
        o,
        "cutover_mirror_request_duration_seconds",
        "histogram",
        "Latency of NEW's answers to the copies.",
    );
    let mut cumulative = 0u64;
    for i in 0..=PROM_BUCKETS.len() {
        cumulative += t.latency_bucket(i);
        let le = PROM_BUCKETS.get(i).map_or("+Inf".to_string(), |v| num(*v));
        let _ = writeln!(
            o,
            "cutover_mirror_request_duration_seconds_bucket{{env=\"new\",le=\"{le}\"}} {cumulative}"
        );
    }
    let sum = num(t.latency_sum_us() as f64 / 1e6);
    let _ = writeln!(
        o,
        "cutover_mirror_request_duration_seconds_sum{{env=\"new\"}} {sum}"
    );
    let _ = writeln!(
        o,
        "cutover_mirror_request_duration_seconds_count{{env=\"new\"}} {cumulative}"
    );
    for kind in MirrorCount::ALL {
        let name = format!("cutover_mirror_{}_total", kind.name());
        let help = match kind {
            MirrorCount::Dropped => {
                "Copies dropped: a worker's bound on copies in flight was full."
            }
            MirrorCount::Skipped => "Requests of mirrored users not copied (method or body).",
            MirrorCount::Compared => "Copies whose answer was compared with OLD's.",
            MirrorCount::Mismatches => "Compared copies whose answer differed from OLD's.",
        };
        header(o, &name, "counter", help);
        let _ = writeln!(o, "{name}{{env=\"new\"}} {}", metrics.mirror_total(kind));
    }
}

impl super::WindowSnapshot {
    /// Shadow traffic over the window as status shows it; the share mirrored and whether it is
    /// compared are the run's, filled in by the caller.
    pub fn mirror(&self) -> crate::api::MirrorStatus {
        let m = self.scope(Scope::Mirror);
        crate::api::MirrorStatus {
            percent: 0.0,
            compare: false,
            stats: m.to_env_stats(),
            dropped: m.dropped,
            skipped: m.skipped,
            compared: m.compared,
            mismatches: m.mismatches,
            mismatch_rate: m.mismatch_rate,
            samples: self.mismatch_samples.clone(),
        }
    }
}
