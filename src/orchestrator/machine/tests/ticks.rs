//! Ticks: holds, gates, approval, the rollback ramp, restarts.

use super::*;

#[test]
fn idle_and_terminal_runs_do_not_tick() {
    assert_eq!(
        tick(&Control::default(), secs(5), &gate(true)),
        Tick::Nothing
    );
    let aborted = ok(&running(three_steps()), Command::Abort).control;
    assert_eq!(tick(&aborted, secs(5), &gate(true)), Tick::Nothing);
}

#[test]
fn healthy_ticks_serve_the_hold_then_advance() {
    let ctl = running(three_steps());
    let ctl = progressed(&ctl, secs(4), &healthy());
    assert_eq!(ctl.hold_remaining(), Some(secs(6)));
    let t = moved(&ctl, secs(6), &healthy());
    assert_eq!(t.event.action, EventAction::Advance);
    assert_eq!((t.control.step(), t.control.weight()), (2, w(50.0)));
    assert_eq!(
        t.control.hold_remaining(),
        Some(secs(10)),
        "leftover time is not carried"
    );
    assert_eq!(tick(&t.control, Duration::ZERO, &healthy()), Tick::Nothing);
}

#[test]
fn one_step_per_tick_however_long_the_tick() {
    let p = plan(
        vec![step(10.0, 0, false, false), step(20.0, 0, false, false)],
        5,
    );
    let t = moved(&running(p), secs(3600), &healthy());
    assert_eq!(
        (t.control.step(), t.control.state()),
        (2, RunState::Running)
    );
    let t = moved(&t.control, secs(3600), &healthy());
    assert_eq!(t.event.action, EventAction::Complete);
}

#[test]
fn not_enough_traffic_does_not_serve_the_hold_and_says_why() {
    let ctl = running(three_steps());
    let ctl = progressed(&ctl, secs(5), &not_judged());
    assert_eq!(ctl.hold_remaining(), Some(secs(10)));
    assert_eq!(
        ctl.reason(),
        Some("waiting: not enough traffic: new has 3 of 50 requests")
    );
    assert_eq!(tick(&ctl, secs(5), &not_judged()), Tick::Nothing);
    let ctl = progressed(&ctl, secs(2), &healthy());
    assert_eq!(ctl.hold_remaining(), Some(secs(8)));
    assert!(!ctl.reason().unwrap_or("").starts_with("waiting"));
}

#[test]
fn an_approval_step_waits_for_approve_and_gates_still_act() {
    let ctl = moved(&running(three_steps()), secs(10), &healthy()).control;
    let t = moved(&ctl, secs(10), &healthy());
    assert_eq!(t.event.action, EventAction::AwaitApproval);
    let waiting = t.control;
    assert_eq!(waiting.state(), RunState::AwaitingApproval);
    assert_eq!(tick(&waiting, secs(60), &healthy()), Tick::Nothing);
    let t = moved(&waiting, secs(1), &gate(false));
    assert_eq!(
        (t.event.action.as_str(), t.control.state()),
        ("pause", RunState::Paused)
    );
    let back = ok(&t.control, Command::Resume).control;
    assert_eq!(back.state(), RunState::AwaitingApproval);
    let t = moved(&waiting, secs(1), &gate(true));
    assert_eq!(t.control.state(), RunState::RollingBack);
}

#[test]
fn a_plan_without_gates_advances_on_time_alone_to_completion() {
    let p = plan(
        vec![
            step(10.0, 10, false, false),
            step(50.0, 10, false, false),
            step(100.0, 0, false, false),
        ],
        10,
    );
    let mut ctl = running(p);
    let mut actions = Vec::new();
    for _ in 0..30 {
        if let Tick::Transition(t) = tick(&ctl, secs(1), &healthy()) {
            actions.push(t.event.action);
            ctl = t.control;
        } else if let Tick::Progress(next) = tick(&ctl, secs(1), &healthy()) {
            ctl = next;
        }
    }
    assert_eq!(
        actions,
        [
            EventAction::Advance,
            EventAction::Advance,
            EventAction::Complete
        ]
    );
    assert_eq!(
        (ctl.state(), ctl.weight(), ctl.step()),
        (RunState::Completed, Weight::FULL, 3)
    );
}

#[test]
fn advancing_into_a_step_with_checks_runs_them_first() {
    let p = plan(
        vec![step(10.0, 1, false, false), step(50.0, 1, false, true)],
        10,
    );
    let t = moved(&running(p), secs(1), &healthy());
    assert_eq!(t.effects, vec![Effect::RunChecks { step: 1 }]);
    assert_eq!((t.control.step(), t.control.weight()), (2, w(10.0)));
    // The hold does not run while checks do.
    assert_eq!(tick(&t.control, secs(5), &healthy()), Tick::Nothing);
    let passed = ok(&t.control, Command::ChecksPassed { step: 1 }).control;
    assert_eq!(passed.weight(), w(50.0));
}

#[test]
fn a_pause_verdict_pauses_with_the_analyzer_data() {
    let ctl = progressed(&running(three_steps()), secs(4), &healthy());
    let t = moved(&ctl, secs(1), &gate(false));
    assert_eq!(t.event.action, EventAction::Pause);
    assert_eq!(t.event.data["gate"], "new errors");
    assert_eq!(t.control.state(), RunState::Paused);
    assert_eq!(t.control.weight(), w(10.0));
    assert_eq!(tick(&t.control, secs(1), &gate(false)), Tick::Nothing);
    let r = ok(&t.control, Command::Resume).control;
    assert_eq!(r.hold_remaining(), Some(secs(6)));
}

#[test]
fn a_rollback_verdict_rolls_back_even_when_paused() {
    let paused = ok(&running(three_steps()), Command::Pause).control;
    let t = moved(&paused, secs(1), &gate(true));
    assert_eq!(t.event.action, EventAction::Rollback);
    assert_eq!(t.event.data["gate"], "new errors");
    assert_eq!(t.control.state(), RunState::RollingBack);
}

#[test]
fn the_ramp_lowers_the_weight_at_a_constant_rate_and_ends_at_zero() {
    let ctl = moved(&running(three_steps()), secs(10), &healthy()).control; // 50%
    let mut ctl = moved(&ctl, secs(1), &gate(true)).control;
    let mut weights = Vec::new();
    let mut last = None;
    while ctl.state() == RunState::RollingBack {
        let t = moved(&ctl, secs(2), &gate(true));
        weights.push(t.control.weight().percent());
        last = Some(t.event.action);
        ctl = t.control;
    }
    assert_eq!(weights, [40.0, 30.0, 20.0, 10.0, 0.0]);
    assert_eq!(last, Some(EventAction::RolledBack));
    assert_eq!(ctl.state(), RunState::RolledBack);
}

#[test]
fn the_ramp_holds_while_old_is_degraded() {
    let rolling = ok(&running(three_steps()), Command::Rollback).control;
    let degraded = Observation {
        health: Health::Healthy,
        old_degraded: Some("old.p99_ms 900 > 500".into()),
        notes: Vec::new(),
    };
    let held = progressed(&rolling, secs(5), &degraded);
    assert_eq!(
        held.reason(),
        Some("rollback ramp holding: OLD degraded: old.p99_ms 900 > 500")
    );
    assert_eq!(tick(&held, secs(5), &degraded), Tick::Nothing);
    let t = moved(&held, secs(5), &healthy());
    assert_eq!(t.event.action, EventAction::Ramp);
    assert_eq!(t.control.weight(), w(5.0));
    assert!(!t.control.reason().unwrap_or("").contains("holding"));
}

#[test]
fn a_tiny_tick_serves_ramp_time_without_an_event() {
    let rolling = ok(&running(three_steps()), Command::Rollback).control;
    let next = progressed(&rolling, Duration::from_micros(1), &healthy());
    assert_eq!(
        next.run().unwrap().ramp().unwrap().elapsed(),
        Duration::from_micros(1)
    );
}

#[test]
fn a_gate_rollback_with_a_zero_ramp_is_at_once() {
    let p = plan(vec![step(30.0, 10, false, false)], 0);
    let t = moved(&running(p), secs(1), &gate(true));
    assert_eq!(
        (t.control.state(), t.control.weight()),
        (RunState::RolledBack, Weight::ZERO)
    );
}

#[test]
fn a_restart_continues_where_it_stood() {
    let ctl = progressed(&running(three_steps()), secs(7), &healthy());
    let json = serde_json::to_string(&ctl).unwrap();
    let back: Control = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ctl);
    assert_eq!(
        (back.state(), back.step(), back.weight()),
        (RunState::Running, 1, w(10.0))
    );
    assert_eq!(back.hold_remaining(), Some(secs(3)));
    assert_eq!(
        moved(&back, secs(3), &healthy()).event.action,
        EventAction::Advance
    );
}
