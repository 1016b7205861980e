//! The run's pure state machine: what a command or an analyzer verdict does to the run.
//!
//! Owns: [`Control`] (the whole persisted orchestrator state: the current or last run and the
//! routing weight in effect), [`apply`] for operator and driver commands, [`tick`] for the
//! passage of time and the analyzer's [`Observation`](crate::analyzer::Observation).
//! Must not touch: clocks, the store, the router, tokio. Time enters only as the `dt` argument of [`tick`]; the driver persists each
//! returned [`Control`] (JSON in sled, flushed) and only then publishes
//! [`Control::weight`] to the router and runs the [`Effect`]s.
//!
//! Why it is built this way: every decision is a plain function from (state, input) to
//! (new state, one event, effects), so each rule is unit-testable and the invariants are
//! property-tested over random sequences. Inputs are taken by reference and a rejected command
//! returns only a [`Rejection`], so "a refused action changes nothing" holds by construction.
//! [`Control`] stores durations served (hold, ramp progress), never instants, so a restarted
//! driver continues at the same state, step, weight and hold progress.
//!
//! Choices worth knowing:
//! - Step indices in [`Command::ChecksPassed`], [`Command::ChecksFailed`] and
//!   [`Effect::RunChecks`] are 0-based (`plan.steps[i]`); [`Control::step`] is 1-based.
//! - A step without checks gets its weight in the same transition that enters it (no
//!   `RunChecks` effect, no `checks_passed` event). A step with checks keeps the previous weight
//!   until `ChecksPassed` for that step arrives; a result for a step whose checks are no longer
//!   pending (the run was paused, rolled back or aborted meanwhile) is rejected as stale, and
//!   resuming re-runs the checks.
//! - `Start` keeps the weight in effect (0, or whatever a manual weight or the last run left)
//!   until step 1's weight is applied. A pause (manual or gate) while checks run drops them:
//!   the driver's late answer is a stale `Rejection` (log it, nothing changed).
//! - The hold only grows on `Healthy` ticks (capped at the hold); at most one step is taken per
//!   tick and leftover time is not carried into the next step. A zero hold still needs one
//!   healthy verdict at the step's weight.
//! - `completed` is reached only after the last step's hold (and approval); its weight is the
//!   last step's weight (100 % for a plan that ends at 100 %; a plan ending lower completes
//!   there — the machine never moves users beyond what the plan says).
//! - A rollback ramps from the weight in effect to 0 over `plan.rollback.ramp`; the weight is
//!   `from × (1 − elapsed / ramp)`, so the rate is constant and every tick that changes the
//!   weight is a `ramp` transition. `obs.old_degraded` holds the ramp (no elapsed time); a
//!   zero ramp (or weight already 0) ends at 0 at once, `old_degraded` notwithstanding.
//!   Pause/rollback verdicts are ignored while rolling back.
//! - Pace: apart from a plan's own step (step N entered from step N−1's weight, step 1 from
//!   0 %) and an immediate `SetWeight`, every weight move is a [`Move`] in [`Control`] that
//!   walks from the weight in effect to its target over the plan's `rollback.ramp` (the default
//!   when there is no run): `Resume` back to the step's weight, `Start` from a weight the plan
//!   did not set, `RampWeight` (the operator's `set-weight --ramp`). Ticks advance it (a `ramp`
//!   event per weight change) in any state, also after the run ended; the hold does not grow
//!   during it; a pause (manual or gate) stops it where users are; a move towards OLD holds
//!   while OLD is degraded.
//! - `abort` leaves the weight where it is: the operator takes manual control with
//!   `SetWeight`, which with no active run just sets the weight. `Rollback` is accepted after
//!   `abort`, `completed` (and a manual weight after `rolled_back`) as "return to OLD", ramped.
//! - `SetWeight` during an active run pauses it at that weight. Resuming ramps back to the
//!   step's weight (hold served is kept); for a paused rollback, resuming starts a fresh ramp
//!   from the weight users are on.

mod apply;
mod flow;
mod ramp;
mod tick;

#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::{Plan, Step};
use crate::router::Weight;
use crate::vocab::{EventAction, RunState};

pub use apply::apply;
pub use ramp::{move_weight, ramp_weight, Move, Ramp};
pub use tick::{tick, Tick};

/// The whole persisted orchestrator state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Control {
    weight: Weight,
    /// Why the last decision (automatic or manual) was taken.
    reason: Option<String>,
    run: Option<Run>,
    /// A weight move in progress (see [`Move`]); `None` when the weight is where it should be.
    #[serde(default)]
    moving: Option<Move>,
}

impl Control {
    /// The weight move in progress, if any.
    pub fn moving(&self) -> Option<&Move> {
        self.moving.as_ref()
    }

    /// True when ticks have work to do: an active run, or a weight move in progress.
    pub fn needs_ticks(&self) -> bool {
        self.is_active() || self.moving.is_some()
    }

    /// `Idle` when no run was ever started, else the current (or last) run's state.
    pub fn state(&self) -> RunState {
        self.run.as_ref().map_or(RunState::Idle, |r| r.state)
    }

    /// The routing weight in effect (share of users on NEW).
    pub fn weight(&self) -> Weight {
        self.weight
    }

    /// The current or last run.
    pub fn run(&self) -> Option<&Run> {
        self.run.as_ref()
    }

    /// What the status shows as the reason: a waiting note ("waiting: not enough traffic ...",
    /// "rollback ramp holding: ...") while there is one, else the last decision's reason.
    pub fn reason(&self) -> Option<&str> {
        self.run
            .as_ref()
            .and_then(|r| r.waiting.as_deref())
            .or(self.reason.as_deref())
    }

    /// Current step, 1-based; 0 when there is no run.
    pub fn step(&self) -> usize {
        self.run.as_ref().map_or(0, |r| r.step + 1)
    }

    /// Hold still to serve at the current step, when the run is holding (running with the
    /// step's weight applied, or paused from there).
    pub fn hold_remaining(&self) -> Option<Duration> {
        let run = self.run.as_ref()?;
        let holding = match run.state {
            RunState::Running => run.checks_pending.is_none() && self.moving.is_none(),
            RunState::Paused => run.paused.is_some_and(|p| p.to == ResumeTo::Hold),
            _ => false,
        };
        if !holding {
            return None;
        }
        let hold = run.current_step()?.hold;
        Some(hold.saturating_sub(run.hold_served))
    }

    /// True while a run holds the one active-run slot.
    pub fn is_active(&self) -> bool {
        self.state().is_active()
    }
}

/// One run of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    id: u64,
    plan: Plan,
    plan_hash: String,
    state: RunState,
    /// 0-based index into `plan.steps`.
    step: usize,
    /// The step whose pre-step checks are running (only while `running`).
    checks_pending: Option<usize>,
    /// Healthy time served at the current step's weight.
    hold_served: Duration,
    /// What `resume` goes back to (only while `paused`).
    paused: Option<Resume>,
    /// Rollback progress (from the first rollback of this run on).
    ramp: Option<Ramp>,
    /// A transient note that overrides the reason in status while it lasts.
    waiting: Option<String>,
}

impl Run {
    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    pub fn plan_hash(&self) -> &str {
        &self.plan_hash
    }
    pub fn state(&self) -> RunState {
        self.state
    }
    /// 0-based index of the current step.
    pub fn step_index(&self) -> usize {
        self.step
    }
    /// 0-based index of the step whose checks are awaited.
    pub fn checks_pending(&self) -> Option<usize> {
        self.checks_pending
    }
    pub fn hold_served(&self) -> Duration {
        self.hold_served
    }
    /// What `resume` goes back to, while paused.
    pub fn resume_to(&self) -> Option<Resume> {
        self.paused
    }
    pub fn ramp(&self) -> Option<&Ramp> {
        self.ramp.as_ref()
    }

    fn current_step(&self) -> Option<&Step> {
        self.plan.steps.get(self.step)
    }

    fn step_weight(&self) -> Option<Weight> {
        self.current_step().map(|s| s.weight)
    }

    fn is_last_step(&self) -> bool {
        self.step + 1 >= self.plan.steps.len()
    }
}

/// Where a paused run goes back to on `resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub to: ResumeTo,
    /// The pause came from a manual weight: resuming re-applies the step's weight.
    pub reapply_weight: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeTo {
    /// Re-run the current step's pre-step checks.
    Checks,
    /// Continue serving the current step's hold.
    Hold,
    /// Wait for approve again.
    Approval,
    /// Continue the rollback ramp.
    Rollback,
}

/// What an operator (or the driver, for check results) asks of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Start {
        plan: Plan,
        plan_hash: String,
        run_id: u64,
    },
    Pause,
    Resume,
    Approve,
    Rollback,
    Abort,
    SetWeight(Weight),
    /// Move the weight to `weight` over `over` (the operator's ramped override; pauses a run
    /// like `SetWeight`).
    RampWeight {
        weight: Weight,
        over: Duration,
    },
    /// Pre-step checks of `plan.steps[step]` passed.
    ChecksPassed {
        step: usize,
    },
    /// Pre-step checks of `plan.steps[step]` failed.
    ChecksFailed {
        step: usize,
        output: String,
    },
}

impl Command {
    /// The event action an accepted command is logged as.
    pub fn action(&self) -> EventAction {
        match self {
            Command::Start { .. } => EventAction::Start,
            Command::Pause => EventAction::Pause,
            Command::Resume => EventAction::Resume,
            Command::Approve => EventAction::Approve,
            Command::Rollback => EventAction::Rollback,
            Command::Abort => EventAction::Abort,
            Command::SetWeight(_) | Command::RampWeight { .. } => EventAction::Weight,
            Command::ChecksPassed { .. } => EventAction::ChecksPassed,
            Command::ChecksFailed { .. } => EventAction::ChecksFailed,
        }
    }
}

/// The current state does not allow the command; nothing changed (the API answers 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    pub reason: String,
}

impl Rejection {
    fn new(reason: impl Into<String>) -> Self {
        Rejection {
            reason: reason.into(),
        }
    }
}

/// A change to persist, log and act on: exactly one event per transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The new state; its weight is what the driver publishes after the store flush.
    pub control: Control,
    pub event: EventDraft,
    pub effects: Vec<Effect>,
}

/// An event without the parts the driver adds (id, time, actor, run id, state, weight).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDraft {
    pub action: EventAction,
    pub reason: String,
    pub data: serde_json::Value,
}

/// Work the driver does after persisting a transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Run `plan.steps[step].checks` and answer with `ChecksPassed`/`ChecksFailed`.
    RunChecks { step: usize },
}

/// A percentage as people write it: `5%`, `2.5%`, `100%`.
fn pct(w: Weight) -> String {
    format!("{}%", w.percent())
}

/// A duration as people write it: `30s`, `2m`, `1.5s`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl Transition {
    fn new(control: Control, action: EventAction, reason: String, data: serde_json::Value) -> Self {
        Transition {
            control,
            event: EventDraft {
                action,
                reason,
                data,
            },
            effects: Vec::new(),
        }
    }

    fn with_effects(mut self, effects: Vec<Effect>) -> Self {
        self.effects = effects;
        self
    }
}
