//! One recorded analysis tick: what the analyzer judged, as plain data a person can also write.
//!
//! Owns: [`TickRecord`] (one line of a traffic file, one value of the store's `ticks` tree), its
//! conversion from a [`WindowSnapshot`] and back, and the weight-scaling model of
//! [`TickRecord::snapshot_at`]. Must not touch: files, the store, clocks — the CLI reads and
//! writes the lines, the store keeps them, the driver passes the time in.
//!
//! Scopes are written by name (`"old"`, `"new"`, ...), iterating the scope list, so a scope a
//! later version adds is recorded without a change here, and a scope a file does not carry (or
//! one this version does not know) reads as "no traffic" rather than as an error.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::{ratio, Scope, ScopeWindow, WindowSnapshot};
use crate::router::Weight;

/// One analysis tick as recorded: the time, the weight in effect, and every scope's figures
/// over the window the analyzer judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickRecord {
    /// Wall time of the tick, milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// Percent of users on NEW when the tick was judged.
    pub weight: f64,
    /// The time the live driver let pass at this tick, in nanoseconds (its hold and ramp
    /// progress); a replay uses it so a recorded run decides as it did. Left out of a
    /// hand-written file, the time since the previous line is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dt_ns: Option<u64>,
    /// The window the figures cover, in seconds.
    #[serde(default = "default_window_s")]
    pub window_s: f64,
    /// Figures by scope name; a scope left out had no traffic.
    #[serde(default)]
    pub scopes: BTreeMap<String, ScopeRecord>,
    /// Retries sent to FALLBACK in the window, and those the retry budget refused.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub budget_exhausted: u64,
}

fn default_window_s() -> f64 {
    1.0
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One scope over the window. Counts are what a person writes; the rates (`rps`, `error_rate`,
/// `share`, `shed_rate`, `displaced_rate`) may be left out and are then derived from the
/// counts and `window_s` as the metrics derive them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeRecord {
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    #[serde(skip_serializing_if = "is_zero")]
    pub active: u64,
    /// Probes in the window and the share that succeeded (absent: no probes configured).
    #[serde(skip_serializing_if = "is_zero")]
    pub probes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_success: Option<f64>,
    #[serde(skip_serializing_if = "is_zero")]
    pub shed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shed_rate: Option<f64>,
    #[serde(skip_serializing_if = "is_zero")]
    pub displaced_to_fallback: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub displaced_failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub displaced_rate: Option<f64>,
    #[serde(skip_serializing_if = "is_zero")]
    pub waiting_room: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub sessions_limited: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub tunnels_drained: u64,
}

impl ScopeRecord {
    fn from_window(s: &ScopeWindow) -> ScopeRecord {
        ScopeRecord {
            requests: s.requests,
            errors: s.errors,
            p50_ms: s.p50_ms,
            p99_ms: s.p99_ms,
            rps: Some(s.rps),
            error_rate: Some(s.error_rate),
            share: Some(s.share),
            active: s.active,
            probes: s.probes,
            probe_success: s.probe_success,
            shed: s.shed,
            shed_rate: Some(s.shed_rate),
            displaced_to_fallback: s.displaced_to_fallback,
            displaced_failed: s.displaced_failed,
            displaced_rate: Some(s.displaced_rate),
            waiting_room: s.waiting_room,
            sessions_limited: s.sessions_limited,
            tunnels_drained: s.tunnels_drained,
        }
    }

    /// The scope's window: given rates as written, missing ones derived from the counts.
    fn to_window(&self, span_s: f64, env_requests: u64, users: bool) -> ScopeWindow {
        let displaced = self.displaced_to_fallback + self.displaced_failed;
        let derived_share = if users {
            if env_requests + self.requests > 0 {
                1.0
            } else {
                0.0
            }
        } else {
            ratio(self.requests, env_requests)
        };
        ScopeWindow {
            requests: self.requests,
            errors: self.errors,
            rps: self.rps.unwrap_or(self.requests as f64 / span_s),
            error_rate: self.error_rate.unwrap_or(ratio(self.errors, self.requests)),
            p50_ms: self.p50_ms,
            p99_ms: self.p99_ms,
            active: self.active,
            share: self.share.unwrap_or(derived_share),
            probe_success: self.probe_success,
            probes: self.probes,
            shed: self.shed,
            shed_rate: self.shed_rate.unwrap_or(self.shed as f64 / span_s),
            displaced_to_fallback: self.displaced_to_fallback,
            displaced_failed: self.displaced_failed,
            displaced_rate: self
                .displaced_rate
                .unwrap_or(ratio(displaced, self.requests.max(displaced))),
            waiting_room: self.waiting_room,
            sessions_limited: self.sessions_limited,
            tunnels_drained: self.tunnels_drained,
            // The shadow traffic's own figures are not recorded.
            ..ScopeWindow::default()
        }
    }

    /// Counts multiplied by `k` (rounded), rates dropped so they are derived again.
    fn scaled(&self, k: f64) -> ScopeRecord {
        let m = |v: u64| (v as f64 * k).round() as u64;
        ScopeRecord {
            requests: m(self.requests),
            errors: m(self.errors),
            active: m(self.active),
            shed: m(self.shed),
            displaced_to_fallback: m(self.displaced_to_fallback),
            displaced_failed: m(self.displaced_failed),
            waiting_room: m(self.waiting_room),
            sessions_limited: m(self.sessions_limited),
            tunnels_drained: m(self.tunnels_drained),
            rps: None,
            error_rate: self.error_rate.filter(|_| self.requests == 0),
            share: None,
            shed_rate: None,
            displaced_rate: None,
            ..self.clone()
        }
    }
}

impl TickRecord {
    /// What the analyzer judged at `t_ms` with `weight` in effect.
    pub fn from_snapshot(
        t_ms: u64,
        weight: Weight,
        dt: Duration,
        snap: &WindowSnapshot,
    ) -> TickRecord {
        TickRecord {
            t_ms,
            weight: weight.percent(),
            dt_ns: Some(u64::try_from(dt.as_nanos()).unwrap_or(u64::MAX)),
            window_s: snap.window.as_secs_f64(),
            scopes: Scope::ALL
                .iter()
                .map(|s| {
                    (
                        s.as_str().to_string(),
                        ScopeRecord::from_window(snap.scope(*s)),
                    )
                })
                .collect(),
            retries: snap.retries,
            budget_exhausted: snap.budget_exhausted,
        }
    }

    /// The weight recorded, as a routing weight.
    pub fn recorded_weight(&self) -> Weight {
        Weight::from_percent(self.weight.clamp(0.0, 100.0))
    }

    /// The window snapshot as recorded (no scaling).
    pub fn snapshot(&self) -> WindowSnapshot {
        self.build(&self.scopes)
    }

    /// The snapshot the analyzer would have judged had `weight` been in effect instead of the
    /// recorded one. The model (docs/plans.md, "Simulating a plan"):
    ///
    /// - users' demand does not depend on the weight: OLD's and NEW's requests are split anew,
    ///   NEW's counts multiplied by `weight / recorded` and OLD's by
    ///   `(100 − weight) / (100 − recorded)`; per-request figures (error rate, latency
    ///   quantiles, probe success) stay as recorded — load-dependent behaviour (NEW slowing as
    ///   it gets more users) is not extrapolated;
    /// - FALLBACK's counts follow what was displaced to it, scaled with the env it came from;
    ///   `users` gets the sum of the changes of OLD, NEW and FALLBACK;
    /// - a side with no recorded traffic (NEW at 0 %, OLD at 100 %) cannot be invented: it stays
    ///   empty, and its gates do not judge.
    pub fn snapshot_at(&self, weight: Weight) -> WindowSnapshot {
        let recorded = self.recorded_weight();
        if recorded == weight {
            return self.snapshot();
        }
        let (w, r) = (weight.percent(), recorded.percent());
        let k_new = if r > 0.0 { w / r } else { 0.0 };
        let k_old = if r < 100.0 {
            (100.0 - w) / (100.0 - r)
        } else {
            0.0
        };
        let get = |s: Scope| self.scopes.get(s.as_str()).cloned().unwrap_or_default();
        let (old, new) = (get(Scope::Old), get(Scope::New));
        let (old_s, new_s) = (old.scaled(k_old), new.scaled(k_new));
        let fb = get(Scope::Fallback);
        let from_envs = |x: &ScopeRecord| x.displaced_to_fallback;
        let recorded_fb_in = from_envs(&old) + from_envs(&new);
        let scaled_fb_in = from_envs(&old_s) + from_envs(&new_s);
        let k_fb = if recorded_fb_in > 0 {
            scaled_fb_in as f64 / recorded_fb_in as f64
        } else {
            1.0
        };
        let fb_s = fb.scaled(k_fb);
        let users = get(Scope::Users);
        let delta = |f: fn(&ScopeRecord) -> u64| {
            let before = f(&old) + f(&new) + f(&fb);
            let after = f(&old_s) + f(&new_s) + f(&fb_s);
            (f(&users) + after).saturating_sub(before)
        };
        let users_s = ScopeRecord {
            requests: delta(|x| x.requests),
            errors: delta(|x| x.errors),
            shed: delta(|x| x.shed),
            displaced_to_fallback: delta(|x| x.displaced_to_fallback),
            displaced_failed: delta(|x| x.displaced_failed),
            rps: None,
            error_rate: None,
            share: None,
            shed_rate: None,
            displaced_rate: None,
            ..users
        };
        let mut scopes = self.scopes.clone();
        for (s, rec) in [
            (Scope::Old, old_s),
            (Scope::New, new_s),
            (Scope::Fallback, fb_s),
            (Scope::Users, users_s),
        ] {
            scopes.insert(s.as_str().to_string(), rec);
        }
        self.build(&scopes)
    }

    fn build(&self, scopes: &BTreeMap<String, ScopeRecord>) -> WindowSnapshot {
        let window = Duration::try_from_secs_f64(self.window_s.max(0.0)).unwrap_or_default();
        let span = self.window_s.max(1.0);
        let get = |s: Scope| scopes.get(s.as_str()).cloned().unwrap_or_default();
        // Users' requests are shared between the three envs; copies to NEW are not users'.
        let env_requests: u64 = [Scope::Old, Scope::New, Scope::Fallback]
            .iter()
            .map(|s| get(*s).requests)
            .sum();
        WindowSnapshot {
            window,
            scopes: Scope::ALL.map(|s| get(s).to_window(span, env_requests, s == Scope::Users)),
            retries: self.retries,
            budget_exhausted: self.budget_exhausted,
            ..WindowSnapshot::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> TickRecord {
        serde_json::from_str(json).expect("a valid line")
    }

    #[test]
    fn a_snapshot_round_trips_through_a_record_and_json() {
        let mut snap = WindowSnapshot {
            window: Duration::from_secs(10),
            retries: 3,
            ..WindowSnapshot::default()
        };
        snap.scopes[Scope::New.index()] = ScopeWindow {
            requests: 120,
            errors: 3,
            rps: 12.3,
            error_rate: 0.025,
            p50_ms: 4.5,
            p99_ms: 40.0,
            share: 0.1,
            probe_success: Some(1.0),
            probes: 5,
            ..ScopeWindow::default()
        };
        let dt = Duration::from_nanos(250_000_123);
        let rec = TickRecord::from_snapshot(1_000, Weight::from_percent(10.0), dt, &snap);
        let text = serde_json::to_string(&rec).expect("json");
        let back: TickRecord = serde_json::from_str(&text).expect("parse");
        assert_eq!(back.snapshot(), snap);
        assert_eq!(back.dt_ns, Some(250_000_123));
    }

    #[test]
    fn a_hand_written_line_derives_its_rates_and_missing_scopes_are_empty() {
        let rec = line(
            r#"{"t_ms": 0, "weight": 25, "window_s": 10,
                "scopes": {"old": {"requests": 300, "errors": 3, "p99_ms": 80},
                           "new": {"requests": 100, "errors": 2, "p99_ms": 90},
                           "mirror": {"requests": 7}}}"#,
        );
        let snap = rec.snapshot();
        let new = snap.scope(Scope::New);
        assert_eq!((new.rps, new.error_rate, new.share), (10.0, 0.02, 0.25));
        assert_eq!(snap.scope(Scope::Fallback).requests, 0);
        assert_eq!(snap.scope(Scope::Users).requests, 0);
    }

    #[test]
    fn a_typo_in_a_figure_is_an_error() {
        let err = serde_json::from_str::<TickRecord>(
            r#"{"t_ms": 0, "weight": 1, "scopes": {"new": {"requets": 1}}}"#,
        )
        .expect_err("unknown field");
        assert!(err.to_string().contains("requets"), "{err}");
    }

    #[test]
    fn scaling_moves_requests_between_old_and_new_and_keeps_rates() {
        let rec = line(
            r#"{"t_ms": 0, "weight": 10, "window_s": 10,
                "scopes": {"old": {"requests": 900, "errors": 9},
                           "new": {"requests": 100, "errors": 5},
                           "users": {"requests": 1000, "errors": 14}}}"#,
        );
        let snap = rec.snapshot_at(Weight::from_percent(50.0));
        let (old, new, users) = (
            snap.scope(Scope::Old),
            snap.scope(Scope::New),
            snap.scope(Scope::Users),
        );
        assert_eq!(
            (old.requests, new.requests, users.requests),
            (500, 500, 1000)
        );
        assert_eq!((old.errors, new.errors, users.errors), (5, 25, 30));
        assert!((new.error_rate - 0.05).abs() < 1e-9);
        assert_eq!(new.rps, 50.0);
        // Nothing recorded on NEW at 0 %: nothing to judge at 25 % either.
        let zero = line(r#"{"t_ms": 0, "weight": 0, "scopes": {"old": {"requests": 10}}}"#);
        assert_eq!(
            zero.snapshot_at(Weight::from_percent(25.0))
                .scope(Scope::New)
                .requests,
            0
        );
    }
}
