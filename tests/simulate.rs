//! `plan simulate` on the shipped traffic files: every plan under plans/ replayed on every file
//! under examples/traffic/, each decision asserted; and the binary's own output and errors.
//!
//! The files are deterministic (examples/traffic/generate.py), so a change of a decision here
//! is a change of what the analyzer or the machine decides, or of a shipped plan: look at the
//! new decisions with `cutover plan simulate PLAN --traffic FILE` and update the table.

use std::path::{Path, PathBuf};
use std::process::Command;

use cutover::cli::foresight::{run_simulation, SimulateArgs};
use cutover::foresight::{Approvals, Capacity, Simulation};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sim(plan: &str, traffic: &str, approvals: Approvals, capacity: Capacity) -> Simulation {
    let plan = root().join("plans").join(plan);
    let traffic = root().join("examples/traffic").join(traffic);
    run_simulation(&SimulateArgs {
        plan: &plan,
        traffic: &traffic,
        approvals,
        capacity,
        json: false,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The decisions as `action@weight [gate]`, consecutive ramps as `ramp xN`, then the end.
fn summary(s: &Simulation) -> Vec<String> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for d in &s.decisions {
        let mut tag = format!("{}@{}", d.action.as_str(), d.weight_after);
        if let Some(g) = &d.gate {
            tag.push_str(&format!(" [{g}]"));
        }
        match out.last_mut() {
            Some((last, n)) if last.starts_with("ramp@") && tag.starts_with("ramp@") => {
                *last = tag;
                *n += 1;
            }
            _ => out.push((tag, 1)),
        }
    }
    let mut lines: Vec<String> = out
        .into_iter()
        .map(|(t, n)| match n {
            1 => t,
            n => format!("ramp x{n}"),
        })
        .collect();
    let e = &s.end;
    lines.push(format!(
        "end {} step {} weight {}",
        e.state.as_str(),
        e.step,
        e.weight
    ));
    lines
}

/// Every shipped plan on every shipped file: (plan, traffic, decisions then end).
const EXPECTED: &[(&str, &str, &[&str])] = &[
    (
        "demo.toml",
        "healthy-day.jsonl",
        &[
            "start@10",
            "advance@25",
            "advance@50",
            "advance@90",
            "advance@100",
            "complete@100",
            "end completed step 5 weight 100",
        ],
    ),
    (
        "demo.toml",
        "new-slows-at-25.jsonl",
        &[
            "start@10",
            "advance@25",
            "advance@50",
            "rollback@50 [new slower than old]",
            "rolled_back@0",
            "end rolled_back step 3 weight 0",
        ],
    ),
    (
        "demo.toml",
        "fallback-saturates.jsonl",
        &[
            "start@10",
            "rollback@10 [new errors]",
            "rolled_back@0",
            "end rolled_back step 1 weight 0",
        ],
    ),
    (
        "production.toml",
        "healthy-day.jsonl",
        &[
            "start@0",
            "checks_passed@1",
            "advance@5",
            "advance@10",
            "await_approval@10",
            "approve@10",
            "checks_passed@25",
            "await_approval@25",
            "approve@50",
            "await_approval@50",
            "approve@100",
            "complete@100",
            "end completed step 6 weight 100",
        ],
    ),
    (
        "production.toml",
        "new-slows-at-25.jsonl",
        &[
            "start@0",
            "checks_passed@1",
            "pause@1 [new slower than old]",
            "end paused step 1 weight 1",
        ],
    ),
    (
        "production.toml",
        "fallback-saturates.jsonl",
        &[
            "start@0",
            "checks_passed@1",
            "rollback@1 [new errors]",
            "ramp x23",
            "rolled_back@0",
            "end rolled_back step 1 weight 0",
        ],
    ),
    (
        "staging.toml",
        "healthy-day.jsonl",
        &[
            "start@0",
            "checks_passed@10",
            "advance@50",
            "advance@100",
            "complete@100",
            "end completed step 3 weight 100",
        ],
    ),
    (
        "staging.toml",
        "new-slows-at-25.jsonl",
        &[
            "start@0",
            "checks_passed@10",
            "pause@10 [new slower than old]",
            "end paused step 1 weight 10",
        ],
    ),
    (
        "staging.toml",
        "fallback-saturates.jsonl",
        &[
            "start@0",
            "checks_passed@10",
            "advance@50",
            "advance@100",
            "complete@100",
            "end completed step 3 weight 100",
        ],
    ),
];

fn names(dir: &Path, ext: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ext))
        .collect();
    out.sort();
    out
}

#[test]
fn every_shipped_plan_replays_on_every_shipped_traffic_file_as_expected() {
    let plans = names(&root().join("plans"), ".toml");
    let files = names(&root().join("examples/traffic"), ".jsonl");
    assert!(plans.len() >= 3 && files.len() >= 3, "{plans:?} {files:?}");
    for plan in &plans {
        for file in &files {
            let Some((_, _, want)) = EXPECTED.iter().find(|(p, f, _)| p == plan && f == file)
            else {
                panic!("no expected decisions for {plan} on {file}: add them to EXPECTED");
            };
            let got = summary(&sim(plan, file, Approvals::All, Capacity::default()));
            assert_eq!(got, *want, "{plan} on {file}");
        }
    }
}

#[test]
fn a_gate_decision_carries_its_gate_value_and_threshold() {
    let s = sim(
        "staging.toml",
        "new-slows-at-25.jsonl",
        Approvals::All,
        Capacity::default(),
    );
    let pause = s.decisions.last().expect("a pause");
    assert_eq!(pause.gate.as_deref(), Some("new slower than old"));
    assert_eq!(pause.value, Some(600.0));
    assert_eq!(pause.threshold, Some(serde_json::json!(240.0)));
    assert!(pause.reason.contains("new.p99_ms = 600 > 2.0 x old.p99_ms"));
    assert_eq!(
        pause.t_s, 25.0,
        "three failing 5 s ticks after NEW slows at 15 s"
    );
}

#[test]
fn without_approvals_the_run_waits_at_the_first_one() {
    let s = sim(
        "production.toml",
        "healthy-day.jsonl",
        Approvals::None,
        Capacity::default(),
    );
    assert_eq!(s.end.state.as_str(), "awaiting_approval");
    assert_eq!((s.end.step, s.end.weight), (3, 10.0));
}

#[test]
fn a_step_whose_rollback_old_could_not_absorb_waits_for_the_demand_to_fall() {
    // The healthy day peaks at 1,000 rps at 16:00 and is above 800 from 12:00 to 20:00.
    let cap = Capacity {
        old: Some(800.0),
        fallback: None,
    };
    let free = sim(
        "production.toml",
        "healthy-day.jsonl",
        Approvals::All,
        Capacity::default(),
    );
    let held = sim("production.toml", "healthy-day.jsonl", Approvals::All, cap);
    let when = |s: &Simulation, action: &str, w: f64| {
        s.decisions
            .iter()
            .find(|d| d.action.as_str() == action && d.weight_after == w)
            .map(|d| d.t_s)
            .unwrap_or_else(|| panic!("no {action}@{w} in {:?}", summary(s)))
    };
    // Unchecked, step 5's hold ends at 12:17, with 810 rps of demand: held until 20:00.
    assert!(when(&free, "await_approval", 50.0) < 12.5 * 3600.0);
    let late = when(&held, "await_approval", 50.0);
    assert!(
        (19.9 * 3600.0..20.1 * 3600.0).contains(&late),
        "step 6 waited for the demand to fall under OLD's 800 rps: {late}s"
    );
    assert_eq!(held.end.state.as_str(), "completed");
    let h = held.end.headroom.expect("an estimate");
    assert_eq!(h.old_capacity_rps, 800.0);
}

#[test]
fn the_binary_prints_decisions_and_names_a_bad_traffic_line() {
    let bin = env!("CARGO_BIN_EXE_cutover");
    let out = Command::new(bin)
        .args(["plan", "simulate", "plans/staging.toml", "--traffic"])
        .arg("examples/traffic/new-slows-at-25.jsonl")
        .current_dir(root())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("pause"), "{text}");
    assert!(
        text.contains("end: paused at step 1 of 3, weight 10%"),
        "{text}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"t_ms\": 0, \"weight\": 10}\n# a comment\n{\"t_ms\": 1000, \"weight\": 10, \"scopes\": {\"new\": {\"requets\": 1}}}\n",
    )
    .expect("write");
    let out = Command::new(bin)
        .args(["plan", "simulate", "plans/staging.toml", "--traffic"])
        .arg(&bad)
        .current_dir(root())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("bad.jsonl:3: unknown field `requets`"),
        "{err}"
    );
}

#[test]
fn what_recorded_traffic_cannot_tell_is_said_not_guessed() {
    // The staging plan with a shadow-traffic step first and a query gate.
    let text = std::fs::read_to_string(root().join("plans/staging.toml")).expect("plan");
    let text = text.replacen(
        "[[steps]]\nweight = 10",
        "[[steps]]\nweight = 0\nmirror = 25\nhold = \"1m\"\n\n[[steps]]\nweight = 10",
        1,
    );
    let text = format!(
        "{text}\n[[gates]]\nname = \"db pool\"\nquery = 'max(db_pool_saturation)'\nmax = 0.8\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("shadow-first.toml");
    std::fs::write(&plan, text).expect("write");
    let traffic = root().join("examples/traffic/healthy-day.jsonl");
    let s = run_simulation(&SimulateArgs {
        plan: &plan,
        traffic: &traffic,
        approvals: Approvals::All,
        capacity: Capacity::default(),
        json: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // The query gate does not hold the replay, and the run goes on as staging's does.
    assert_eq!(
        summary(&s).last().map(String::as_str),
        Some("end completed step 4 weight 100"),
        "{:?}",
        summary(&s)
    );
    assert_eq!(s.caveats.len(), 2, "{:?}", s.caveats);
    assert!(s.caveats[0].contains("query gates \"db pool\" were left out"));
    assert!(s.caveats[1].starts_with("step(s) 1 copy users to NEW"));
    // The binary says so under the end line.
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["plan", "simulate"])
        .arg(&plan)
        .arg("--traffic")
        .arg(&traffic)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("\nnot simulated: ").count(), 2, "{text}");
    // The shipped plans replay without a caveat on the shipped traffic.
    for plan in names(&root().join("plans"), ".toml") {
        let s = sim(
            &plan,
            "healthy-day.jsonl",
            Approvals::All,
            Capacity::default(),
        );
        assert!(s.caveats.is_empty(), "{plan}: {:?}", s.caveats);
    }
}
