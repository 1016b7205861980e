//! Commands: each accepted transition and each rejection.

use super::*;

#[test]
fn start_with_checks_enters_running_at_step_one_with_checks_pending() {
    let p = plan(
        vec![step(5.0, 30, false, true), step(100.0, 0, false, false)],
        10,
    );
    let t = ok(&Control::default(), start_cmd(p));
    assert_eq!(t.event.action, EventAction::Start);
    assert_eq!(t.control.state(), RunState::Running);
    assert_eq!(t.control.step(), 1);
    assert_eq!(
        t.control.weight(),
        Weight::ZERO,
        "weight waits for the checks"
    );
    assert_eq!(t.effects, vec![Effect::RunChecks { step: 0 }]);
    assert_eq!(
        t.control.hold_remaining(),
        None,
        "not holding while checks run"
    );
    let run = t.control.run().unwrap();
    assert_eq!((run.id(), run.plan_hash()), (1, "abc123"));
    assert_eq!(run.checks_pending(), Some(0));
}

#[test]
fn start_without_checks_applies_the_first_weight_at_once() {
    let t = ok(&Control::default(), start_cmd(three_steps()));
    assert_eq!(t.control.weight(), w(10.0));
    assert!(t.effects.is_empty());
    assert_eq!(t.control.hold_remaining(), Some(secs(10)));
}

#[test]
fn start_is_refused_while_a_run_is_active() {
    let ctl = running(three_steps());
    let r = refused(&ctl, start_cmd(three_steps()));
    assert!(r.reason.contains("run 1 is running"), "{}", r.reason);
    let paused = ok(&ctl, Command::Pause).control;
    refused(&paused, start_cmd(three_steps()));
}

#[test]
fn start_is_allowed_after_a_terminal_run() {
    let aborted = ok(&running(three_steps()), Command::Abort).control;
    let t = ok(&aborted, start_cmd(three_steps()));
    assert_eq!(t.control.state(), RunState::Running);
    assert_eq!(t.control.step(), 1);
}

#[test]
fn start_refuses_a_plan_without_steps() {
    refused(&Control::default(), start_cmd(plan(Vec::new(), 10)));
}

#[test]
fn checks_passed_applies_the_step_weight() {
    let p = plan(vec![step(5.0, 30, false, true)], 10);
    let t = ok(&Control::default(), start_cmd(p));
    let t = ok(&t.control, Command::ChecksPassed { step: 0 });
    assert_eq!(t.event.action, EventAction::ChecksPassed);
    assert_eq!(t.control.weight(), w(5.0));
    assert_eq!(t.control.hold_remaining(), Some(secs(30)));
}

#[test]
fn checks_failed_pauses_with_the_output_and_keeps_the_weight() {
    let p = plan(vec![step(5.0, 30, false, true)], 10);
    let started = ok(&Control::default(), start_cmd(p)).control;
    let failed = Command::ChecksFailed {
        step: 0,
        output: "GET /healthz: 503".into(),
    };
    let t = ok(&started, failed);
    assert_eq!(t.event.action, EventAction::ChecksFailed);
    assert_eq!(t.control.state(), RunState::Paused);
    assert_eq!(t.control.weight(), Weight::ZERO);
    assert_eq!(
        t.control.reason(),
        Some("pre-step check failed: GET /healthz: 503")
    );
    // Resume re-runs the checks.
    let r = ok(&t.control, Command::Resume);
    assert_eq!(r.control.state(), RunState::Running);
    assert_eq!(r.effects, vec![Effect::RunChecks { step: 0 }]);
    assert_eq!(r.control.weight(), Weight::ZERO);
}

#[test]
fn stale_check_results_are_refused() {
    let p = plan(vec![step(5.0, 30, false, true)], 10);
    let started = ok(&Control::default(), start_cmd(p)).control;
    refused(&started, Command::ChecksPassed { step: 1 });
    let paused = ok(&started, Command::Pause).control;
    refused(&paused, Command::ChecksPassed { step: 0 });
    let passed = ok(&started, Command::ChecksPassed { step: 0 }).control;
    refused(&passed, Command::ChecksPassed { step: 0 });
    refused(
        &Control::default(),
        Command::ChecksFailed {
            step: 0,
            output: String::new(),
        },
    );
}

#[test]
fn pause_and_resume_keep_the_hold_served() {
    let ctl = running(three_steps());
    let ctl = progressed(&ctl, secs(4), &healthy());
    let t = ok(&ctl, Command::Pause);
    assert_eq!(
        (t.event.action.as_str(), t.control.state()),
        ("pause", RunState::Paused)
    );
    assert_eq!(t.control.hold_remaining(), Some(secs(6)));
    let t = ok(&t.control, Command::Resume);
    assert_eq!(t.event.action, EventAction::Resume);
    assert_eq!(t.control.state(), RunState::Running);
    assert_eq!(t.control.hold_remaining(), Some(secs(6)));
    assert_eq!(t.control.weight(), w(10.0));
}

#[test]
fn pause_and_resume_are_refused_where_they_mean_nothing() {
    let idle = Control::default();
    assert!(refused(&idle, Command::Pause).reason.contains("no run"));
    refused(&idle, Command::Resume);
    let ctl = running(three_steps());
    refused(&ctl, Command::Resume);
    let paused = ok(&ctl, Command::Pause).control;
    refused(&paused, Command::Pause);
}

#[test]
fn approve_is_only_for_a_run_awaiting_approval() {
    let ctl = running(three_steps());
    refused(&ctl, Command::Approve);
    refused(&Control::default(), Command::Approve);
}

#[test]
fn approve_moves_to_the_next_step_and_completes_after_the_last() {
    let ctl = running(three_steps());
    let ctl = moved(&ctl, secs(10), &healthy()).control; // -> step 2
    let ctl = moved(&ctl, secs(10), &healthy()).control; // -> awaiting approval
    assert_eq!(ctl.state(), RunState::AwaitingApproval);
    let t = ok(&ctl, Command::Approve);
    assert_eq!(t.event.action, EventAction::Approve);
    assert_eq!(
        (t.control.state(), t.control.step()),
        (RunState::Running, 3)
    );
    assert_eq!(t.control.weight(), Weight::FULL);

    let last = plan(vec![step(100.0, 1, true, false)], 10);
    let ctl = moved(&running(last), secs(1), &healthy()).control;
    let t = ok(&ctl, Command::Approve);
    assert_eq!(t.control.state(), RunState::Completed);
    assert_eq!(t.control.weight(), Weight::FULL);
}

#[test]
fn rollback_command_starts_the_ramp() {
    let ctl = running(three_steps());
    let t = ok(&ctl, Command::Rollback);
    assert_eq!(t.event.action, EventAction::Rollback);
    assert_eq!(t.control.state(), RunState::RollingBack);
    assert_eq!(
        t.control.weight(),
        w(10.0),
        "the ramp lowers it tick by tick"
    );
    refused(&t.control, Command::Rollback);
    refused(&Control::default(), Command::Rollback);
}

#[test]
fn rollback_with_a_zero_ramp_is_at_once() {
    let p = plan(vec![step(40.0, 10, false, false)], 0);
    let t = ok(&running(p), Command::Rollback);
    assert_eq!(t.control.state(), RunState::RolledBack);
    assert_eq!(t.control.weight(), Weight::ZERO);
}

#[test]
fn rollback_from_paused_and_from_pending_checks() {
    let paused = ok(&running(three_steps()), Command::Pause).control;
    assert_eq!(
        ok(&paused, Command::Rollback).control.state(),
        RunState::RollingBack
    );
    let p = plan(vec![step(5.0, 30, false, true)], 10);
    let started = ok(&Control::default(), start_cmd(p)).control;
    // Weight 0 while the first checks run: nothing to ramp.
    let t = ok(&started, Command::Rollback);
    assert_eq!(t.control.state(), RunState::RolledBack);
    refused(&t.control, Command::ChecksPassed { step: 0 });
}

#[test]
fn abort_keeps_the_weight_and_frees_the_slot() {
    let ctl = running(three_steps());
    let t = ok(&ctl, Command::Abort);
    assert_eq!(t.event.action, EventAction::Abort);
    assert_eq!(t.control.state(), RunState::Aborted);
    assert_eq!(t.control.weight(), w(10.0));
    refused(&t.control, Command::Abort);
    refused(&Control::default(), Command::Abort);
    let rolling = ok(&ctl, Command::Rollback).control;
    assert_eq!(ok(&rolling, Command::Abort).control.weight(), w(10.0));
}

#[test]
fn set_weight_without_an_active_run_just_sets_it() {
    let t = ok(&Control::default(), Command::SetWeight(w(30.0)));
    assert_eq!(t.event.action, EventAction::Weight);
    assert_eq!(t.control.state(), RunState::Idle);
    assert_eq!(t.control.weight(), w(30.0));
    let done = ok(&running(three_steps()), Command::Abort).control;
    let t = ok(&done, Command::SetWeight(w(0.0)));
    assert_eq!(
        (t.control.state(), t.control.weight()),
        (RunState::Aborted, Weight::ZERO)
    );
}

#[test]
fn set_weight_during_a_run_pauses_and_resume_ramps_back_to_the_step_weight() {
    let ctl = progressed(&running(three_steps()), secs(3), &healthy());
    let t = ok(&ctl, Command::SetWeight(w(30.0)));
    assert_eq!(t.control.state(), RunState::Paused);
    assert_eq!(t.control.weight(), w(30.0));
    assert_eq!(
        t.control.reason(),
        Some("manual weight 30% by cli; run paused")
    );
    // Resume does not put 20 % of the users back at once: it ramps at the plan's pace (10 s).
    let r = ok(&t.control, Command::Resume);
    assert_eq!(r.control.state(), RunState::Running);
    assert_eq!(r.control.weight(), w(30.0));
    assert!(
        r.event.reason.contains("ramping 30% → 10% over 10s"),
        "{}",
        r.event.reason
    );
    assert_eq!(r.control.hold_remaining(), None, "no hold while moving");
    let half = moved(&r.control, secs(5), &healthy());
    assert_eq!(half.event.action, EventAction::Ramp);
    assert_eq!(half.control.weight(), w(20.0));
    assert_eq!(half.control.hold_remaining(), None);
    let there = moved(&half.control, secs(5), &healthy());
    assert_eq!(there.control.weight(), w(10.0));
    assert!(there.control.moving().is_none());
    // The hold served before the pause is kept; it grows again from here.
    assert_eq!(there.control.hold_remaining(), Some(secs(7)));
}

#[test]
fn start_below_the_current_weight_ramps_down_from_it() {
    let at40 = ok(&Control::default(), Command::SetWeight(w(40.0))).control;
    let t = ok(&at40, start_cmd(three_steps()));
    assert_eq!(t.control.weight(), w(40.0), "nobody moves at once");
    assert!(
        t.event.reason.contains("step 1 ramping 40% → 10% over 10s"),
        "{}",
        t.event.reason
    );
    assert_eq!(
        moved(&t.control, secs(5), &healthy()).control.weight(),
        w(25.0)
    );
    // From 0 % the first step is the plan's own step: at once.
    let t = ok(&Control::default(), start_cmd(three_steps()));
    assert_eq!(t.control.weight(), w(10.0));
}

#[test]
fn rollback_after_abort_or_completion_returns_to_old_ramped() {
    let aborted = ok(&running(three_steps()), Command::Abort).control;
    let t = ok(&aborted, Command::Rollback);
    assert_eq!(t.control.state(), RunState::RollingBack);
    assert_eq!(t.control.weight(), w(10.0));
    assert!(
        t.event
            .reason
            .contains("return to OLD after the run aborted"),
        "{}",
        t.event.reason
    );
    assert_eq!(
        moved(&t.control, secs(5), &healthy()).control.weight(),
        w(5.0)
    );
    // A completed run at 100 %: "return to OLD".
    let mut ctl = running(plan(vec![step(100.0, 1, false, false)], 10));
    ctl = moved(&ctl, secs(1), &healthy()).control;
    assert_eq!(ctl.state(), RunState::Completed);
    let t = ok(&ctl, Command::Rollback);
    assert_eq!(
        (t.control.state(), t.control.weight()),
        (RunState::RollingBack, Weight::FULL)
    );
    let done = moved(
        &moved(&t.control, secs(5), &healthy()).control,
        secs(5),
        &healthy(),
    );
    assert_eq!(
        (done.control.state(), done.control.weight()),
        (RunState::RolledBack, Weight::ZERO)
    );
    // Everyone already on OLD: nothing to do.
    refused(&done.control, Command::Rollback);
    refused(&Control::default(), Command::Rollback);
}

#[test]
fn a_ramped_set_weight_moves_at_its_pace_even_without_a_run() {
    let at50 = ok(&Control::default(), Command::SetWeight(w(50.0))).control;
    let t = ok(
        &at50,
        Command::RampWeight {
            weight: Weight::ZERO,
            over: secs(10),
        },
    );
    assert_eq!(t.control.weight(), w(50.0));
    assert!(
        t.event
            .reason
            .contains("manual weight 0%, ramping from 50% over 10s"),
        "{}",
        t.event.reason
    );
    let mid = moved(&t.control, secs(4), &healthy()).control;
    assert_eq!(mid.weight(), w(30.0));
    // An immediate set-weight overrides the move.
    let now = ok(&mid, Command::SetWeight(w(45.0))).control;
    assert!(now.moving().is_none());
    assert_eq!(tick(&now, secs(4), &healthy()), Tick::Nothing);
    // A zero ramp is at once.
    let t = ok(
        &at50,
        Command::RampWeight {
            weight: w(20.0),
            over: Duration::ZERO,
        },
    );
    assert_eq!(t.control.weight(), w(20.0));
}

#[test]
fn a_pause_during_a_move_holds_the_weight_and_resume_ramps_on() {
    let ctl = running(three_steps());
    let paused = ok(&ctl, Command::SetWeight(w(30.0))).control;
    let r = ok(&paused, Command::Resume).control;
    let mid = moved(&r, secs(5), &healthy()).control;
    assert_eq!(mid.weight(), w(20.0));
    // A gate pause mid-move: the weight stays where users are.
    let p = moved(&mid, secs(1), &gate(false)).control;
    assert_eq!((p.state(), p.weight()), (RunState::Paused, w(20.0)));
    assert_eq!(tick(&p, secs(5), &healthy()), Tick::Nothing);
    let r = ok(&p, Command::Resume);
    assert!(
        r.event.reason.contains("ramping 20% → 10% over 10s"),
        "{}",
        r.event.reason
    );
}

#[test]
fn set_weight_during_rollback_pauses_the_ramp_and_resume_ramps_from_there() {
    let rolling = ok(&running(three_steps()), Command::Rollback).control;
    let rolling = moved(&rolling, secs(5), &healthy()).control; // 10% -> 5%
    assert_eq!(rolling.weight(), w(5.0));
    let t = ok(&rolling, Command::SetWeight(w(20.0)));
    assert_eq!(
        (t.control.state(), t.control.weight()),
        (RunState::Paused, w(20.0))
    );
    let r = ok(&t.control, Command::Resume);
    assert_eq!(
        (r.control.state(), r.control.weight()),
        (RunState::RollingBack, w(20.0))
    );
    // A fresh 10 s ramp from 20%: half-way is 10%.
    assert_eq!(
        moved(&r.control, secs(5), &healthy()).control.weight(),
        w(10.0)
    );
}

#[test]
fn a_paused_rollback_resumes_rolling_back() {
    let rolling = ok(&running(three_steps()), Command::Rollback).control;
    let rolling = moved(&rolling, secs(5), &healthy()).control;
    let paused = ok(&rolling, Command::Pause).control;
    assert_eq!(
        tick(&paused, secs(5), &healthy()),
        Tick::Nothing,
        "paused ramp holds"
    );
    let r = ok(&paused, Command::Resume).control;
    assert_eq!((r.state(), r.weight()), (RunState::RollingBack, w(5.0)));
    let done = moved(&r, secs(5), &healthy());
    assert_eq!(done.event.action, EventAction::RolledBack);
    assert_eq!(
        (done.control.state(), done.control.weight()),
        (RunState::RolledBack, Weight::ZERO)
    );
}

#[test]
fn the_operator_reason_is_in_the_event() {
    let ctl = running(three_steps());
    let t = apply(&ctl, Command::Pause, "console", Some("  db migration  ")).unwrap();
    assert_eq!(t.event.reason, "paused by console: db migration");
    let t = apply(&t.control, Command::Resume, "cli", Some("done")).unwrap();
    assert!(
        t.event.reason.starts_with("resumed by cli: done"),
        "{}",
        t.event.reason
    );
    let t = apply(&t.control, Command::Abort, "cli", Some("")).unwrap();
    assert!(
        t.event.reason.starts_with("aborted by cli;"),
        "{}",
        t.event.reason
    );
}

#[test]
fn every_accepted_command_is_logged_under_its_own_action() {
    let ctl = running(three_steps());
    for cmd in [
        Command::Pause,
        Command::Rollback,
        Command::Abort,
        Command::SetWeight(w(1.0)),
    ] {
        let action = cmd.action();
        assert_eq!(ok(&ctl, cmd).event.action, action);
    }
}

#[test]
fn an_out_of_range_weight_is_clamped() {
    let big: Weight = serde_json::from_str("20000").unwrap();
    let t = ok(&Control::default(), Command::SetWeight(big));
    assert_eq!(t.control.weight(), Weight::FULL);
}
