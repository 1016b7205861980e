//! Property tests of the run's state machine over random plans and random sequences of
//! commands and ticks (random verdicts, tick lengths, degraded OLD), through the public API.
//!
//! Invariants: the weight stays in 0..=10000 bp; a rollback ends at 0 and never raises the
//! weight; `completed` is reached only from the last step, at its weight; an accepted command
//! is logged once under its own action and is accepted exactly when its state allows it; a
//! rejected one changes nothing; steps advance one at a time and only after their hold (or an
//! approve); a holding run is at its step's weight; the state round-trips through JSON and a
//! restart from JSON continues identically.

use std::time::Duration;

use cutover::analyzer::{Health, Observation};
use cutover::orchestrator::{apply, tick, Command, Control, RunState, Tick, Transition};
use cutover::plan::{Analysis, Check, Plan, Rollback, Step};
use cutover::router::Weight;
use proptest::prelude::*;

fn plan_strategy() -> impl Strategy<Value = Plan> {
    // Zero holds and zero ramps are edge cases worth hitting often.
    let ms = || prop_oneof![1 => Just(0u64), 3 => 1u64..=4000];
    let step = (1u32..=3000, ms(), any::<bool>(), any::<bool>());
    (prop::collection::vec(step, 1..=4), any::<bool>(), ms()).prop_map(
        |(raw, ends_full, ramp_ms)| {
            let n = raw.len();
            let mut bp = 0u32;
            let steps = raw
                .into_iter()
                .enumerate()
                .map(|(i, (inc, hold_ms, approval, checks))| {
                    bp = (bp + inc).min(10_000);
                    if i + 1 == n && ends_full {
                        bp = 10_000;
                    }
                    Step {
                        weight: Weight::from_bp(bp),
                        hold: Duration::from_millis(hold_ms),
                        approval,
                        checks: if checks {
                            vec![Check::Command {
                                command: "true".into(),
                                timeout: Duration::from_secs(1),
                            }]
                        } else {
                            Vec::new()
                        },
                        mirror: Weight::ZERO,
                        compare: false,
                        headroom_check: true,
                    }
                })
                .collect();
            Plan {
                name: "prop".into(),
                salt: "prop".into(),
                analysis: Analysis::default(),
                steps,
                gates: Vec::new(),
                rollback: Rollback {
                    ramp: Duration::from_millis(ramp_ms),
                },
                queries: Vec::new(),
            }
        },
    )
}

#[derive(Debug, Clone)]
enum Op {
    Start,
    Pause,
    Resume,
    Approve,
    Rollback,
    Abort,
    SetWeight(u32),
    RampWeight(u32, u64),
    /// Answer the pending checks (or a random step when none are pending).
    Checks {
        pass: bool,
        stray: usize,
    },
    Tick {
        dt_ms: u64,
        health: u8,
        degraded: bool,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Start),
        1 => Just(Op::Pause),
        2 => Just(Op::Resume),
        2 => Just(Op::Approve),
        1 => Just(Op::Rollback),
        1 => Just(Op::Abort),
        1 => (0u32..=12_000).prop_map(Op::SetWeight),
        1 => (0u32..=10_000, prop_oneof![1 => Just(0u64), 3 => 1u64..=4000])
            .prop_map(|(bp, ms)| Op::RampWeight(bp, ms)),
        3 => (any::<bool>(), 0usize..5).prop_map(|(pass, stray)| Op::Checks { pass, stray }),
        12 => (0u64..=3000, 0u8..8, any::<bool>()).prop_map(|(dt_ms, health, degraded)| {
            Op::Tick { dt_ms, health, degraded }
        }),
    ]
}

fn observation(health: u8, degraded: bool) -> Observation {
    let health = match health {
        0 => Health::NotJudged {
            reason: "not enough traffic".into(),
        },
        1 => Health::Pause {
            reason: "gate p: failing".into(),
            data: serde_json::json!({ "gate": "p" }),
        },
        2 => Health::Rollback {
            reason: "gate r: failing".into(),
            data: serde_json::json!({ "gate": "r" }),
        },
        _ => Health::Healthy,
    };
    Observation {
        health,
        old_degraded: degraded.then(|| "old.p99_ms high".to_string()),
        notes: Vec::new(),
    }
}

fn command(op: &Op, ctl: &Control, plan: &Plan, next_id: u64) -> Option<Command> {
    Some(match op {
        Op::Start => Command::Start {
            plan: plan.clone(),
            plan_hash: "h".into(),
            run_id: next_id,
        },
        Op::Pause => Command::Pause,
        Op::Resume => Command::Resume,
        Op::Approve => Command::Approve,
        Op::Rollback => Command::Rollback,
        Op::Abort => Command::Abort,
        Op::SetWeight(bp) => Command::SetWeight(Weight::from_bp(*bp)),
        Op::RampWeight(bp, ms) => Command::RampWeight {
            weight: Weight::from_bp(*bp),
            over: Duration::from_millis(*ms),
        },
        Op::Checks { pass, stray } => {
            let step = ctl.run().and_then(|r| r.checks_pending()).unwrap_or(*stray);
            if *pass {
                Command::ChecksPassed { step }
            } else {
                Command::ChecksFailed {
                    step,
                    output: "exit 1".into(),
                }
            }
        }
        Op::Tick { .. } => return None,
    })
}

/// Whether the state before a command allows it (the contract the API's 409 follows).
fn allowed(cmd: &Command, before: &Control) -> bool {
    let s = before.state();
    match cmd {
        Command::Start { .. } => !s.is_active(),
        Command::Pause => s.is_active() && s != RunState::Paused,
        Command::Resume => s == RunState::Paused,
        Command::Approve => s == RunState::AwaitingApproval,
        Command::Rollback => match s {
            RunState::Running | RunState::Paused | RunState::AwaitingApproval => true,
            // "Return to OLD" after the run ended, when anyone is on NEW.
            RunState::Aborted | RunState::Completed | RunState::RolledBack => {
                before.weight() > Weight::ZERO
            }
            _ => false,
        },
        Command::Abort => s.is_active(),
        Command::SetWeight(_) | Command::RampWeight { .. } => true,
        Command::ChecksPassed { step } | Command::ChecksFailed { step, .. } => {
            s == RunState::Running && before.run().and_then(|r| r.checks_pending()) == Some(*step)
        }
    }
}

/// Invariants of any single state.
fn check_state(ctl: &Control) -> Result<(), TestCaseError> {
    prop_assert!(ctl.weight().bp() <= 10_000);
    let Some(run) = ctl.run() else {
        prop_assert_eq!(ctl.state(), RunState::Idle);
        return Ok(());
    };
    let step = &run.plan().steps[run.step_index()];
    prop_assert!(run.hold_served() <= step.hold);
    if run.checks_pending().is_some() {
        prop_assert_eq!(run.state(), RunState::Running);
    }
    let holding = run.state() == RunState::Running
        && run.checks_pending().is_none()
        && ctl.moving().is_none();
    if holding || (run.state() == RunState::AwaitingApproval && ctl.moving().is_none()) {
        prop_assert_eq!(ctl.weight(), step.weight, "holding at the step's weight");
    }
    prop_assert_eq!(run.resume_to().is_some(), run.state() == RunState::Paused);
    let back: Control = serde_json::from_str(&serde_json::to_string(ctl).unwrap()).unwrap();
    prop_assert_eq!(&back, ctl);
    Ok(())
}

/// Pace: no command but the immediate `SetWeight` moves users at once, except a plan's own
/// step (step 1 from 0 %, the next step from the previous one) or a zero ramp.
fn check_pace(cmd: &Command, before: &Control, after: &Control) -> Result<(), TestCaseError> {
    let ramp = before
        .run()
        .map_or(Duration::from_secs(30), |r| r.plan().rollback.ramp);
    let same = after.weight() == before.weight();
    match cmd {
        Command::Resume if !ramp.is_zero() => prop_assert!(same, "resume jumped"),
        Command::Rollback if !ramp.is_zero() && after.state() == RunState::RollingBack => {
            prop_assert!(same, "rollback jumped")
        }
        Command::RampWeight { over, .. } if !over.is_zero() => {
            prop_assert!(same, "a ramped set-weight jumped")
        }
        Command::Start { plan, .. } if !plan.rollback.ramp.is_zero() => {
            prop_assert!(
                same || before.weight() == Weight::ZERO,
                "start jumped from {:?} to {:?}",
                before.weight(),
                after.weight()
            )
        }
        _ => {}
    }
    Ok(())
}

/// A tick moves the weight by at most its share of the move's pace.
fn check_tick_pace(before: &Control, after: &Control, dt: Duration) -> Result<(), TestCaseError> {
    let rolling = before.state() == RunState::RollingBack
        || (after.state() != before.state()
            && matches!(after.state(), RunState::RollingBack | RunState::RolledBack));
    let over = match before.moving() {
        _ if rolling => before.run().map(|r| r.plan().rollback.ramp),
        Some(m) => Some(m.over()),
        None => None,
    };
    if let Some(over) = over.filter(|o| !o.is_zero()) {
        let delta = u128::from(after.weight().bp().abs_diff(before.weight().bp()));
        let bound = 10_000 * dt.as_nanos() / over.as_nanos() + 1;
        prop_assert!(
            delta <= bound,
            "moved {} bp in {:?} of {:?}",
            delta,
            dt,
            over
        );
    }
    Ok(())
}

/// Invariants of one accepted transition (command or tick).
fn check_move(before: &Control, t: &Transition, by_tick: bool) -> Result<(), TestCaseError> {
    let after = &t.control;
    prop_assert!(!t.event.reason.is_empty());
    let entered = after.state() != before.state();
    if after.state() == RunState::RolledBack && entered {
        prop_assert_eq!(after.weight(), Weight::ZERO, "rollback ends at 0");
    }
    if after.state() == RunState::Completed && entered {
        let run = after.run().unwrap();
        let last = run.plan().steps.len() - 1;
        prop_assert_eq!(run.step_index(), last, "completed only after the last step");
        prop_assert_eq!(after.weight(), run.plan().steps[last].weight);
        prop_assert_eq!(before.step(), last + 1, "completed from the last step");
    }
    if before.state() == RunState::RollingBack && by_tick {
        prop_assert!(after.weight() <= before.weight(), "the ramp never raises");
    }
    let same_run = before.run().map(|r| r.id()) == after.run().map(|r| r.id());
    if same_run && before.run().is_some() {
        prop_assert!(after.step() >= before.step(), "steps never go back");
        prop_assert!(after.step() <= before.step() + 1, "one step at a time");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_commands_and_ticks_keep_the_invariants(
        plan in plan_strategy(),
        ops in prop::collection::vec(op_strategy(), 0..120),
        with_reason in any::<bool>(),
    ) {
        let mut ctl = Control::default();
        let mut next_id = 1;
        let reason = with_reason.then_some("operator says so");
        for op in &ops {
            let before = ctl.clone();
            if let Some(cmd) = command(op, &ctl, &plan, next_id) {
                let action = cmd.action();
                let may = allowed(&cmd, &before);
                match apply(&ctl, cmd.clone(), "prop", reason) {
                    Ok(t) => {
                        prop_assert!(may, "{} accepted in {}", action, before.state());
                        prop_assert_eq!(t.event.action, action);
                        if let Some(r) = reason {
                            prop_assert!(t.event.reason.contains(r), "{}", t.event.reason);
                        }
                        if action == cutover::vocab::EventAction::Start {
                            next_id += 1;
                        }
                        check_move(&before, &t, false)?;
                        check_pace(&cmd, &before, &t.control)?;
                        ctl = t.control;
                    }
                    Err(rej) => {
                        prop_assert!(!may, "{} refused in {}: {}", action, before.state(), rej.reason);
                        prop_assert!(!rej.reason.is_empty());
                        prop_assert_eq!(&ctl, &before);
                    }
                }
            } else if let Op::Tick { dt_ms, health, degraded } = op {
                let dt = Duration::from_millis(*dt_ms);
                let obs = observation(*health, *degraded);
                match tick(&ctl, dt, &obs) {
                    Tick::Nothing => {}
                    Tick::Progress(next) => {
                        prop_assert!(
                            before.state().is_active() || before.moving().is_some(),
                            "only active runs and weight moves progress"
                        );
                        prop_assert_eq!(next.state(), before.state());
                        prop_assert_eq!(next.weight(), before.weight());
                        prop_assert_eq!(next.step(), before.step());
                        ctl = next;
                    }
                    Tick::Transition(t) => {
                        prop_assert!(
                            before.state().is_active() || before.moving().is_some(),
                            "only active runs and weight moves tick"
                        );
                        check_move(&before, &t, true)?;
                        check_tick_pace(&before, &t.control, dt)?;
                        if t.control.step() > before.step() {
                            // A tick advances only a served, healthy hold.
                            let run = before.run().unwrap();
                            let hold = run.plan().steps[run.step_index()].hold;
                            prop_assert_eq!(&obs.health, &Health::Healthy);
                            prop_assert!(run.hold_served() + dt >= hold, "hold skipped");
                            prop_assert_eq!(before.state(), RunState::Running);
                        }
                        ctl = t.control;
                    }
                }
            }
            check_state(&ctl)?;
            // A restart: continue from the persisted JSON.
            ctl = serde_json::from_str(&serde_json::to_string(&ctl).unwrap()).unwrap();
        }
    }

    /// With gates always healthy and checks always passing, a run completes on time alone,
    /// visiting every step in order, and approval steps need exactly one approve each.
    #[test]
    fn a_healthy_run_visits_every_step_and_completes(
        plan in plan_strategy(),
        dt_ms in 100u64..=2000,
    ) {
        let start = Command::Start { plan: plan.clone(), plan_hash: "h".into(), run_id: 1 };
        let mut t = apply(&Control::default(), start, "prop", None).unwrap();
        let mut visited = vec![t.control.step()];
        let mut approvals = 0;
        for _ in 0..10_000 {
            if let Some(step) = t.control.run().and_then(|r| r.checks_pending()) {
                t = apply(&t.control, Command::ChecksPassed { step }, "driver", None).unwrap();
            } else if t.control.state() == RunState::AwaitingApproval {
                approvals += 1;
                t = apply(&t.control, Command::Approve, "prop", None).unwrap();
            } else if t.control.state() == RunState::Completed {
                break;
            } else {
                let obs = observation(7, false);
                match tick(&t.control, Duration::from_millis(dt_ms), &obs) {
                    Tick::Transition(next) => t = next,
                    Tick::Progress(c) => t.control = c,
                    Tick::Nothing => prop_assert!(false, "a healthy running run must progress"),
                }
            }
            if visited.last() != Some(&t.control.step()) {
                visited.push(t.control.step());
            }
        }
        let n = plan.steps.len();
        prop_assert_eq!(t.control.state(), RunState::Completed);
        prop_assert_eq!(visited, (1..=n).collect::<Vec<_>>());
        prop_assert_eq!(approvals, plan.steps.iter().filter(|s| s.approval).count());
        prop_assert_eq!(t.control.weight(), plan.steps[n - 1].weight);
    }

    /// A rollback from any weight reaches exactly 0, never goes up, and takes about the ramp
    /// time served (OLD-degraded ticks do not count).
    #[test]
    fn a_rollback_ramp_reaches_zero_in_ramp_time(
        plan in plan_strategy(),
        ticks in prop::collection::vec((1u64..=700, any::<bool>()), 1..200),
    ) {
        let start = Command::Start { plan: plan.clone(), plan_hash: "h".into(), run_id: 1 };
        let mut ctl = apply(&Control::default(), start, "prop", None).unwrap().control;
        if let Some(step) = ctl.run().and_then(|r| r.checks_pending()) {
            ctl = apply(&ctl, Command::ChecksPassed { step }, "driver", None).unwrap().control;
        }
        ctl = apply(&ctl, Command::Rollback, "prop", None).unwrap().control;
        let ramp = plan.rollback.ramp;
        let mut served = Duration::ZERO;
        for (dt_ms, degraded) in ticks {
            if ctl.state() != RunState::RollingBack {
                break;
            }
            let dt = Duration::from_millis(dt_ms);
            let before = ctl.weight();
            match tick(&ctl, dt, &observation(2, degraded)) {
                Tick::Transition(t) => {
                    prop_assert!(!degraded, "a degraded OLD holds the ramp");
                    prop_assert!(t.control.weight() < before);
                    ctl = t.control;
                }
                Tick::Progress(c) => {
                    prop_assert_eq!(c.weight(), before);
                    ctl = c;
                }
                Tick::Nothing => prop_assert!(degraded),
            }
            if !degraded {
                served += dt;
            }
            let done = served >= ramp;
            prop_assert_eq!(ctl.state() == RunState::RolledBack, done, "served {:?} of {:?}", served, ramp);
        }
        if ctl.state() == RunState::RolledBack {
            prop_assert_eq!(ctl.weight(), Weight::ZERO);
        }
    }
}
