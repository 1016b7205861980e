//! Unit tests of the state machine: one per transition and rejection, with small helpers.

mod commands;
mod ticks;

use std::time::Duration;

use super::*;
use crate::analyzer::{Health, Observation};
use crate::plan::{Analysis, Check, Rollback};

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn w(pct: f64) -> Weight {
    Weight::from_percent(pct)
}

pub(super) fn step(pct: f64, hold_s: u64, approval: bool, checks: bool) -> Step {
    Step {
        weight: w(pct),
        hold: secs(hold_s),
        approval,
        checks: if checks {
            vec![Check::Command {
                command: "true".into(),
                timeout: secs(5),
            }]
        } else {
            Vec::new()
        },
        mirror: Weight::ZERO,
        compare: false,
        headroom_check: true,
    }
}

pub(super) fn plan(steps: Vec<Step>, ramp_s: u64) -> Plan {
    Plan {
        name: "test".into(),
        salt: "test".into(),
        analysis: Analysis::default(),
        steps,
        gates: Vec::new(),
        rollback: Rollback { ramp: secs(ramp_s) },
        queries: Vec::new(),
    }
}

/// A three-step plan without checks: 10% 10s, 50% 10s with approval, 100% 0s.
pub(super) fn three_steps() -> Plan {
    plan(
        vec![
            step(10.0, 10, false, false),
            step(50.0, 10, true, false),
            step(100.0, 0, false, false),
        ],
        10,
    )
}

pub(super) fn start_cmd(plan: Plan) -> Command {
    Command::Start {
        plan,
        plan_hash: "abc123".into(),
        run_id: 1,
    }
}

/// Apply as `cli` without a reason; panics on rejection.
pub(super) fn ok(ctl: &Control, cmd: Command) -> Transition {
    match apply(ctl, cmd, "cli", None) {
        Ok(t) => t,
        Err(r) => panic!("rejected: {}", r.reason),
    }
}

/// Apply and expect a rejection; checks nothing changed.
pub(super) fn refused(ctl: &Control, cmd: Command) -> Rejection {
    let before = ctl.clone();
    let r = match apply(ctl, cmd, "cli", None) {
        Ok(t) => panic!("accepted: {:?}", t.event),
        Err(r) => r,
    };
    assert_eq!(*ctl, before);
    assert!(!r.reason.is_empty());
    r
}

pub(super) fn obs(health: Health) -> Observation {
    Observation {
        health,
        old_degraded: None,
        notes: Vec::new(),
    }
}

pub(super) fn healthy() -> Observation {
    obs(Health::Healthy)
}

pub(super) fn not_judged() -> Observation {
    obs(Health::NotJudged {
        reason: "not enough traffic: new has 3 of 50 requests".into(),
    })
}

pub(super) fn gate(rollback: bool) -> Observation {
    let reason = "gate 'new errors': new.error_rate 0.2 > 0.02".to_string();
    let data = serde_json::json!({ "gate": "new errors", "value": 0.2 });
    obs(if rollback {
        Health::Rollback { reason, data }
    } else {
        Health::Pause { reason, data }
    })
}

/// Tick and expect a transition.
pub(super) fn moved(ctl: &Control, dt: Duration, o: &Observation) -> Transition {
    match tick(ctl, dt, o) {
        Tick::Transition(t) => t,
        other => panic!("expected a transition, got {other:?}"),
    }
}

/// Tick and expect progress only (same state and weight).
pub(super) fn progressed(ctl: &Control, dt: Duration, o: &Observation) -> Control {
    match tick(ctl, dt, o) {
        Tick::Progress(next) => {
            assert_eq!(next.state(), ctl.state());
            assert_eq!(next.weight(), ctl.weight());
            next
        }
        other => panic!("expected progress, got {other:?}"),
    }
}

/// A control running `plan` with step 1's weight applied.
pub(super) fn running(plan: Plan) -> Control {
    let t = ok(&Control::default(), start_cmd(plan));
    match t.effects.first() {
        Some(Effect::RunChecks { step }) => {
            ok(&t.control, Command::ChecksPassed { step: *step }).control
        }
        None => t.control,
    }
}
