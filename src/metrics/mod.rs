//! Lock-free request metrics per scope (old, new, fallback, users, and mirror: shadow traffic,
//! whose own counts are in [`mirror`]).
//!
//! Owns: counters and latency histograms in one-second ring buckets, active-connection gauges,
//! probe results, retry/shed/displacement counters, and the window snapshots the analyzer reads.
//! Must not touch: routing, the store, or anything that blocks — `record*` is called on the
//! request path and only does atomic adds.

//!
//! Layout: [`ring`] keeps one-second slots (counts and a log-scale latency histogram,
//! [`histogram`]) for windows and histories; [`totals`] keeps since-start counters for
//! Prometheus ([`prometheus`]); [`window`] turns slots into [`WindowSnapshot`]s and
//! [`HistoryPoint`]s. Time always comes in as an argument (`now: Instant`), measured from the
//! `origin` the metrics were created with, so tests drive it with synthetic instants.

pub mod faults;
pub mod histogram;
pub mod mirror;
pub mod names;
pub mod prometheus;
pub mod ring;
pub mod totals;
mod window;

use std::time::{Duration, Instant};

pub use faults::{ClientFault, Handshake, ProxyFault};
pub use mirror::MirrorCount;
pub use names::{MetricKind, MetricRef, Scope};
pub use prometheus::{render_prometheus, render_tunnels_to_move, GateGauge, RunGauges};
pub use window::ratio;
pub use window::{HistoryPoint, RawScope, RawWindow, ScopeHistory};

use crate::router::Env;
use ring::{Counter, Ring};
use totals::{GlobalTotals, ScopeTotals};

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
    /// Probes in the window (what `probe_success` gates count instead of requests). For
    /// `users`: the probes of all envs together.
    pub probes: u64,
    /// Requests refused by admission control in the window, and per second.
    pub shed: u64,
    pub shed_rate: f64,
    /// Requests of this env answered elsewhere (fallback) or failed because it could not answer.
    pub displaced_to_fallback: u64,
    pub displaced_failed: u64,
    /// Displaced over this env's requests (for `users`: all displaced over users' requests).
    pub displaced_rate: f64,
    /// Shed answers that were the waiting-room page (for `users`: all envs).
    pub waiting_room: u64,
    /// Requests refused by the new-session rate (also in `shed`; for `users`: all envs).
    pub sessions_limited: u64,
    /// Tunnels the drain closed on this env so their users reconnect to the other (for
    /// `users`: all envs).
    pub tunnels_drained: u64,
    /// `mirror` only: copies dropped at the bound, requests of mirrored users not copied
    /// (method or body), copies compared with OLD's answer and those that differed.
    pub dropped: u64,
    pub skipped: u64,
    pub compared: u64,
    pub mismatches: u64,
    /// Dropped over chosen copies (sent + dropped), and mismatches over compared (0..1).
    pub dropped_rate: f64,
    pub mismatch_rate: f64,
}

/// All scopes over one window, the analyzer's input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowSnapshot {
    pub window: Duration,
    pub scopes: [ScopeWindow; 5],
    /// Retries the proxy sent to FALLBACK in the window.
    pub retries: u64,
    /// Retries the retry budget refused in the window.
    pub budget_exhausted: u64,
    /// Failed exchanges that were the client's fault in the window, by [`ClientFault::index`].
    pub client_errors: [u64; 7],
    /// Failed exchanges that were the proxy's own fault in the window, by
    /// [`ProxyFault::index`].
    pub proxy_errors: [u64; 1],
    /// The latest copies whose answer differed from OLD's (newest last; [`mirror::SAMPLES`]).
    pub mismatch_samples: Vec<mirror::Mismatch>,
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
            MetricKind::DroppedRate => s.dropped_rate,
            MetricKind::MismatchRate => s.mismatch_rate,
        })
    }
}

impl ScopeWindow {
    /// This scope as the control API shows it.
    pub fn to_env_stats(&self) -> crate::api::EnvStats {
        crate::api::EnvStats {
            rps: self.rps,
            error_rate: self.error_rate,
            p50_ms: self.p50_ms,
            p99_ms: self.p99_ms,
            active: self.active,
            share: self.share,
            probe_success: self.probe_success,
            requests: self.requests,
            shed_rate: self.shed_rate,
        }
    }
}

impl WindowSnapshot {
    /// Every scope as `GET /v1/status` shows it.
    pub fn envs(&self) -> crate::api::Envs {
        crate::api::Envs {
            old: self.scope(Scope::Old).to_env_stats(),
            new: self.scope(Scope::New).to_env_stats(),
            fallback: self.scope(Scope::Fallback).to_env_stats(),
            users: self.scope(Scope::Users).to_env_stats(),
        }
    }

    /// What herd protection did over the window, as status shows it.
    pub fn protection(&self) -> crate::api::Protection {
        let u = self.scope(Scope::Users);
        crate::api::Protection {
            shed: u.shed,
            waiting_room: u.waiting_room,
            sessions_limited: u.sessions_limited,
            tunnels_drained: u.tunnels_drained,
            retries: self.retries,
            budget_exhausted: self.budget_exhausted,
            tunnels_to_move: 0,
        }
    }

    /// The client's failed exchanges over the window, as status shows them.
    pub fn client_errors(&self) -> crate::api::ClientErrors {
        let of = |k: ClientFault| self.client_errors[k.index()];
        crate::api::ClientErrors {
            total: self.client_errors.iter().sum(),
            body_malformed: of(ClientFault::BodyMalformed),
            body_aborted: of(ClientFault::BodyAborted),
            body_timeout: of(ClientFault::BodyTimeout),
            body_too_slow: of(ClientFault::BodyTooSlow),
            upgrade_with_body: of(ClientFault::UpgradeWithBody),
            bad_request: of(ClientFault::BadRequest),
            gone: of(ClientFault::Gone),
        }
    }

    /// The displaced load of all envs over what users asked for, as status shows it.
    pub fn displaced(&self) -> crate::api::Displaced {
        let u = self.scope(Scope::Users);
        crate::api::Displaced {
            to_fallback: u.displaced_to_fallback,
            failed: u.displaced_failed,
            rate: u.displaced_rate,
        }
    }
}

/// The process-wide metrics. Cheap to share behind an `Arc`.
///
/// Every `record*` is a handful of relaxed atomic adds into preallocated memory: no lock, no
/// allocation. Reading (`window`, `history`, Prometheus) sums the slots and may allocate.
pub struct Metrics {
    origin: Instant,
    rings: [Ring; 5],
    totals: [ScopeTotals; 5],
    global: GlobalTotals,
    /// Shadow traffic's own counts and its sample of mismatches.
    mirror: mirror::MirrorTotals,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("origin", &self.origin)
            .field("totals", &self.totals)
            .field("global", &self.global)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_origin(Instant::now())
    }

    /// Metrics whose second 0 starts at `origin` (tests pass `origin + offset` as `now`).
    pub fn with_origin(origin: Instant) -> Self {
        Metrics {
            origin,
            rings: std::array::from_fn(|_| Ring::new()),
            totals: Default::default(),
            global: GlobalTotals::default(),
            mirror: mirror::MirrorTotals::default(),
        }
    }

    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The ring second `now` falls in (instants before the origin count as second 0).
    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// One finished request (or attempt) on `scope`. Shed requests count as requests and as
    /// shed, not as errors (admission control's answers are `shed_rate`, a metric of their
    /// own) nor in the latency histogram: they were never served, and their ~0 ms would hide
    /// real latency.
    pub fn record(&self, scope: Scope, outcome: Outcome, latency: Duration, now: Instant) {
        self.record_in(&[scope], outcome, latency, now);
    }

    /// [`Metrics::record`] of one answer into each of `scopes` (an env's answer is also what
    /// its user got), working out its second and latency buckets once.
    pub fn record_in(&self, scopes: &[Scope], outcome: Outcome, latency: Duration, now: Instant) {
        let sec = self.second(now);
        let shed = outcome == Outcome::Shed;
        let secs = (!shed).then_some(latency.as_secs_f64());
        let bucket = secs.map(|s| histogram::index(s * 1e3));
        for scope in scopes {
            // A shed answer is the proxy's protection at work, not a failure of the scope: it
            // counts in `shed` (and `shed_rate`), never in `errors` (`error_rate`).
            self.rings[scope.index()].request(sec, outcome.is_error() && !shed, shed, bucket);
            self.totals[scope.index()].request(outcome, secs);
        }
    }

    /// A request of `env` that `env` could not answer; `by_fallback` when FALLBACK answered it.
    pub fn record_displaced(&self, env: Env, by_fallback: bool, now: Instant) {
        let scope = Scope::from(env).index();
        let (counter, total) = if by_fallback {
            (
                Counter::DisplacedToFallback,
                &self.totals[scope].displaced_to_fallback,
            )
        } else {
            (
                Counter::DisplacedFailed,
                &self.totals[scope].displaced_failed,
            )
        };
        self.rings[scope].add(self.second(now), counter, 1);
        total.fetch_add(1, Relaxed);
    }

    /// The proxy retried a request on FALLBACK.
    pub fn record_retry(&self, now: Instant) {
        self.rings[Scope::Fallback.index()].add(self.second(now), Counter::Retries, 1);
        self.global.retries.fetch_add(1, Relaxed);
    }

    /// A client connection's lane served `n` requests (counted once, when it ends).
    pub fn record_lane_requests(&self, n: u64) {
        self.global.client_lane_requests.fetch_add(n, Relaxed);
    }

    /// The retry budget refused a retry.
    pub fn record_budget_exhausted(&self, now: Instant) {
        self.rings[Scope::Fallback.index()].add(self.second(now), Counter::BudgetExhausted, 1);
        self.global.budget_exhausted.fetch_add(1, Relaxed);
    }

    /// A failed exchange that was the client's fault ([`ClientFault`]): counted here only,
    /// never in an env's scope nor in `users`' requests and errors.
    pub fn record_client_error(&self, kind: ClientFault, now: Instant) {
        self.rings[Scope::Users.index()].add(self.second(now), Counter::client(kind), 1);
        self.global.client_errors[kind.index()].fetch_add(1, Relaxed);
    }

    /// A failed exchange that was the proxy's own fault ([`ProxyFault`]): counted here, never
    /// in an env's scope (what the user got is recorded in `users` by the caller).
    pub fn record_proxy_error(&self, kind: ProxyFault, now: Instant) {
        self.rings[Scope::Users.index()].add(self.second(now), Counter::proxy(kind), 1);
        self.global.proxy_errors[kind.index()].fetch_add(1, Relaxed);
    }

    /// A request forced to `env` by the override header (a smoke test), `ok` when the env
    /// answered below 500: counted here only, never in the env's scope nor in `users`, so a
    /// smoke test neither moves nor stalls a run.
    pub fn record_override(&self, env: Env, ok: bool) {
        let i = Scope::from(env).index();
        let slot = if ok {
            &self.global.overrides_ok[i]
        } else {
            &self.global.overrides_failed[i]
        };
        slot.fetch_add(1, Relaxed);
    }

    /// Override-forced requests to `env` since start that ended `ok` (or not).
    pub fn overrides_total(&self, env: Env, ok: bool) -> u64 {
        let i = Scope::from(env).index();
        if ok {
            self.global.overrides_ok[i].load(Relaxed)
        } else {
            self.global.overrides_failed[i].load(Relaxed)
        }
    }

    /// Client faults of `kind` since start.
    pub fn client_errors_total(&self, kind: ClientFault) -> u64 {
        self.global.client_errors[kind.index()].load(Relaxed)
    }

    /// A TLS handshake on the users' listener ended as `how`.
    pub fn record_handshake(&self, how: Handshake) {
        self.global.tls_handshakes[how.index()].fetch_add(1, Relaxed);
    }

    /// TLS handshakes on the users' listener that ended as `how`, since start.
    pub fn handshakes_total(&self, how: Handshake) -> u64 {
        self.global.tls_handshakes[how.index()].load(Relaxed)
    }

    /// Proxy faults of `kind` since start.
    pub fn proxy_errors_total(&self, kind: ProxyFault) -> u64 {
        self.global.proxy_errors[kind.index()].load(Relaxed)
    }

    /// A shed answer to a browser was the waiting-room page.
    pub fn record_waiting_room(&self, env: Env, now: Instant) {
        self.count(env, Counter::WaitingRoom, now);
        self.totals[Scope::from(env).index()]
            .waiting_room
            .fetch_add(1, Relaxed);
    }

    /// A new session (connection or tunnel) was refused by `env`'s new-session rate. The
    /// request itself is recorded as [`Outcome::Shed`] by the caller.
    pub fn record_session_limited(&self, env: Env, now: Instant) {
        self.count(env, Counter::SessionsLimited, now);
        self.totals[Scope::from(env).index()]
            .sessions_limited
            .fetch_add(1, Relaxed);
    }

    /// The drain closed a tunnel on `env` whose user now belongs to the other env.
    pub fn record_tunnel_drained(&self, env: Env, now: Instant) {
        self.count(env, Counter::TunnelsDrained, now);
        self.totals[Scope::from(env).index()]
            .tunnels_drained
            .fetch_add(1, Relaxed);
    }

    /// The admission limit of `env` now in force (`None`: unlimited).
    pub fn set_admission_limit(&self, env: Env, limit: Option<u32>) {
        self.totals[Scope::from(env).index()]
            .admission_limit
            .store(limit.map_or(0, u64::from), Relaxed);
    }

    /// The admission limit of `env` last published (`None`: unlimited).
    pub fn admission_limit(&self, env: Env) -> Option<u64> {
        match self.totals[Scope::from(env).index()]
            .admission_limit
            .load(Relaxed)
        {
            0 => None,
            v => Some(v),
        }
    }

    fn count(&self, env: Env, counter: Counter, now: Instant) {
        self.rings[Scope::from(env).index()].add(self.second(now), counter, 1);
    }

    /// A synthetic probe of `env`.
    pub fn record_probe(&self, env: Env, ok: bool, now: Instant) {
        let scope = Scope::from(env).index();
        let counter = if ok {
            Counter::ProbeOk
        } else {
            Counter::ProbeFail
        };
        self.rings[scope].add(self.second(now), counter, 1);
        self.totals[scope].probe(ok);
    }

    /// An open connection or tunnel on `scope`; the gauge drops when the guard does.
    pub fn active(&self, scope: Scope) -> ActiveGuard<'_> {
        self.open_active(scope);
        ActiveGuard {
            metrics: self,
            scope,
        }
    }

    /// One more open on `scope` (what the guards count); pair it with
    /// [`Metrics::close_active`]. Called directly by owners that already reach the `Metrics` and
    /// would otherwise clone its `Arc` per request ([`crate::proxy`]'s in-flight guard).
    pub fn open_active(&self, scope: Scope) {
        self.totals[scope.index()].open();
    }

    /// The end of one [`Metrics::open_active`].
    pub fn close_active(&self, scope: Scope) {
        self.totals[scope.index()].close();
    }

    /// Like [`Metrics::active`], for guards that must outlive a borrow (spawned tunnel tasks).
    pub fn active_owned(self: &std::sync::Arc<Self>, scope: Scope) -> OwnedActiveGuard {
        self.open_active(scope);
        OwnedActiveGuard {
            metrics: std::sync::Arc::clone(self),
            scope,
        }
    }

    /// Open connections and tunnels on `scope` right now.
    pub fn active_now(&self, scope: Scope) -> u64 {
        self.totals[scope.index()].active_now()
    }
}

use std::sync::atomic::Ordering::Relaxed;

/// Decrements the active gauge of its scope on drop.
#[derive(Debug)]
pub struct ActiveGuard<'a> {
    metrics: &'a Metrics,
    scope: Scope,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.metrics.close_active(self.scope);
    }
}

/// [`ActiveGuard`] holding an `Arc` of the metrics.
#[derive(Debug)]
pub struct OwnedActiveGuard {
    metrics: std::sync::Arc<Metrics>,
    scope: Scope,
}

impl Drop for OwnedActiveGuard {
    fn drop(&mut self) {
        self.metrics.close_active(self.scope);
    }
}

#[cfg(test)]
mod tests;
