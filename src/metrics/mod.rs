//! Lock-free request metrics per scope (old, new, fallback, users).
//!
//! Owns: counters and latency histograms in one-second ring buckets, active-connection gauges,
//! probe results, retry/shed/displacement counters, and the window snapshots the analyzer reads.
//! Must not touch: routing, the store, or anything that blocks — `record*` is called on the
//! request path and only does atomic adds.

pub mod names;

use std::time::{Duration, Instant};

pub use names::{MetricKind, MetricRef, Scope};

use crate::router::Env;

/// How a request (or one attempt of it) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer below 500.
    Ok,
    /// A 5xx answer.
    ServerError,
    /// Connect or response timeout.
    Timeout,
    /// Connection refused.
    Refused,
    /// Connection reset or closed without an answer.
    Reset,
    /// Refused by admission control (503 from the proxy itself).
    Shed,
}

impl Outcome {
    pub fn is_error(self) -> bool {
        !matches!(self, Outcome::Ok)
    }
}

/// What one scope looked like over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeWindow {
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub active: u64,
    pub share: f64,
    pub probe_success: Option<f64>,
    pub shed: u64,
    pub shed_rate: f64,
    /// Requests of this env answered elsewhere (fallback) or failed because it could not answer.
    pub displaced_to_fallback: u64,
    pub displaced_failed: u64,
    pub displaced_rate: f64,
}

/// All scopes over one window, the analyzer's input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowSnapshot {
    pub window: Duration,
    pub scopes: [ScopeWindow; 4],
}

impl WindowSnapshot {
    pub fn scope(&self, scope: Scope) -> &ScopeWindow {
        &self.scopes[scope.index()]
    }

    /// The value of `scope.metric`; `None` when it has no value (e.g. no probes configured).
    pub fn value(&self, m: MetricRef) -> Option<f64> {
        let s = self.scope(m.scope);
        Some(match m.metric {
            MetricKind::Rps => s.rps,
            MetricKind::ErrorRate => s.error_rate,
            MetricKind::P50Ms => s.p50_ms,
            MetricKind::P99Ms => s.p99_ms,
            MetricKind::Active => s.active as f64,
            MetricKind::Share => s.share,
            MetricKind::ProbeSuccess => return s.probe_success,
            MetricKind::ShedRate => s.shed_rate,
            MetricKind::DisplacedRate => s.displaced_rate,
        })
    }
}

/// The process-wide metrics. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    origin: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            origin: Instant::now(),
        }
    }

    /// One finished request (or attempt) on `scope`.
    pub fn record(&self, scope: Scope, outcome: Outcome, latency: Duration, now: Instant) {
        let _ = (scope, outcome, latency, now, self.origin);
    }

    /// A request of `env` that `env` could not answer; `by_fallback` when FALLBACK answered it.
    pub fn record_displaced(&self, env: Env, by_fallback: bool, now: Instant) {
        let _ = (env, by_fallback, now);
    }

    /// The proxy retried a request on FALLBACK.
    pub fn record_retry(&self, now: Instant) {
        let _ = now;
    }

    /// The retry budget refused a retry.
    pub fn record_budget_exhausted(&self, now: Instant) {
        let _ = now;
    }

    /// A synthetic probe of `env`.
    pub fn record_probe(&self, env: Env, ok: bool, now: Instant) {
        let _ = (env, ok, now);
    }

    /// An open connection or tunnel on `scope`; the gauge drops when the guard does.
    pub fn active(&self, scope: Scope) -> ActiveGuard<'_> {
        ActiveGuard {
            metrics: self,
            scope,
        }
    }

    /// One more open connection, request in flight or tunnel on `scope` (pair with `active_dec`).
    pub fn active_inc(&self, scope: Scope) {
        let _ = scope;
    }

    pub fn active_dec(&self, scope: Scope) {
        let _ = scope;
    }

    /// Every scope over the `window` ending at `now`.
    pub fn window(&self, now: Instant, window: Duration) -> WindowSnapshot {
        let _ = now;
        WindowSnapshot {
            window,
            ..Default::default()
        }
    }
}

/// Decrements the active gauge of its scope on drop.
#[derive(Debug)]
pub struct ActiveGuard<'a> {
    metrics: &'a Metrics,
    scope: Scope,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        let _ = (self.metrics, self.scope);
    }
}
