//! Ticks: what time and the analyzer's verdict do to the run.
//!
//! The driver calls [`tick`] every analysis interval with the time since the last tick (capped
//! by the driver) and the analyzer's [`Observation`]. Gates act in every active state but a
//! rollback: `Rollback` rolls back (also from `paused`), `Pause` pauses a running or
//! approval-waiting run. The hold grows only on `Healthy`; the rollback ramp only while OLD is
//! not degraded.

use std::time::Duration;

use serde_json::json;

use super::flow::{self, Moved};
use super::ramp::{ramp_weight, Ramp};
use super::{human, pct, Control, EventAction, RunState, Transition};
use crate::analyzer::{Health, Observation};
use crate::router::Weight;

/// What one tick changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    /// Nothing to persist.
    Nothing,
    /// Progress without an event (hold served grew, the status note changed, ramp time
    /// served grew without moving the weight); the weight is unchanged. Persist it.
    Progress(Control),
    /// A decision: persist, log its event, then publish the weight and run the effects.
    Transition(Transition),
}

/// Let `dt` pass with the analyzer's observation `obs`.
pub fn tick(ctl: &Control, dt: Duration, obs: &Observation) -> Tick {
    if ctl.moving.is_some() && ctl.state() != RunState::RollingBack {
        return moving(ctl, dt, obs);
    }
    match ctl.state() {
        RunState::Running => running(ctl, dt, &obs.health, &obs.notes),
        RunState::AwaitingApproval | RunState::Paused => gates_only(ctl, &obs.health),
        RunState::RollingBack => ramp(ctl, dt, obs.old_degraded.as_deref()),
        _ => Tick::Nothing,
    }
}

/// `Progress` when `next` differs from `ctl`, else `Nothing`.
fn progress(ctl: &Control, next: Control) -> Tick {
    if next == *ctl {
        Tick::Nothing
    } else {
        Tick::Progress(next)
    }
}

fn gate_rollback(ctl: &Control, reason: &str, data: &serde_json::Value) -> Tick {
    let mut next = ctl.clone();
    flow::rollback(&mut next, reason);
    let reason = format!("{reason}; {}", flow::rollback_phrase(&next));
    next.reason = Some(reason.clone());
    Tick::Transition(Transition::new(
        next,
        EventAction::Rollback,
        reason,
        data.clone(),
    ))
}

fn gate_pause(ctl: &Control, reason: &str, data: &serde_json::Value) -> Tick {
    let Some(to) = flow::resume_target(ctl) else {
        return Tick::Nothing;
    };
    let mut next = ctl.clone();
    flow::pause(&mut next, to, false);
    next.reason = Some(reason.to_string());
    Tick::Transition(Transition::new(
        next,
        EventAction::Pause,
        reason.to_string(),
        data.clone(),
    ))
}

fn gates_only(ctl: &Control, health: &Health) -> Tick {
    match health {
        Health::Rollback { reason, data } => gate_rollback(ctl, reason, data),
        Health::Pause { reason, data } if ctl.state() != RunState::Paused => {
            gate_pause(ctl, reason, data)
        }
        _ => Tick::Nothing,
    }
}

fn running(ctl: &Control, dt: Duration, health: &Health, notes: &[String]) -> Tick {
    let Some(run) = ctl.run() else {
        return Tick::Nothing;
    };
    match health {
        Health::Rollback { .. } | Health::Pause { .. } => gates_only(ctl, health),
        // Checks running: the previous weight holds, nothing to serve yet.
        _ if run.checks_pending.is_some() => Tick::Nothing,
        Health::NotJudged { reason } => {
            let mut next = ctl.clone();
            if let Some(r) = next.run.as_mut() {
                r.waiting = Some(format!("waiting: {reason}"));
            }
            progress(ctl, next)
        }
        Health::Healthy => {
            let Some(hold) = run.current_step().map(|s| s.hold) else {
                return Tick::Nothing;
            };
            let served = run.hold_served.saturating_add(dt).min(hold);
            let mut next = ctl.clone();
            // Gates that passed on an empty-by-design scope say so while the step holds.
            let judged = (!notes.is_empty()).then(|| notes.join("; "));
            if let Some(r) = next.run.as_mut() {
                r.waiting = judged
                    .as_ref()
                    .map(|n| format!("holding step {step}, healthy; {n}", step = r.step + 1));
                r.hold_served = served;
            }
            if served < hold {
                return progress(ctl, next);
            }
            let step = ctl.step();
            let Moved {
                action,
                phrase,
                effects,
            } = flow::after_hold(&mut next);
            let reason = match &judged {
                Some(n) => format!("step {step} held {} healthy ({n}); {phrase}", human(hold)),
                None => format!("step {step} held {} healthy; {phrase}", human(hold)),
            };
            next.reason = Some(reason.clone());
            let data = json!({ "step": step, "hold_s": hold.as_secs_f64() });
            Tick::Transition(Transition::new(next, action, reason, data).with_effects(effects))
        }
    }
}

fn ramp(ctl: &Control, dt: Duration, old_degraded: Option<&str>) -> Tick {
    let mut next = ctl.clone();
    let from_weight = ctl.weight();
    let Some(run) = next.run.as_mut() else {
        return Tick::Nothing;
    };
    if let Some(why) = old_degraded {
        run.waiting = Some(format!("rollback ramp holding: OLD degraded: {why}"));
        return progress(ctl, next);
    }
    run.waiting = None;
    let len = run.plan.rollback.ramp;
    let ramp = run
        .ramp
        .get_or_insert_with(|| Ramp::new(from_weight, "rollback".to_string()));
    ramp.elapsed = ramp.elapsed.saturating_add(dt).min(len);
    // Never up: the ramp only lowers the weight (min guards a hand-edited store).
    let weight = ramp_weight(ramp.from, ramp.elapsed, len).min(from_weight);
    let data = json!({
        "from_weight": from_weight.percent(),
        "weight": weight.percent(),
        "elapsed_s": ramp.elapsed.as_secs_f64(),
        "ramp_s": len.as_secs_f64(),
    });
    if weight == Weight::ZERO {
        let cause = ramp.cause.clone();
        run.state = RunState::RolledBack;
        next.weight = Weight::ZERO;
        let reason = format!("rolled back: all users back on OLD (weight 0%); cause: {cause}");
        next.reason = Some(reason.clone());
        return Tick::Transition(Transition::new(next, EventAction::RolledBack, reason, data));
    }
    if weight == from_weight {
        return progress(ctl, next);
    }
    next.weight = weight;
    let reason = format!("rollback ramp {} → {}", pct(from_weight), pct(weight));
    Tick::Transition(Transition::new(next, EventAction::Ramp, reason, data))
}

/// A weight move in progress: gates still act on an active run (a pause holds the weight where
/// it is, a rollback takes over); otherwise the weight walks on towards the target at its pace,
/// holding while it moves users onto an OLD that is degraded. The step's hold does not grow
/// until the move ends.
fn moving(ctl: &Control, dt: Duration, obs: &Observation) -> Tick {
    match (&obs.health, ctl.state()) {
        (Health::Rollback { reason, data }, s) if s.is_active() => {
            return gate_rollback(ctl, reason, data)
        }
        (Health::Pause { reason, data }, RunState::Running | RunState::AwaitingApproval) => {
            return gate_pause(ctl, reason, data)
        }
        _ => {}
    }
    let mut next = ctl.clone();
    let before = ctl.weight();
    let Some(mv) = next.moving.as_mut() else {
        return Tick::Nothing;
    };
    let towards_old = mv.to < mv.from;
    if let (true, Some(why)) = (towards_old, obs.old_degraded.as_deref()) {
        let note = format!(
            "weight move holding at {}: OLD degraded: {why}",
            pct(before)
        );
        if let Some(run) = next.run.as_mut() {
            run.waiting = Some(note);
        }
        return progress(ctl, next);
    }
    mv.elapsed = mv.elapsed.saturating_add(dt).min(mv.over);
    let weight = mv.weight();
    let data = json!({
        "from_weight": before.percent(),
        "weight": weight.percent(),
        "move_from": mv.from.percent(),
        "move_to": mv.to.percent(),
        "elapsed_s": mv.elapsed.as_secs_f64(),
        "over_s": mv.over.as_secs_f64(),
    });
    let why = mv.why.clone();
    let done = weight == mv.to;
    if done {
        next.moving = None;
    }
    if let Some(run) = next.run.as_mut() {
        run.waiting = None;
    }
    if weight == before && !done {
        return progress(ctl, next);
    }
    next.weight = weight;
    let reason = if done {
        format!("{why}: weight {} reached", pct(weight))
    } else {
        format!("{why}: ramp {} → {}", pct(before), pct(weight))
    };
    if done {
        next.reason = Some(reason.clone());
    }
    Tick::Transition(Transition::new(next, EventAction::Ramp, reason, data))
}
