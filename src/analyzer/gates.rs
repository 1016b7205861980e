//! From verdicts to a decision: failure streaks, `after`, and the run's [`Health`].
//!
//! Owns: [`GateTracker`] (consecutive failures per gate) and [`evaluate`], the analyzer's one
//! entry point per tick. Pure: the window and the streaks come in, the decision goes out; the
//! caller owns the clock and persists the tracker if it wants to.
//!
//! Streak rules: a failing evaluation adds one, a passing one resets to zero, and one without
//! enough traffic does neither — a lull in traffic must neither wipe the evidence of a regression
//! nor manufacture it. A gate *acts* when it fails now and its streak has reached `after`.
//!
//! Health: Rollback if a rollback gate acts (it wins over pause) — but a rollback gate that is
//! not on NEW's own numbers becomes a Pause ("demand above capacity") while admission control
//! is shedding on an env that carries users: a herd is demand, not evidence against NEW, and a
//! rollback would push users onto a full OLD — else Pause if a pause gate acts,
//! else NotJudged if a gate could not judge or is failing but has not reached `after` yet (a step
//! must not advance on a gate that is failing), else Healthy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::judge::{judge, num, pct, threshold_text, Verdict};
use super::query::{judge_query, QueryResults};
use super::{Health, Observation};
use crate::metrics::{MetricRef, Scope, WindowSnapshot};
use crate::plan::model::{Condition, OnFail, Plan};
use crate::router::Weight;
use crate::vocab::GateVerdict;

/// Consecutive failing evaluations per gate name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateTracker {
    streaks: BTreeMap<String, u32>,
}

impl GateTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consecutive failing evaluations of `gate` so far.
    pub fn streak(&self, gate: &str) -> u32 {
        self.streaks.get(gate).copied().unwrap_or(0)
    }

    /// Forget every streak (a new run, a resume after an operator's decision).
    pub fn reset(&mut self) {
        self.streaks.clear();
    }

    /// Applies one verdict to `gate`'s streak and returns the new streak.
    fn apply(&mut self, gate: &str, kind: GateVerdict) -> u32 {
        let s = self.streaks.entry(gate.to_string()).or_insert(0);
        match kind {
            GateVerdict::Failing => *s = s.saturating_add(1),
            GateVerdict::Ok => *s = 0,
            GateVerdict::NotEnoughTraffic | GateVerdict::NoAnswer => {}
        }
        *s
    }
}

/// One gate's latest evaluation, in the analyzer's own terms (the control API's view of it is
/// built from this at the edge, `orchestrator::status`).
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    pub name: String,
    pub reads: Reads,
    pub condition: Condition,
    pub value: Option<f64>,
    pub verdict: GateVerdict,
    /// Consecutive failing evaluations so far, and how many make it act.
    pub failing_for: u32,
    pub after: u32,
    pub on_fail: OnFail,
}

/// What a gate reads: one of cutover's own metrics, or a PromQL query.
#[derive(Debug, Clone, PartialEq)]
pub enum Reads {
    Metric(MetricRef),
    Query(String),
}

impl std::fmt::Display for Reads {
    /// `new.error_rate`, or the query's text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reads::Metric(m) => m.fmt(f),
            Reads::Query(q) => f.write_str(q),
        }
    }
}

impl GateReport {
    /// Human form of the threshold, e.g. `<= 0.02` or `<= 2.0 x old.p99_ms`.
    pub fn threshold(&self) -> String {
        threshold_text(&self.condition)
    }
}

/// What one tick of the analyzer decided, and every gate's report for status and the console.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub observation: Observation,
    pub gates: Vec<GateReport>,
}

/// Human form of a window: `10s`, `1m 30s`, `500ms`.
fn window_text(snap: &WindowSnapshot) -> String {
    humantime::format_duration(snap.window).to_string()
}

/// `; displaced from new: 8 to fallback, 2 failed (10% of its requests)`, or empty.
fn displaced_text(snap: &WindowSnapshot) -> String {
    let mut out = String::new();
    for scope in [Scope::New, Scope::Old] {
        let s = snap.scope(scope);
        if s.displaced_to_fallback + s.displaced_failed > 0 {
            out.push_str(&format!(
                "; displaced from {}: {} to fallback, {} failed ({}% of its requests)",
                scope.as_str(),
                s.displaced_to_fallback,
                s.displaced_failed,
                pct(s.displaced_rate)
            ));
        }
    }
    out
}

fn displaced_data(snap: &WindowSnapshot) -> Value {
    let one = |scope: Scope| {
        let s = snap.scope(scope);
        json!({ "to_fallback": s.displaced_to_fallback, "failed": s.displaced_failed, "rate": s.displaced_rate })
    };
    json!({ "old": one(Scope::Old), "new": one(Scope::New), "users": one(Scope::Users) })
}

/// Whether `gate` is evidence against NEW itself: a gate on NEW's own numbers (its failures,
/// its latency, what it turned away), alone or compared with OLD under the same load.
fn against_new(gate: &crate::plan::model::Gate) -> bool {
    // The copies of shadow traffic are NEW's own answers too.
    matches!(gate.metric.scope, Scope::New | Scope::Mirror)
}

/// `demand above capacity: admission control is shedding on old 12/s, new 30/s` when an env
/// that carries users at `weight` is at its limit — admission control is shedding there — else
/// `None`. Then the failures users see are the herd's, not NEW's, and a rollback would push
/// users onto an OLD that is (or, with NEW shedding too, the system that is) already full.
pub fn demand_above_capacity(snap: &WindowSnapshot, weight: Weight) -> Option<String> {
    let mut carrying = Vec::new();
    if weight < Weight::FULL {
        carrying.push(Scope::Old);
    }
    if weight > Weight::ZERO {
        carrying.push(Scope::New);
    }
    let shedding: Vec<Scope> = carrying
        .into_iter()
        .filter(|s| snap.scope(*s).shed > 0)
        .collect();
    (!shedding.is_empty()).then(|| {
        let each: Vec<String> = shedding
            .iter()
            .map(|s| format!("{} {}/s", s.as_str(), num(snap.scope(*s).shed_rate)))
            .collect();
        format!(
            "demand above capacity: admission control is shedding on {}",
            each.join(", ")
        )
    })
}

/// Applies `v` to gate `name`'s streak in `tracker`, and reports the gate.
fn report(
    tracker: &mut GateTracker,
    name: &str,
    reads: Reads,
    condition: Condition,
    after: u32,
    on_fail: OnFail,
    v: &Verdict,
) -> GateReport {
    GateReport {
        name: name.to_owned(),
        reads,
        condition,
        value: v.value,
        verdict: v.kind,
        failing_for: tracker.apply(name, v.kind),
        after: after.max(1),
        on_fail,
    }
}

/// Judges every gate of `plan` over `snap`, advancing `tracker`'s streaks; query gates, if
/// the plan has any, cannot judge (no answers: see [`evaluate_with`]).
///
/// `weight` is the share of users on NEW in effect, which says where the plan expects traffic.
pub fn evaluate(
    plan: &Plan,
    snap: &WindowSnapshot,
    weight: Weight,
    tracker: &mut GateTracker,
) -> Evaluation {
    evaluate_with(plan, snap, weight, tracker, &QueryResults::default())
}

/// [`evaluate`], with Prometheus's answers to the plan's query gates.
pub fn evaluate_with(
    plan: &Plan,
    snap: &WindowSnapshot,
    weight: Weight,
    tracker: &mut GateTracker,
    queries: &QueryResults,
) -> Evaluation {
    let window = window_text(snap);
    tracker.streaks.retain(|name, _| {
        plan.gates.iter().any(|g| &g.name == name) || plan.queries.iter().any(|q| &q.name == name)
    });

    let mut views = Vec::with_capacity(plan.gates.len());
    // [rollback with evidence against NEW itself, rollback on anything else, pause]
    let mut acting: [Option<(String, Value)>; 3] = [None, None, None];
    let mut unjudged: Vec<String> = Vec::new();
    let mut old_degraded = None;
    let mut notes: Vec<String> = Vec::new();

    for gate in &plan.gates {
        let verdict = judge(gate, snap, plan.analysis.min_requests, weight, &window);
        let reads = Reads::Metric(gate.metric);
        let view = report(
            tracker,
            &gate.name,
            reads,
            gate.condition,
            gate.after,
            gate.on_fail,
            &verdict,
        );
        let (streak, after) = (view.failing_for, view.after);
        views.push(view);
        let Verdict {
            kind,
            by_design,
            text,
            mut data,
            ..
        } = verdict;
        match kind {
            GateVerdict::Ok if by_design => notes.push(format!("gate \"{}\" {text}", gate.name)),
            GateVerdict::Ok => {}
            GateVerdict::NotEnoughTraffic | GateVerdict::NoAnswer => {
                unjudged.push(format!("gate \"{}\": {text}", gate.name))
            }
            GateVerdict::Failing => {
                if gate.metric.scope == Scope::Old && old_degraded.is_none() {
                    old_degraded = Some(format!(
                        "gate \"{}\" failing: {text} over {window}",
                        gate.name
                    ));
                }
                if streak < after {
                    unjudged.push(format!(
                        "gate \"{}\" failing {streak} of {after} before it acts: {text}",
                        gate.name
                    ));
                    continue;
                }
                let slot = match gate.on_fail {
                    OnFail::Rollback if against_new(gate) => &mut acting[0],
                    OnFail::Rollback => &mut acting[1],
                    OnFail::Pause => &mut acting[2],
                };
                if slot.is_none() {
                    let reason = format!(
                        "gate \"{}\" failed {streak}x: {text} over {window}{}",
                        gate.name,
                        displaced_text(snap)
                    );
                    data.insert("after".into(), json!(after));
                    data.insert("failed_for".into(), json!(streak));
                    data.insert("on_fail".into(), json!(gate.on_fail));
                    data.insert("displaced".into(), displaced_data(snap));
                    *slot = Some((reason, Value::Object(data)));
                }
            }
        }
    }

    // Query gates: never evidence against NEW by itself (a rollback is held back in a herd, as
    // for any other scope), never a reason to call OLD degraded.
    let mut gave_up = None;
    for gate in &plan.queries {
        let judged = judge_query(gate, queries.outcomes.get(&gate.name), queries.pause_after);
        let reads = Reads::Query(gate.query.clone());
        let view = report(
            tracker,
            &gate.name,
            reads,
            gate.condition,
            gate.after,
            gate.on_fail,
            &judged.verdict,
        );
        let (streak, after) = (view.failing_for, view.after);
        views.push(view);
        let Verdict {
            kind,
            text,
            mut data,
            ..
        } = judged.verdict;
        match kind {
            GateVerdict::Ok => {}
            GateVerdict::NotEnoughTraffic | GateVerdict::NoAnswer => {
                if gave_up.is_none() {
                    gave_up = judged.give_up.map(|why| (why, Value::Object(data.clone())));
                }
                unjudged.push(format!("gate \"{}\": {text}", gate.name))
            }
            GateVerdict::Failing if streak < after => unjudged.push(format!(
                "gate \"{}\" failing {streak} of {after} before it acts: {text}",
                gate.name
            )),
            GateVerdict::Failing => {
                let slot = match gate.on_fail {
                    OnFail::Rollback => &mut acting[1],
                    OnFail::Pause => &mut acting[2],
                };
                if slot.is_none() {
                    let reason = format!("gate \"{}\" failed {streak}x: {text}", gate.name);
                    data.insert("after".into(), json!(after));
                    data.insert("failed_for".into(), json!(streak));
                    data.insert("on_fail".into(), json!(gate.on_fail));
                    *slot = Some((reason, Value::Object(data)));
                }
            }
        }
    }
    if acting[2].is_none() {
        acting[2] = gave_up;
    }

    let [rollback_new, rollback_other, pause] = acting;
    let demand = demand_above_capacity(snap, weight);
    let health = if let Some((reason, data)) = rollback_new {
        Health::Rollback { reason, data }
    } else if let Some((reason, mut data)) = rollback_other {
        match demand {
            // A herd is demand, not a fault of NEW: hold the weight rather than push users
            // back onto an OLD that is at its limit too.
            Some(why) => {
                if let Value::Object(m) = &mut data {
                    m.insert("held_not_rolled_back".into(), json!(why));
                }
                Health::Pause {
                    reason: format!(
                        "{why}: holding the weight instead of rolling users back onto an \
                         overloaded OLD (no evidence against NEW itself); {reason}"
                    ),
                    data,
                }
            }
            None => Health::Rollback { reason, data },
        }
    } else if let Some((reason, data)) = pause {
        Health::Pause { reason, data }
    } else if !unjudged.is_empty() {
        Health::NotJudged {
            reason: unjudged.join("; "),
        }
    } else {
        Health::Healthy
    };
    Evaluation {
        observation: Observation {
            health,
            old_degraded,
            notes,
        },
        gates: views,
    }
}
