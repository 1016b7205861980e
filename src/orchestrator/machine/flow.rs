//! Moves shared by commands and ticks: entering a step, advancing, pausing, rolling back.
//!
//! Each works on a `Control` the caller already cloned; none decides whether the move is
//! allowed (the callers do) and none builds events (the callers word them).

use std::time::Duration;

use super::ramp::ramp_weight;
use super::{pct, Control, Effect, EventAction, Move, Ramp, Resume, ResumeTo, RunState};
use crate::plan::Rollback;
use crate::router::Weight;

/// The pace of every move the machine makes other than a plan's own step: the run's
/// `[rollback] ramp` (the documented default, 30s, when the plan has none or there is no run).
pub(super) fn pace(ctl: &Control) -> Duration {
    ctl.run
        .as_ref()
        .map_or_else(|| Rollback::default().ramp, |r| r.plan.rollback.ramp)
}

/// Bring the weight to the current step's: at once when users are on the previous step's
/// weight (the plan's own step, or step 1 from 0 %), else ramped at [`pace`] from the weight
/// users are on now. Returns a phrase: `at 25%` or `ramping 40% → 10% over 30s`.
pub(super) fn apply_step_weight(ctl: &mut Control, why: &str) -> String {
    let over = pace(ctl);
    let Some(run) = ctl.run.as_ref() else {
        return String::new();
    };
    let Some(target) = run.step_weight() else {
        return String::new();
    };
    let previous = match run.step {
        0 => Weight::ZERO,
        i => run.plan.steps.get(i - 1).map_or(Weight::ZERO, |s| s.weight),
    };
    let now = ctl.weight;
    if now == target || now == previous || over.is_zero() {
        ctl.moving = None;
        ctl.weight = target;
        return format!("at {}", pct(target));
    }
    ctl.moving = Some(Move::new(now, target, over, why.to_string()));
    format!(
        "ramping {} → {} over {}",
        pct(now),
        pct(target),
        super::human(over)
    )
}

/// Enter the current step (`run.step`): its checks first, or its weight at once when it has
/// none. Returns the effects and a phrase saying which, e.g. `step 2 at 25%`.
pub(super) fn enter_step(ctl: &mut Control) -> (Vec<Effect>, String) {
    let Some(run) = ctl.run.as_mut() else {
        return (Vec::new(), String::new());
    };
    run.state = RunState::Running;
    run.paused = None;
    run.waiting = None;
    run.hold_served = Duration::ZERO;
    let index = run.step;
    let n = index + 1;
    let (has_checks, weight) = match run.current_step() {
        Some(step) => (!step.checks.is_empty(), step.weight),
        None => return (Vec::new(), format!("step {n} is not in the plan")),
    };
    if has_checks {
        run.checks_pending = Some(index);
        ctl.moving = None;
        (
            vec![Effect::RunChecks { step: index }],
            format!("step {n}: running pre-step checks before {}", pct(weight)),
        )
    } else {
        run.checks_pending = None;
        let how = apply_step_weight(ctl, &format!("step {n}'s {}", pct(weight)));
        (Vec::new(), format!("step {n} {how}"))
    }
}

/// What the hold of the current step led to.
pub(super) struct Moved {
    pub action: EventAction,
    pub phrase: String,
    pub effects: Vec<Effect>,
}

/// The next step (checks first), or `completed` at the last step's weight after the last one.
pub(super) fn next_or_complete(ctl: &mut Control) -> Moved {
    let Some(run) = ctl.run.as_mut() else {
        return Moved {
            action: EventAction::Advance,
            phrase: String::new(),
            effects: Vec::new(),
        };
    };
    run.waiting = None;
    run.paused = None;
    run.checks_pending = None;
    if run.is_last_step() {
        run.state = RunState::Completed;
        if let Some(w) = run.step_weight() {
            ctl.weight = w;
        }
        return Moved {
            action: EventAction::Complete,
            phrase: format!("run completed at {}", pct(ctl.weight)),
            effects: Vec::new(),
        };
    }
    run.step += 1;
    let (effects, phrase) = enter_step(ctl);
    Moved {
        action: EventAction::Advance,
        phrase,
        effects,
    }
}

/// After a served hold: wait for approval when the step asks for it, else move on.
pub(super) fn after_hold(ctl: &mut Control) -> Moved {
    let approval = ctl
        .run
        .as_ref()
        .and_then(|r| r.current_step())
        .is_some_and(|s| s.approval);
    match ctl.run.as_mut() {
        Some(run) if approval => {
            run.state = RunState::AwaitingApproval;
            run.waiting = None;
            Moved {
                action: EventAction::AwaitApproval,
                phrase: format!(
                    "waiting for an operator's approve before leaving step {}",
                    run.step + 1
                ),
                effects: Vec::new(),
            }
        }
        _ => next_or_complete(ctl),
    }
}

/// What `resume` would go back to if the run were paused now (None when not active).
pub(super) fn resume_target(ctl: &Control) -> Option<ResumeTo> {
    let run = ctl.run.as_ref()?;
    match run.state {
        RunState::Running if run.checks_pending.is_some() => Some(ResumeTo::Checks),
        RunState::Running => Some(ResumeTo::Hold),
        RunState::AwaitingApproval => Some(ResumeTo::Approval),
        RunState::RollingBack => Some(ResumeTo::Rollback),
        RunState::Paused => run.paused.map(|p| p.to),
        _ => None,
    }
}

/// Pause the run; `resume` goes back to `to`. Pending checks are dropped (re-run on resume).
pub(super) fn pause(ctl: &mut Control, to: ResumeTo, reapply_weight: bool) {
    // A pause holds the weight where users are now; resuming ramps on from there.
    ctl.moving = None;
    if let Some(run) = ctl.run.as_mut() {
        run.state = RunState::Paused;
        run.checks_pending = None;
        run.waiting = None;
        run.paused = Some(Resume { to, reapply_weight });
    }
}

/// Enter (or continue) the rollback: `rolling_back` from the weight in effect, or straight to
/// `rolled_back` at weight 0 for a zero ramp or a weight already at 0. An unfinished ramp of
/// this run is continued; otherwise a new one starts from the weight in effect.
pub(super) fn rollback(ctl: &mut Control, cause: &str) {
    let weight = ctl.weight;
    ctl.moving = None;
    let Some(run) = ctl.run.as_mut() else {
        return;
    };
    run.checks_pending = None;
    run.paused = None;
    run.waiting = None;
    // Continue an unfinished ramp only from where it left users; a weight moved since (by
    // hand, or a completed or aborted run) starts a fresh ramp from the weight users are on.
    let continues = run
        .ramp
        .as_ref()
        .is_some_and(|r| ramp_weight(r.from, r.elapsed, run.plan.rollback.ramp) == weight);
    if !continues {
        let cause = run
            .ramp
            .as_ref()
            .filter(|_| run.state.is_active())
            .map_or_else(|| cause.to_string(), |r| r.cause.clone());
        run.ramp = Some(Ramp::new(weight, cause));
    }
    if run.plan.rollback.ramp.is_zero() || weight == Weight::ZERO {
        run.state = RunState::RolledBack;
        ctl.weight = Weight::ZERO;
    } else {
        run.state = RunState::RollingBack;
    }
}

/// End of the rollback phrase for an event: where it stands after [`rollback`].
pub(super) fn rollback_phrase(ctl: &Control) -> String {
    let ramp = ctl
        .run
        .as_ref()
        .map(|r| r.plan.rollback.ramp)
        .unwrap_or_default();
    match ctl.state() {
        RunState::RolledBack => "all users back on OLD (weight 0%)".to_string(),
        _ => format!(
            "ramping {} to 0% over {}",
            pct(ctl.weight),
            super::human(ramp)
        ),
    }
}
