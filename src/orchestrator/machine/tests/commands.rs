//! Commands: each accepted transition and each rejection.

use super::*;

#[test]
fn start_with_checks_enters_running_at_step_one_with_checks_pending() {
    let p = plan(
        vec![step(5.0, 30, false, true), step(100.0, 0, false, false)],
        10,
    );
    let t = ok(&Control::default(), start_cmd(p));
    assert_eq!(t.event.action, "start");
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
    assert_eq!(t.event.action, "checks_passed");
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
    assert_eq!(t.event.action, "checks_failed");
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
    assert_eq!(t.event.action, "resume");
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
    assert_eq!(t.event.action, "approve");
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
    assert_eq!(t.event.action, "rollback");
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
    assert_eq!(t.event.action, "abort");
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
    assert_eq!(t.event.action, "weight");
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
fn set_weight_during_a_run_pauses_and_resume_reapplies_the_step_weight() {
    let ctl = progressed(&running(three_steps()), secs(3), &healthy());
    let t = ok(&ctl, Command::SetWeight(w(30.0)));
    assert_eq!(t.control.state(), RunState::Paused);
    assert_eq!(t.control.weight(), w(30.0));
    assert_eq!(
        t.control.reason(),
        Some("manual weight 30% by cli; run paused")
    );
    let r = ok(&t.control, Command::Resume);
    assert_eq!(r.control.state(), RunState::Running);
    assert_eq!(r.control.weight(), w(10.0));
    assert_eq!(r.control.hold_remaining(), Some(secs(7)));
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
    assert_eq!(done.event.action, "rolled_back");
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
