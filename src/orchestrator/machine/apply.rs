//! Commands: what an operator (or the driver's check results) may do in each state.
//!
//! Every accepted command yields one [`Transition`] with exactly one event named after the
//! command ([`Command::action`]); the operator's reason, when given, ends the event's reason.
//! A command the state does not allow yields a [`Rejection`] and no new state.

use serde_json::json;

use super::flow::{self, Moved};
use super::{pct, Command, Control, EventAction, Rejection, ResumeTo, Run, RunState, Transition};
use crate::plan::Plan;
use crate::router::Weight;

/// Who asked and why, for event reasons.
struct Who<'a> {
    actor: &'a str,
    note: Option<&'a str>,
}

impl Who<'_> {
    /// `"{what} by {actor}"`, then `": {note}"` when the operator gave a reason.
    fn by(&self, what: &str) -> String {
        match self.note {
            Some(note) => format!("{what} by {}: {note}", self.actor),
            None => format!("{what} by {}", self.actor),
        }
    }

    /// `what`, then `" ({actor}: {note})"` when the operator gave a reason.
    fn noted(&self, what: String) -> String {
        match self.note {
            Some(note) => format!("{what} ({}: {note})", self.actor),
            None => what,
        }
    }
}

/// Apply `cmd` from `actor` (with the operator's optional `reason`) to `ctl`.
pub fn apply(
    ctl: &Control,
    cmd: Command,
    actor: &str,
    reason: Option<&str>,
) -> Result<Transition, Rejection> {
    let who = Who {
        actor,
        note: reason.map(str::trim).filter(|r| !r.is_empty()),
    };
    match cmd {
        Command::Start {
            plan,
            plan_hash,
            run_id,
        } => start(ctl, plan, plan_hash, run_id, &who),
        Command::Pause => pause(ctl, &who),
        Command::Resume => resume(ctl, &who),
        Command::Approve => approve(ctl, &who),
        Command::Rollback => rollback(ctl, &who),
        Command::Abort => abort(ctl, &who),
        Command::SetWeight(w) => set_weight(ctl, Weight::from_bp(w.bp()), None, &who),
        Command::RampWeight { weight, over } => {
            set_weight(ctl, Weight::from_bp(weight.bp()), Some(over), &who)
        }
        Command::ChecksPassed { step } => checks_passed(ctl, step, &who),
        Command::ChecksFailed { step, output } => checks_failed(ctl, step, &output, &who),
    }
}

/// "run 3 is completed" / "no run has been started".
fn describe(ctl: &Control) -> String {
    match ctl.run() {
        Some(run) => format!("run {} is {}", run.id, run.state),
        None => "no run has been started".to_string(),
    }
}

fn not_active(ctl: &Control, what: &str) -> Rejection {
    Rejection::new(format!("nothing to {what}: {}", describe(ctl)))
}

fn start(
    ctl: &Control,
    plan: Plan,
    plan_hash: String,
    run_id: u64,
    who: &Who,
) -> Result<Transition, Rejection> {
    if ctl.is_active() {
        return Err(Rejection::new(format!(
            "{}; one run at a time (abort or roll it back first)",
            describe(ctl)
        )));
    }
    if plan.steps.is_empty() {
        return Err(Rejection::new("the plan has no steps"));
    }
    let data = json!({ "plan": plan.name, "plan_hash": plan_hash, "steps": plan.steps.len() });
    let name = plan.name.clone();
    let mut next = ctl.clone();
    next.run = Some(Run {
        id: run_id,
        plan,
        plan_hash,
        state: RunState::Running,
        step: 0,
        checks_pending: None,
        hold_served: std::time::Duration::ZERO,
        paused: None,
        ramp: None,
        waiting: None,
    });
    let (effects, phrase) = flow::enter_step(&mut next);
    let reason = format!(
        "{}; {phrase}",
        who.by(&format!("run {run_id} of plan '{name}' started"))
    );
    next.reason = Some(reason.clone());
    Ok(Transition::new(next, EventAction::Start, reason, data).with_effects(effects))
}

fn pause(ctl: &Control, who: &Who) -> Result<Transition, Rejection> {
    if ctl.state() == RunState::Paused {
        return Err(Rejection::new("the run is already paused"));
    }
    let Some(to) = flow::resume_target(ctl) else {
        return Err(not_active(ctl, "pause"));
    };
    let mut next = ctl.clone();
    flow::pause(&mut next, to, false);
    let reason = who.by("paused");
    next.reason = Some(reason.clone());
    Ok(Transition::new(
        next,
        EventAction::Pause,
        reason,
        json!({ "resume_to": to }),
    ))
}

fn resume(ctl: &Control, who: &Who) -> Result<Transition, Rejection> {
    let Some(paused) = ctl.run().and_then(|r| r.paused) else {
        return Err(Rejection::new(match ctl.is_active() {
            true => format!("{}; only a paused run can be resumed", describe(ctl)),
            false => format!("nothing to resume: {}", describe(ctl)),
        }));
    };
    let mut next = ctl.clone();
    let mut effects = Vec::new();
    let phrase = match paused.to {
        ResumeTo::Checks => {
            let (fx, phrase) = flow::enter_step(&mut next);
            effects = fx;
            phrase
        }
        ResumeTo::Hold | ResumeTo::Approval => {
            if let Some(run) = next.run.as_mut() {
                run.paused = None;
                run.state = match paused.to {
                    ResumeTo::Hold => RunState::Running,
                    _ => RunState::AwaitingApproval,
                };
            }
            let what = match paused.to {
                ResumeTo::Hold => "holding",
                _ => "awaiting approval at",
            };
            let n = next.step();
            // A manual move ends here. Back to the step's weight from wherever users are
            // now, at the plan's pace.
            next.moving = None;
            let target = next.run.as_ref().and_then(|r| r.step_weight());
            match target {
                Some(t) if t != next.weight => {
                    let over = flow::pace(&next);
                    let from = next.weight;
                    if over.is_zero() {
                        next.weight = t;
                        format!("{what} step {n} at {}", pct(t))
                    } else {
                        let why = format!("resume to step {n}'s {}", pct(t));
                        next.moving = Some(super::Move::new(from, t, over, why));
                        format!(
                            "{what} step {n}: ramping {} → {} over {}",
                            pct(from),
                            pct(t),
                            super::human(over)
                        )
                    }
                }
                _ => format!("{what} step {n} at {}", pct(next.weight)),
            }
        }
        ResumeTo::Rollback => {
            flow::rollback(&mut next, &who.by("rollback resumed"));
            flow::rollback_phrase(&next)
        }
    };
    let reason = format!("{}; {phrase}", who.by("resumed"));
    next.reason = Some(reason.clone());
    Ok(Transition::new(
        next,
        EventAction::Resume,
        reason,
        json!({ "resume_to": paused.to }),
    )
    .with_effects(effects))
}

fn approve(ctl: &Control, who: &Who) -> Result<Transition, Rejection> {
    if ctl.state() != RunState::AwaitingApproval {
        return Err(Rejection::new(format!(
            "{}; approve is only for a run awaiting approval",
            describe(ctl)
        )));
    }
    let step = ctl.step();
    let mut next = ctl.clone();
    let Moved {
        phrase, effects, ..
    } = flow::next_or_complete(&mut next);
    let reason = format!("{}; {phrase}", who.by(&format!("step {step} approved")));
    next.reason = Some(reason.clone());
    Ok(
        Transition::new(next, EventAction::Approve, reason, json!({ "step": step }))
            .with_effects(effects),
    )
}

fn rollback(ctl: &Control, who: &Who) -> Result<Transition, Rejection> {
    match ctl.state() {
        RunState::Running | RunState::Paused | RunState::AwaitingApproval => {}
        RunState::RollingBack => return Err(Rejection::new("the run is already rolling back")),
        // After abort or completion (or a manual weight after a rollback): return to OLD,
        // ramped like any rollback.
        RunState::Aborted | RunState::Completed | RunState::RolledBack
            if ctl.weight() > Weight::ZERO => {}
        RunState::Aborted | RunState::Completed | RunState::RolledBack => {
            return Err(Rejection::new(format!(
                "{}; every user is already on OLD (weight 0%)",
                describe(ctl)
            )))
        }
        RunState::Idle => return Err(not_active(ctl, "roll back")),
    }
    let mut next = ctl.clone();
    let cause = match ctl.state() {
        RunState::Aborted | RunState::Completed | RunState::RolledBack => {
            who.by(&format!("return to OLD after the run {}", ctl.state()))
        }
        _ => who.by("rollback"),
    };
    flow::rollback(&mut next, &cause);
    let reason = format!("{cause}; {}", flow::rollback_phrase(&next));
    next.reason = Some(reason.clone());
    let data = json!({ "from_weight": ctl.weight().percent() });
    Ok(Transition::new(next, EventAction::Rollback, reason, data))
}

fn abort(ctl: &Control, who: &Who) -> Result<Transition, Rejection> {
    if !ctl.is_active() {
        return Err(not_active(ctl, "abort"));
    }
    let mut next = ctl.clone();
    next.moving = None;
    if let Some(run) = next.run.as_mut() {
        run.state = RunState::Aborted;
        run.checks_pending = None;
        run.paused = None;
        run.waiting = None;
    }
    let reason = format!(
        "{}; weight stays at {} (manual control: set-weight)",
        who.by("aborted"),
        pct(next.weight)
    );
    next.reason = Some(reason.clone());
    Ok(Transition::new(
        next,
        EventAction::Abort,
        reason,
        serde_json::Value::Null,
    ))
}

/// The operator's override: at once, or over `ramp` (`set-weight 0 --ramp 2m`). During a run it
/// pauses the run (a paused rollback resumes with a fresh ramp from the weight users are on).
fn set_weight(
    ctl: &Control,
    weight: Weight,
    ramp: Option<std::time::Duration>,
    who: &Who,
) -> Result<Transition, Rejection> {
    let mut next = ctl.clone();
    if let Some(to) = flow::resume_target(ctl) {
        flow::pause(&mut next, to, true);
    }
    let ramp = ramp.filter(|r| !r.is_zero() && weight != ctl.weight());
    let mut reason = match ramp {
        Some(over) => {
            let why = format!("manual weight {}", pct(weight));
            next.moving = Some(super::Move::new(ctl.weight(), weight, over, why));
            who.by(&format!(
                "manual weight {}, ramping from {} over {}",
                pct(weight),
                pct(ctl.weight()),
                super::human(over)
            ))
        }
        None => {
            next.moving = None;
            next.weight = weight;
            who.by(&format!("manual weight {}", pct(weight)))
        }
    };
    if flow::resume_target(ctl).is_some() {
        reason.push_str("; run paused");
    }
    next.reason = Some(reason.clone());
    let data = json!({
        "from_weight": ctl.weight().percent(),
        "weight": weight.percent(),
        "ramp_s": ramp.map(|r| r.as_secs_f64()),
    });
    Ok(Transition::new(next, EventAction::Weight, reason, data))
}

/// The step's checks are the ones awaited, else a rejection naming why the result is stale.
fn expect_checks(ctl: &Control, step: usize) -> Result<(), Rejection> {
    match ctl.run() {
        Some(run) if run.state == RunState::Running && run.checks_pending == Some(step) => Ok(()),
        _ => Err(Rejection::new(format!(
            "no pre-step checks pending for step {} ({}); stale result ignored",
            step + 1,
            describe(ctl)
        ))),
    }
}

fn checks_passed(ctl: &Control, step: usize, who: &Who) -> Result<Transition, Rejection> {
    expect_checks(ctl, step)?;
    let mut next = ctl.clone();
    let mut target = next.weight;
    if let Some(run) = next.run.as_mut() {
        run.checks_pending = None;
        run.hold_served = std::time::Duration::ZERO;
        target = run.step_weight().unwrap_or(target);
    }
    let how = flow::apply_step_weight(&mut next, &format!("step {}'s {}", step + 1, pct(target)));
    let reason = who.noted(format!(
        "pre-step checks passed for step {}; weight {how}",
        step + 1
    ));
    next.reason = Some(reason.clone());
    Ok(Transition::new(
        next,
        EventAction::ChecksPassed,
        reason,
        json!({ "step": step + 1 }),
    ))
}

fn checks_failed(
    ctl: &Control,
    step: usize,
    output: &str,
    who: &Who,
) -> Result<Transition, Rejection> {
    expect_checks(ctl, step)?;
    let mut next = ctl.clone();
    flow::pause(&mut next, ResumeTo::Checks, false);
    let reason = who.noted(format!("pre-step check failed: {}", output.trim()));
    next.reason = Some(reason.clone());
    let data = json!({ "step": step + 1, "output": output });
    Ok(Transition::new(
        next,
        EventAction::ChecksFailed,
        reason,
        data,
    ))
}
