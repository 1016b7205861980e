//! `plan simulate`: a plan replayed on recorded traffic through the real analyzer and machine.
//!
//! Owns: the virtual-time loop ([`simulate`]) and its output ([`Simulation`], [`Decision`]).
//! Must not touch: files, clocks, tokio — the CLI reads the plan and the traffic and prints the
//! result; time is the recorded ticks' own.
//!
//! Each recorded tick is one analysis tick: its figures, scaled to the weight the simulated run
//! is at ([`TickRecord::snapshot_at`]), go through [`analyzer::evaluate`] (the same gate
//! streaks), the headroom [`guard`], and [`machine::tick`] with the time the live driver let
//! pass at that tick when the line records it (`dt_ns`), else the time since the previous line
//! (capped as below). Commands the driver or an operator
//! would give are given at once: the run starts at the first tick, pre-step checks pass,
//! approvals are given (unless [`Approvals::None`]: then the run waits at the first one and the
//! simulation ends there). The recorded figures are what was judged over the recording's own
//! window: the plan's `window` is not re-applied, and ticks come at the recording's pace, not
//! at the plan's `interval` (a gate's `after` counts lines). A line stands for at most three
//! times the longer of the plan's interval and the line's window, so a file written at one
//! line per 30 s window serves holds at its own pace.
//!
//! What recorded traffic cannot tell is said, not guessed ([`Simulation::caveats`]): query
//! gates are left out (no Prometheus answers were recorded: judged, they would hold the run at
//! its first step), and mirror steps on traffic that holds no shadow traffic pass their mirror
//! gates without evidence, as a live run with nothing copied would.

use std::time::Duration;

use serde::Serialize;

use super::headroom::{estimate, guard, Capacity, Headroom};
use super::record::TickRecord;
use crate::analyzer::{self, GateTracker};
use crate::orchestrator::machine::{self, Command, Control, Effect, Tick, Transition};
use crate::plan::Plan;
use crate::vocab::{EventAction, RunState};

/// Whether approvals are given when a step asks for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Approvals {
    /// At once, as if an operator approved.
    #[default]
    All,
    /// Never: the run waits at the first approval.
    None,
}

/// One decision, as the live run would have logged it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Seconds since the first recorded tick.
    pub t_s: f64,
    /// The recorded tick's wall time, ms since the epoch.
    pub at_ms: u64,
    pub action: EventAction,
    pub actor: String,
    pub weight_before: f64,
    pub weight_after: f64,
    pub state: RunState,
    pub reason: String,
    /// The gate that acted, its value and its threshold, when a gate decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<serde_json::Value>,
}

/// How the simulated run ended (or stood when the traffic ran out).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndState {
    pub state: RunState,
    pub step: usize,
    pub steps: usize,
    pub weight: f64,
    pub reason: Option<String>,
    /// Seconds of traffic replayed.
    pub replayed_s: f64,
    /// Ticks replayed (of those in the traffic).
    pub ticks: usize,
    /// The last headroom estimate, when OLD declares a capacity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headroom: Option<Headroom>,
}

/// The whole replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Simulation {
    pub plan: String,
    pub decisions: Vec<Decision>,
    pub end: EndState,
    /// What this replay could not judge on this traffic, in words for the operator.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
}

struct Replay<'a> {
    plan: &'a Plan,
    control: Control,
    decisions: Vec<Decision>,
    t0: u64,
}

impl Replay<'_> {
    /// Log `t` as a decision at `at_ms` and take it; then answer its effects (checks pass).
    fn take(&mut self, t: Transition, actor: &str, at_ms: u64) {
        let data = &t.event.data;
        let gate = data.get("gate").and_then(|v| v.as_str()).map(str::to_owned);
        self.decisions.push(Decision {
            t_s: at_ms.saturating_sub(self.t0) as f64 / 1000.0,
            at_ms,
            action: t.event.action,
            actor: actor.to_owned(),
            weight_before: self.control.weight().percent(),
            weight_after: t.control.weight().percent(),
            state: t.control.state(),
            reason: t.event.reason.clone(),
            value: gate
                .as_ref()
                .and_then(|_| data.get("value"))
                .and_then(|v| v.as_f64()),
            threshold: gate.as_ref().and_then(|_| data.get("threshold")).cloned(),
            gate,
        });
        self.control = t.control;
        for effect in t.effects {
            match effect {
                Effect::RunChecks { step } => {
                    self.command(Command::ChecksPassed { step }, "simulated checks", at_ms)
                }
            }
        }
    }

    fn command(&mut self, cmd: Command, actor: &str, at_ms: u64) {
        if let Ok(t) = machine::apply(&self.control, cmd, actor, None) {
            self.take(t, actor, at_ms);
        }
    }
}

/// Replay `plan` on `traffic` (ticks in time order) with OLD's capacity `capacity`.
pub fn simulate(
    plan: &Plan,
    traffic: &[TickRecord],
    approvals: Approvals,
    capacity: &Capacity,
) -> Simulation {
    let t0 = traffic.first().map_or(0, |t| t.t_ms);
    let caveats = caveats(plan, traffic);
    // Query gates cannot be judged on recorded traffic (see `caveats`): left out.
    let without_queries;
    let plan = if plan.queries.is_empty() {
        plan
    } else {
        let mut p = plan.clone();
        p.queries.clear();
        without_queries = p;
        &without_queries
    };
    let mut r = Replay {
        plan,
        control: Control::default(),
        decisions: Vec::new(),
        t0,
    };
    r.command(
        Command::Start {
            plan: plan.clone(),
            plan_hash: "simulated".into(),
            run_id: 1,
        },
        "simulation",
        t0,
    );
    let interval = crate::plan::model::bounds::INTERVAL;
    let interval = plan.analysis.interval.clamp(interval.0, interval.1);
    let mut tracker = GateTracker::default();
    let mut last = None;
    let mut ticks = 0;
    let mut headroom = None;
    for rec in traffic {
        if !r.control.needs_ticks() {
            break;
        }
        if r.control.state() == RunState::AwaitingApproval {
            if approvals == Approvals::None {
                break;
            }
            r.command(Command::Approve, "simulated approval", rec.t_ms);
        }
        ticks += 1;
        // The driver caps a tick at three intervals; a line of a sparser file stands for the
        // window it covers, so the cap is three of whichever is longer.
        let pace = Duration::try_from_secs_f64(rec.window_s.max(0.0)).unwrap_or_default();
        let dt = match (rec.dt_ns, last) {
            (Some(ns), _) => Duration::from_nanos(ns),
            (None, None) => interval,
            (None, Some(prev)) => Duration::from_millis(rec.t_ms.saturating_sub(prev)),
        }
        .min(interval.max(pace).saturating_mul(3));
        last = Some(rec.t_ms);
        let weight = r.control.weight();
        let snap = rec.snapshot_at(weight);
        headroom = estimate(&snap, capacity);
        let observation = if r.control.is_active() {
            analyzer::evaluate(r.plan, &snap, weight, &mut tracker).observation
        } else {
            analyzer::Observation {
                health: analyzer::Health::Healthy,
                old_degraded: None,
                notes: Vec::new(),
            }
        };
        let observation = guard(&r.control, dt, headroom.as_ref(), observation);
        match machine::tick(&r.control, dt, &observation) {
            Tick::Nothing => {}
            Tick::Progress(c) => r.control = c,
            Tick::Transition(t) => r.take(t, "analyzer", rec.t_ms),
        }
    }
    let end_ms = traffic.last().map_or(t0, |t| t.t_ms);
    let c = &r.control;
    Simulation {
        plan: plan.name.clone(),
        end: EndState {
            state: c.state(),
            step: c.step(),
            steps: plan.steps.len(),
            weight: c.weight().percent(),
            reason: c.reason().map(str::to_owned),
            replayed_s: end_ms.saturating_sub(t0) as f64 / 1000.0,
            ticks,
            headroom,
        },
        decisions: r.decisions,
        caveats,
    }
}

/// What the replay of `plan` cannot judge on `traffic`.
fn caveats(plan: &Plan, traffic: &[TickRecord]) -> Vec<String> {
    let mut out = Vec::new();
    if !plan.queries.is_empty() {
        let names: Vec<String> = plan
            .queries
            .iter()
            .map(|q| format!("\"{}\"", q.name))
            .collect();
        out.push(format!(
            "query gates {} were left out: recorded traffic holds no Prometheus answers, so \
             this replay says nothing of them (a live run judges them every interval)",
            names.join(", ")
        ));
    }
    let mirroring: Vec<String> = (plan.steps.iter().enumerate())
        .filter(|(_, s)| s.mirror > crate::router::Weight::ZERO)
        .map(|(i, _)| (i + 1).to_string())
        .collect();
    let copied = traffic
        .iter()
        .any(|t| t.scopes.get("mirror").is_some_and(|m| m.requests > 0));
    if !mirroring.is_empty() && !copied {
        out.push(format!(
            "step(s) {} copy users to NEW (`mirror`), but this traffic holds no shadow traffic: \
             their mirror gates passed without evidence and say nothing of how NEW would take \
             the copies; record traffic while a mirror step runs to replay them",
            mirroring.join(", ")
        ));
    }
    out
}
