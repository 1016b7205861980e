//! Turning one-second slots into what the analyzer and the console read.
//!
//! Owns: the window arithmetic (which seconds, over how long a span), the derived rates, shares
//! and percentiles, and the per-second history for sparklines. Must not touch: recording.
//!
//! A window of `w` seconds ending at `now` is the current (partial) second plus the `w - 1`
//! before it. Rates divide by the span those seconds really cover — `w - 1` plus the elapsed
//! part of the current second, never more than the time since the origin, at least 1 s — so a
//! steady 100 rps reads 100 whatever the sub-second phase of `now`, and a fresh process does not
//! read as quiet.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::histogram::{quantile, BUCKETS};
use super::ring::{Counter, Sum, MAX_WINDOW_SECONDS};
use super::{ClientFault, Metrics, ProxyFault, Scope, ScopeWindow, WindowSnapshot};

/// One second of one scope, for the console's sparklines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Requests in that second.
    pub rps: f64,
    pub error_rate: f64,
    /// 0 when the second had no timed requests.
    pub p99_ms: f64,
}

/// Per-second points of every scope, oldest first, all the same length.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScopeHistory {
    pub old: Vec<HistoryPoint>,
    pub new: Vec<HistoryPoint>,
    pub fallback: Vec<HistoryPoint>,
    pub users: Vec<HistoryPoint>,
    #[serde(default)]
    pub mirror: Vec<HistoryPoint>,
}

impl ScopeHistory {
    pub fn scope(&self, scope: Scope) -> &[HistoryPoint] {
        match scope {
            Scope::Old => &self.old,
            Scope::New => &self.new,
            Scope::Fallback => &self.fallback,
            Scope::Users => &self.users,
            Scope::Mirror => &self.mirror,
        }
    }

    fn scope_mut(&mut self, scope: Scope) -> &mut Vec<HistoryPoint> {
        match scope {
            Scope::Old => &mut self.old,
            Scope::New => &mut self.new,
            Scope::Fallback => &mut self.fallback,
            Scope::Users => &mut self.users,
            Scope::Mirror => &mut self.mirror,
        }
    }
}

/// `num / den`, 0 for an empty denominator (the rates of a window; recorded ticks too).
pub fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// What one process counted over one window, before any rate or percentile is derived:
/// what instances of a fleet publish and add up (`crate::fleet`), since rates and
/// percentiles of a sum cannot be made from the parts' rates and percentiles.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawWindow {
    pub window_ms: u64,
    /// Seconds the window's slots really cover (see the module doc).
    pub span_s: f64,
    /// One entry per scope, in [`Scope::ALL`] order.
    pub scopes: Vec<RawScope>,
}

/// One scope's counters ([`Counter`] order), latency histogram and active gauge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawScope {
    pub counters: Vec<u64>,
    /// Non-empty histogram buckets as `(bucket, count)`, in bucket order.
    pub latency: Vec<(u32, u64)>,
    pub active: u64,
}

impl RawWindow {
    /// Add `other`'s counts to this window's (the span is the longer of the two).
    pub fn merge(&mut self, other: &RawWindow) {
        self.window_ms = self.window_ms.max(other.window_ms);
        self.span_s = self.span_s.max(other.span_s);
        if self.scopes.len() < other.scopes.len() {
            self.scopes
                .resize_with(other.scopes.len(), RawScope::default);
        }
        for (mine, theirs) in self.scopes.iter_mut().zip(&other.scopes) {
            if mine.counters.len() < theirs.counters.len() {
                mine.counters.resize(theirs.counters.len(), 0);
            }
            for (a, b) in mine.counters.iter_mut().zip(&theirs.counters) {
                *a = a.saturating_add(*b);
            }
            let mut dense = vec![0u64; BUCKETS];
            for &(i, c) in mine.latency.iter().chain(&theirs.latency) {
                if let Some(slot) = dense.get_mut(i as usize) {
                    *slot = slot.saturating_add(c);
                }
            }
            mine.latency = sparse(&dense);
            mine.active = mine.active.saturating_add(theirs.active);
        }
    }

    /// The analyzer's view of these counts.
    pub fn snapshot(&self) -> WindowSnapshot {
        let sums: [Sum; SCOPES] = std::array::from_fn(|i| {
            let mut sum = Sum::new();
            if let Some(raw) = self.scopes.get(i) {
                for (slot, c) in sum.counters.iter_mut().zip(&raw.counters) {
                    *slot = *c;
                }
                for &(b, c) in &raw.latency {
                    if let Some(slot) = sum.latency.get_mut(b as usize) {
                        *slot = c;
                    }
                }
            }
            sum
        });
        let active = std::array::from_fn(|i| self.scopes.get(i).map_or(0, |s| s.active));
        derive(
            Duration::from_millis(self.window_ms),
            self.span_s,
            &sums,
            active,
            // Samples of mismatching requests stay with the instance that saw them.
            Vec::new(),
        )
    }
}

/// The number of scopes, [`Scope::ALL`]'s length.
const SCOPES: usize = Scope::ALL.len();

fn sparse(dense: &[u64]) -> Vec<(u32, u64)> {
    dense
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| (i as u32, *c))
        .collect()
}

/// The shadow traffic's own figures of a scope's window (zero for every scope but `mirror`).
fn mirror_window(scope: Scope, s: &Sum, requests: u64) -> ScopeWindow {
    if scope != Scope::Mirror {
        return ScopeWindow::default();
    }
    let dropped = s.get(Counter::MirrorDropped);
    let compared = s.get(Counter::MirrorCompared);
    let mismatches = s.get(Counter::MirrorMismatches);
    ScopeWindow {
        dropped,
        skipped: s.get(Counter::MirrorSkipped),
        compared,
        mismatches,
        dropped_rate: ratio(dropped, requests + dropped),
        mismatch_rate: ratio(mismatches, compared),
        ..ScopeWindow::default()
    }
}

impl Metrics {
    /// Every scope over the `window` ending at `now` (at most 126 s; longer is capped).
    pub fn window(&self, now: Instant, window: Duration) -> WindowSnapshot {
        let (span, sums) = self.sums(now, window);
        let active = std::array::from_fn(|i| self.active_now(Scope::ALL[i]));
        derive(window, span, &sums, active, self.mismatch_samples())
    }

    /// [`Metrics::window`]'s counts before anything is derived, to publish and add up.
    pub fn raw_window(&self, now: Instant, window: Duration) -> RawWindow {
        let (span, sums) = self.sums(now, window);
        RawWindow {
            window_ms: window.as_millis() as u64,
            span_s: span,
            scopes: sums
                .iter()
                .enumerate()
                .map(|(i, s)| RawScope {
                    counters: s.counters.to_vec(),
                    latency: sparse(&s.latency),
                    active: self.active_now(Scope::ALL[i]),
                })
                .collect(),
        }
    }

    /// The span the window's seconds cover and each scope's sum over them.
    fn sums(&self, now: Instant, window: Duration) -> (f64, [Sum; SCOPES]) {
        let w = (window.as_secs_f64().ceil() as u64).clamp(1, MAX_WINDOW_SECONDS);
        let elapsed = now.saturating_duration_since(self.origin).as_secs_f64();
        let now_s = self.second(now);
        let frac = elapsed - now_s as f64;
        let span = ((w - 1) as f64 + frac).min(elapsed).max(1.0);

        let sums: [Sum; 5] = std::array::from_fn(|i| {
            let mut sum = Sum::new();
            for sec in now_s.saturating_sub(w - 1)..=now_s {
                self.rings[i].read_into(sec, &mut sum);
            }
            sum
        });
        (span, sums)
    }
    /// The last `seconds` completed seconds before `now` (the partial current second would
    /// always look like a dip), oldest first; capped at 126.
    pub fn history(&self, now: Instant, seconds: usize) -> ScopeHistory {
        let n = (seconds as u64).min(MAX_WINDOW_SECONDS);
        let now_s = self.second(now);
        let mut out = ScopeHistory::default();
        let mut sum = Sum::new();
        for scope in Scope::ALL {
            let points = out.scope_mut(scope);
            points.reserve(n as usize);
            for back in (1..=n).rev() {
                let Some(sec) = now_s.checked_sub(back) else {
                    points.push(HistoryPoint::default());
                    continue;
                };
                sum.clear();
                self.rings[scope.index()].read_into(sec, &mut sum);
                let requests = sum.get(Counter::Requests);
                points.push(HistoryPoint {
                    rps: requests as f64,
                    error_rate: ratio(sum.get(Counter::Errors), requests),
                    p99_ms: quantile(&sum.latency, 0.99),
                });
            }
        }
        out
    }
}

/// Rates, shares and percentiles of each scope from its sum over a window covering `span`
/// seconds, and the active gauges.
fn derive(
    window: Duration,
    span: f64,
    sums: &[Sum; SCOPES],
    active: [u64; SCOPES],
    mismatch_samples: Vec<super::mirror::Mismatch>,
) -> WindowSnapshot {
    let env_requests: u64 = [Scope::Old, Scope::New, Scope::Fallback]
        .iter()
        .map(|s| sums[s.index()].get(Counter::Requests))
        .sum();
    let env_sum = |c: Counter| -> u64 {
        [Scope::Old, Scope::New, Scope::Fallback]
            .iter()
            .map(|s| sums[s.index()].get(c))
            .sum()
    };

    let scopes = std::array::from_fn(|i| {
        let scope = Scope::ALL[i];
        let s = &sums[i];
        let requests = s.get(Counter::Requests);
        let of = |c: Counter| {
            if scope == Scope::Users {
                env_sum(c)
            } else {
                s.get(c)
            }
        };
        let (probe_ok, probe_fail, to_fb, failed) = if scope == Scope::Users {
            (
                env_sum(Counter::ProbeOk),
                env_sum(Counter::ProbeFail),
                env_sum(Counter::DisplacedToFallback),
                env_sum(Counter::DisplacedFailed),
            )
        } else {
            (
                s.get(Counter::ProbeOk),
                s.get(Counter::ProbeFail),
                s.get(Counter::DisplacedToFallback),
                s.get(Counter::DisplacedFailed),
            )
        };
        let probes = probe_ok + probe_fail;
        let displaced = to_fb + failed;
        let shed = s.get(Counter::Shed);
        ScopeWindow {
            requests,
            errors: s.get(Counter::Errors),
            rps: requests as f64 / span,
            error_rate: ratio(s.get(Counter::Errors), requests),
            p50_ms: quantile(&s.latency, 0.50),
            p99_ms: quantile(&s.latency, 0.99),
            active: active[i],
            share: if scope == Scope::Users {
                if env_requests + requests > 0 {
                    1.0
                } else {
                    0.0
                }
            } else {
                ratio(requests, env_requests)
            },
            probe_success: (probes > 0).then(|| ratio(probe_ok, probes)),
            probes,
            shed,
            shed_rate: shed as f64 / span,
            displaced_to_fallback: to_fb,
            displaced_failed: failed,
            // Never above 1, even if the proxy recorded displacement without the attempt.
            displaced_rate: ratio(displaced, requests.max(displaced)),
            waiting_room: of(Counter::WaitingRoom),
            sessions_limited: of(Counter::SessionsLimited),
            tunnels_drained: of(Counter::TunnelsDrained),
            ..mirror_window(scope, s, requests)
        }
    });

    let fallback = &sums[Scope::Fallback.index()];
    let users = &sums[Scope::Users.index()];
    WindowSnapshot {
        window,
        scopes,
        retries: fallback.get(Counter::Retries),
        budget_exhausted: fallback.get(Counter::BudgetExhausted),
        client_errors: ClientFault::ALL.map(|k| users.get(Counter::client(k))),
        proxy_errors: ProxyFault::ALL.map(|k| users.get(Counter::proxy(k))),
        mismatch_samples,
    }
}
