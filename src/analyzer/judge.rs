//! One gate over one window: enough evidence? which value? pass or fail, and in which words?
//!
//! Owns: the sample-size rule, the three conditions, and the text and numbers of a verdict. Must
//! not touch: streaks and health — [`super::gates`] turns verdicts into decisions.
//!
//! Sample-size rule. A gate judges only when the sample its metric is computed from holds at least
//! `analysis.min_requests`: the scope's requests for per-request metrics (`error_rate`,
//! `p50_ms`, `p99_ms`, `displaced_rate`), all env requests (old + new + fallback) for `share`
//! (a fallback with no traffic is the healthy case, not an unknown one), at least
//! [`MIN_PROBES`] probes for `probe_success`. Rates over time (`rps`, `shed_rate`) and the
//! `active` gauge are always judged: their sample is the window itself. A `ratio` gate needs both
//! sides.

use serde_json::{json, Map, Value};

use super::stats::ratio_excess;
use crate::metrics::{MetricKind, MetricRef, Scope, WindowSnapshot};
use crate::plan::model::{Condition, Gate};
use crate::router::Weight;
use crate::vocab::GateVerdict;

/// Fewest probes in a window for a `probe_success` gate to judge.
pub const MIN_PROBES: u64 = 3;

/// What one gate saw in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub kind: GateVerdict,
    /// The gate passed because a scope it reads is empty by design (see [`empty_by_design`]).
    pub by_design: bool,
    pub value: Option<f64>,
    /// `new.error_rate = 0.031 > max 0.020`, or why it could not judge.
    pub text: String,
    /// The numbers behind it (gate, metric, value, threshold, requests, ...).
    pub data: Map<String, Value>,
}

/// A number for people: three significant digits or so, never `0.30000000000000004`.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || !v.is_finite() {
        format!("{v}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else if a >= 0.001 {
        format!("{v:.4}")
    } else {
        format!("{v:.2e}")
    }
}

/// A percentage for people: `95`, `99.9`, `12.3`.
pub fn pct(fraction: f64) -> String {
    let s = format!("{:.1}", fraction * 100.0);
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// Human form of a gate's threshold, e.g. `<= 0.02` or `<= 2.0 x old.p99_ms`.
pub fn threshold_text(c: &Condition) -> String {
    match c {
        Condition::Max(t) => format!("<= {}", num(*t)),
        Condition::Min(t) => format!(">= {}", num(*t)),
        Condition::RatioOf {
            of,
            ratio,
            confidence,
        } => match confidence {
            Some(conf) => format!("<= {ratio:.1} x {of} ({}% confidence)", pct(*conf)),
            None => format!("<= {ratio:.1} x {of}"),
        },
    }
}

/// The sample behind `m`, and what it counts; `None` when it needs no minimum.
fn sample(snap: &WindowSnapshot, m: MetricRef) -> Option<(u64, &'static str)> {
    let s = snap.scope(m.scope);
    match m.metric {
        MetricKind::Rps | MetricKind::ShedRate | MetricKind::Active => None,
        MetricKind::ProbeSuccess => Some((s.probes, "probes")),
        MetricKind::Share => Some((
            [Scope::Old, Scope::New, Scope::Fallback]
                .iter()
                .map(|x| snap.scope(*x).requests)
                .sum(),
            "requests",
        )),
        MetricKind::ErrorRate
        | MetricKind::P50Ms
        | MetricKind::P99Ms
        | MetricKind::DisplacedRate => Some((s.requests, "requests")),
        MetricKind::DroppedRate => Some((s.requests + s.dropped, "copies")),
        MetricKind::MismatchRate => Some((s.compared, "compared copies")),
    }
}

/// Why `m` cannot be judged over this window, if it cannot.
fn lacking(snap: &WindowSnapshot, m: MetricRef, min_requests: u64, window: &str) -> Option<String> {
    let (have, what) = sample(snap, m)?;
    let (need, on) = if m.metric == MetricKind::ProbeSuccess {
        (MIN_PROBES, m.scope.as_str())
    } else if m.metric == MetricKind::Share {
        (min_requests, "all envs")
    } else {
        (min_requests, m.scope.as_str())
    };
    let word = if what == "probes" {
        "probes"
    } else {
        "traffic"
    };
    (have < need).then(|| format!("not enough {word} on {on}: {have} of {need} {what} in {window}"))
}

/// Why `m`'s scope carries no traffic because the plan put none there, if so.
///
/// Absence is evidence when the plan explains it: OLD has no users at 100 %, NEW none at 0 %,
/// and FALLBACK only ever gets what an env could not answer, so with nothing displaced to it
/// in the window its emptiness is the healthy case; `mirror` carries copies only during a step
/// that mirrors, so with nothing chosen for copying it is empty by design too. `users` always carries traffic, and so do
/// OLD and NEW at any weight in between: they still need `min_requests`. Only per-request
/// metrics qualify; `share` and `probe_success` have samples of their own.
pub fn empty_by_design(snap: &WindowSnapshot, m: MetricRef, weight: Weight) -> Option<String> {
    match m.metric {
        MetricKind::ErrorRate
        | MetricKind::P50Ms
        | MetricKind::P99Ms
        | MetricKind::DisplacedRate
        | MetricKind::DroppedRate
        | MetricKind::MismatchRate => {}
        _ => return None,
    }
    match m.scope {
        Scope::Old if weight == Weight::FULL => Some("old has no users at weight 100%".into()),
        Scope::New if weight == Weight::ZERO => Some("new has no users at weight 0%".into()),
        Scope::Fallback => {
            let displaced: u64 = [Scope::Old, Scope::New]
                .iter()
                .map(|s| snap.scope(*s).displaced_to_fallback)
                .sum();
            (displaced == 0 && snap.retries == 0)
                .then(|| "nothing was displaced to fallback".to_string())
        }
        Scope::Mirror => {
            let m = snap.scope(Scope::Mirror);
            (m.requests + m.dropped + m.skipped == 0)
                .then(|| "nothing was mirrored to new".to_string())
        }
        _ => None,
    }
}

/// Judges `gate` over `snap`; `window` is the window's human form (`10s`).
///
/// `weight` is the share of users on NEW in effect: it says which scopes the plan expects to
/// carry traffic (see [`empty_by_design`]).
pub fn judge(
    gate: &Gate,
    snap: &WindowSnapshot,
    min_requests: u64,
    weight: Weight,
    window: &str,
) -> Verdict {
    let m = gate.metric;
    let value = snap.value(m);
    let mut data = Map::new();
    data.insert("gate".into(), json!(gate.name));
    data.insert("metric".into(), json!(m.to_string()));
    data.insert("value".into(), json!(value));
    data.insert("window_s".into(), json!(snap.window.as_secs_f64()));
    data.insert("requests".into(), json!(snap.scope(m.scope).requests));
    if m.metric == MetricKind::ProbeSuccess {
        data.insert("probes".into(), json!(snap.scope(m.scope).probes));
    }
    let not_enough = |text: String, data: Map<String, Value>| Verdict {
        kind: GateVerdict::NotEnoughTraffic,
        by_design: false,
        value,
        text,
        data,
    };

    let mut reads = vec![m];
    if let Condition::RatioOf { of, .. } = gate.condition {
        reads.push(of);
        data.insert("of".into(), json!(of.to_string()));
        data.insert("of_requests".into(), json!(snap.scope(of.scope).requests));
    }
    // A scope short of evidence is either lacking traffic (the gate cannot judge) or empty
    // because the plan put no traffic there (nothing to judge: the gate passes, saying so).
    let mut missing: Vec<String> = Vec::new();
    let mut empty: Vec<String> = Vec::new();
    for r in &reads {
        if let Some(why) = lacking(snap, *r, min_requests, window) {
            match empty_by_design(snap, *r, weight) {
                Some(design) => empty.push(format!("{design} ({why})")),
                None => missing.push(why),
            }
        }
    }
    if !missing.is_empty() {
        return not_enough(missing.join("; "), data);
    }
    if !empty.is_empty() {
        let text = format!("passes without traffic by design: {}", empty.join("; "));
        data.insert("by_design".into(), json!(text));
        return Verdict {
            kind: GateVerdict::Ok,
            by_design: true,
            value,
            text,
            data,
        };
    }
    let Some(v) = value else {
        return not_enough(format!("no value for {m} in {window}"), data);
    };

    let (fails, text) = match gate.condition {
        Condition::Max(t) => {
            data.insert("condition".into(), json!("max"));
            data.insert("threshold".into(), json!(t));
            let op = if v > t { ">" } else { "<=" };
            (v > t, format!("{m} = {} {op} max {}", num(v), num(t)))
        }
        Condition::Min(t) => {
            data.insert("condition".into(), json!("min"));
            data.insert("threshold".into(), json!(t));
            let op = if v < t { "<" } else { ">=" };
            (v < t, format!("{m} = {} {op} min {}", num(v), num(t)))
        }
        Condition::RatioOf {
            of,
            ratio,
            confidence,
        } => {
            let Some(other) = snap.value(of) else {
                return not_enough(format!("no value for {of} in {window}"), data);
            };
            let limit = ratio * other;
            data.insert("condition".into(), json!("ratio_of"));
            data.insert("of_value".into(), json!(other));
            data.insert("ratio".into(), json!(ratio));
            data.insert("threshold".into(), json!(limit));
            let op = if v > limit { ">" } else { "<=" };
            let base = format!(
                "{m} = {} {op} {ratio:.1} x {of} ({}) = {}",
                num(v),
                num(other),
                num(limit)
            );
            let counts = m.metric == MetricKind::ErrorRate && of.metric == MetricKind::ErrorRate;
            match confidence.filter(|_| counts) {
                Some(conf) => {
                    let (a, b) = (snap.scope(m.scope), snap.scope(of.scope));
                    match ratio_excess(a.errors, a.requests, b.errors, b.requests, ratio) {
                        Some(t) => {
                            data.insert("confidence".into(), json!(conf));
                            data.insert("z".into(), json!(t.z));
                            data.insert("p_value".into(), json!(t.p_value));
                            let sig = t.significant(conf);
                            let how = if sig {
                                "significant"
                            } else {
                                "not significant"
                            };
                            let at = pct(conf);
                            (
                                sig,
                                format!("{base}, {how} at {at}% confidence (z = {:.2})", t.z),
                            )
                        }
                        None => {
                            return not_enough(
                                format!("no requests to compare on {m} and {of}"),
                                data,
                            )
                        }
                    }
                }
                // Confidence on anything but error rates has no counts to test: plain ratio.
                None => (v > limit, base),
            }
        }
    };
    Verdict {
        kind: if fails {
            GateVerdict::Failing
        } else {
            GateVerdict::Ok
        },
        by_design: false,
        value: Some(v),
        text,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_thresholds_read_well() {
        assert_eq!(num(0.1 + 0.2), "0.30");
        assert_eq!(num(0.02), "0.020");
        assert_eq!(num(0.0049), "0.0049");
        assert_eq!(num(1234.56), "1235");
        assert_eq!(num(0.0), "0");
        assert_eq!(
            (pct(0.95), pct(0.999), pct(1.0)),
            ("95".into(), "99.9".into(), "100".into())
        );
        let of = MetricRef::parse("old.error_rate").unwrap();
        let c = Condition::RatioOf {
            of,
            ratio: 1.5,
            confidence: Some(0.95),
        };
        assert_eq!(
            threshold_text(&c),
            "<= 1.5 x old.error_rate (95% confidence)"
        );
        assert_eq!(threshold_text(&Condition::Min(0.9)), ">= 0.90");
    }
}
