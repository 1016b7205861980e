//! Issue 19 §4: every duration in plans and config has a documented range, checked with
//! `file:line:col`, and no value can panic a task (property tests over durations).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use cutover::analyzer::{Health, Observation};
use cutover::config::{duration_max, Config};
use cutover::orchestrator::driver::eval_interval;
use cutover::orchestrator::{apply, tick, Command as Cmd, Control};
use cutover::plan::model::bounds;
use cutover::plan::{parse, Analysis};
use proptest::prelude::*;

/// A duration as a plan or config writes it, from tiny to far beyond any bound.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..5000).prop_map(|n| format!("{n}ms")),
        (0u64..100_000).prop_map(|n| format!("{n}s")),
        (0u64..10_000).prop_map(|n| format!("{n}m")),
        (0u64..100_000).prop_map(|n| format!("{n}h")),
        (0u64..u64::MAX).prop_map(|n| format!("{n}s")),
        Just("18446744073709551615s".to_string()),
        Just("584942417355years".to_string()),
    ]
}

fn parsed(s: &str) -> Option<Duration> {
    humantime::parse_duration(s).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any duration in any plan key: accepted only within its range, else an error at the
    /// value's line and column; never a panic.
    #[test]
    fn plan_durations_are_within_their_ranges_or_refused_at_the_value(
        interval in duration_text(),
        window in duration_text(),
        hold in duration_text(),
        ramp in duration_text(),
        timeout in duration_text(),
    ) {
        let text = format!(
            "name = \"p\"\n[analysis]\ninterval = \"{interval}\"\nwindow = \"{window}\"\n\
             [[steps]]\nweight = 100\nhold = \"{hold}\"\n\
             [[steps.checks]]\ncommand = \"true\"\ntimeout = \"{timeout}\"\n\
             [rollback]\nramp = \"{ramp}\"\n"
        );
        match parse(&text) {
            Ok(plan) => {
                let a = &plan.analysis;
                prop_assert!(a.interval >= bounds::INTERVAL.0 && a.interval <= bounds::INTERVAL.1);
                prop_assert!(a.window >= a.interval && a.window <= bounds::MAX_WINDOW);
                prop_assert!(plan.steps[0].hold <= bounds::MAX_HOLD);
                prop_assert!(plan.rollback.ramp <= bounds::MAX_RAMP);
                // The driver's own arithmetic on these values cannot panic.
                let i = eval_interval(a);
                let _ = tokio::time::Instant::now() + i;
                let _ = i.saturating_mul(3);
            }
            Err(diags) => {
                // Each problem is at one of the five value lines (3, 4, 7, 10, 12), col 1 + key.
                for d in &diags {
                    prop_assert!([3, 4, 7, 10, 12].contains(&d.line), "{d}");
                    prop_assert!(d.col > 1, "{d}");
                }
                // And a value was really out of range (or not a duration).
                let out = |s: &str, lo: Duration, hi: Duration| parsed(s).is_none_or(|d| d < lo || d > hi);
                let i = parsed(&interval).unwrap_or_default();
                prop_assert!(
                    out(&interval, bounds::INTERVAL.0, bounds::INTERVAL.1)
                        || out(&window, i.max(Duration::from_millis(1)), bounds::MAX_WINDOW)
                        || out(&hold, Duration::ZERO, bounds::MAX_HOLD)
                        || out(&ramp, Duration::ZERO, bounds::MAX_RAMP)
                        || out(&timeout, bounds::CHECK_TIMEOUT.0, bounds::CHECK_TIMEOUT.1),
                    "refused although every value is in range: {diags:?}"
                );
            }
        }
    }

    /// Any duration in any config key: accepted only up to its documented maximum.
    #[test]
    fn config_durations_are_within_their_ranges_or_refused_at_the_value(
        key in prop::sample::select(vec![
            ("envs.new", "connect_timeout"),
            ("envs.new", "request_timeout"),
            ("limits", "header_read_timeout"),
            ("limits", "body_read_timeout"),
            ("limits", "body_rate_grace"),
            ("limits", "idle_timeout"),
            ("proxy", "drain_timeout"),
            ("retry_budget", "window"),
            ("probes", "interval"),
            ("probes", "timeout"),
        ]),
        value in duration_text(),
    ) {
        let (table, name) = key;
        let envs = ["old", "new", "fallback"]
            .iter()
            .enumerate()
            .filter(|(_, e)| format!("envs.{e}") != table)
            .map(|(i, e)| format!("[envs.{e}]\nupstreams = [\"127.0.0.1:{}\"]\n", i + 1))
            .collect::<String>();
        let text = format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n{envs}[{table}]\n{}{name} = \"{value}\"\n",
            if table == "envs.new" { "upstreams = [\"127.0.0.1:2\"]\n" } else { "" }
        );
        let full = format!("{table}.{name}");
        match Config::parse(&text, "c.toml") {
            Ok(_) => {
                let d = parsed(&value);
                prop_assert!(d.is_some_and(|d| !d.is_zero() && d <= duration_max(&full)), "{full} = {value} accepted");
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(&full), "{msg}");
                let d = parsed(&value);
                prop_assert!(d.is_none_or(|d| d.is_zero() || d > duration_max(&full)), "{msg}");
            }
        }
    }

    /// No tick length, however absurd, panics the machine (ramps, moves, holds saturate).
    #[test]
    fn any_tick_length_is_safe(secs in any::<u64>(), nanos in 0u32..1_000_000_000, weight in 0u32..=10_000) {
        let dt = Duration::new(secs, nanos);
        let plan = parse("name = \"t\"\n[[steps]]\nweight = 10\nhold = \"7d\"\n[[steps]]\nweight = 100\n[rollback]\nramp = \"24h\"\n").unwrap();
        let obs = Observation { health: Health::Healthy, old_degraded: None, notes: Vec::new() };
        let set = apply(&Control::default(), Cmd::SetWeight(cutover::router::Weight::from_bp(weight)), "t", None).unwrap().control;
        let mut ctl = apply(&set, Cmd::Start { plan, plan_hash: "h".into(), run_id: 1 }, "t", None).unwrap().control;
        for _ in 0..4 {
            if let cutover::orchestrator::Tick::Transition(t) = tick(&ctl, dt, &obs) {
                ctl = t.control;
            }
        }
        let rolled = apply(&ctl, Cmd::Rollback, "t", None).map(|t| t.control).unwrap_or(ctl);
        let _ = tick(&rolled, dt, &obs);
        let _ = eval_interval(&Analysis { interval: dt, ..Analysis::default() });
        let _ = Instant::now().checked_add(eval_interval(&Analysis { interval: dt, ..Analysis::default() })).expect("bounded");
    }
}

fn plan_check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("p.toml");
    std::fs::write(&file, text).expect("write");
    let out = Command::new(common::server::bin())
        .args(["plan", "check"])
        .arg(&file)
        .output()
        .expect("plan check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).replace(&file.display().to_string(), "p.toml"),
    )
}

/// Through the binary: a window longer than the metric rings keep and an interval near the
/// parser's maximum are refused with file:line:col, not clamped or left to panic the driver.
#[test]
fn plan_check_refuses_out_of_range_durations_with_positions() {
    let (ok, err) =
        plan_check("name = \"x\"\n[analysis]\nwindow = \"5m\"\n[[steps]]\nweight = 100\n");
    assert!(!ok);
    assert!(
        err.starts_with("p.toml:3:10: `window` is 5m, outside its range from 1ms to 2m"),
        "{err}"
    );
    let (ok, err) = plan_check(
        "name = \"x\"\n[analysis]\ninterval = \"18446744073709551615s\"\nwindow = \"18446744073709551615s\"\n[[steps]]\nweight = 100\n",
    );
    assert!(!ok);
    assert!(err.contains("p.toml:3:12: `interval` is"), "{err}");
    assert!(err.contains("outside its range from 10ms to 1m"), "{err}");
    let (ok, err) = plan_check(
        "name = \"x\"\n[[steps]]\nweight = 100\nhold = \"30d\"\n[rollback]\nramp = \"2d\"\n",
    );
    assert!(!ok);
    assert!(err.contains("p.toml:4:8: `hold` is 30days"), "{err}");
    assert!(err.contains("p.toml:6:8: `ramp` is 2days"), "{err}");
}

/// Through the binary: a config duration beyond its documented maximum is refused at start
/// with file:line:col and the key (a year-long retry-budget window allocated a cell per second).
#[test]
fn serve_refuses_an_out_of_range_config_duration_with_its_position() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[listen]\naddr = \"127.0.0.1:0\"\n[envs.old]\nupstreams = [\"127.0.0.1:1\"]\n\
         [envs.new]\nupstreams = [\"127.0.0.1:2\"]\n[envs.fallback]\nupstreams = [\"127.0.0.1:3\"]\n\
         [retry_budget]\nwindow = \"365days\"\n",
    )
    .expect("write");
    let (code, err) = common::server::serve_refused(&path);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("c.toml:10:10:"), "{err}");
    assert!(err.contains("retry_budget.window"), "{err}");
    assert!(
        err.contains("longer than the most this key allows, 10m"),
        "{err}"
    );
}
