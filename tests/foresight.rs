//! Issue 23 through the real binary: a recorded run replays to the decisions it made live, and
//! a run holds before a step whose rollback OLD could not absorb, saying so with the numbers,
//! until a plan opts out or a reload gives OLD room.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::load::Load;
use common::server::{write_config_envs, Server};
use common::{server_with, sim_envs, wait_until};
use cutover::cli::foresight::{run_simulation, SimulateArgs};
use cutover::foresight::{Approvals, Capacity};
use serde_json::Value;

/// A short plan: 25 % then 50 % then 100 %, judged every 250 ms over 2 s.
const PLAN: &str = r#"
name = "short"
[analysis]
interval = "250ms"
window = "2s"
min_requests = 5
[[steps]]
weight = 25
hold = "1s"
[[steps]]
weight = 50
hold = "1s"
[[steps]]
weight = 100
hold = "1s"
[[gates]]
name = "new errors"
metric = "new.error_rate"
max = 0.2
after = 2
on_fail = "rollback"
[rollback]
ramp = "0s"
"#;

fn steady_load(s: &Server) -> Load {
    Load::start(
        s.proxy_url("/"),
        4,
        400,
        Duration::from_millis(5),
        Duration::from_secs(60),
    )
}

/// (action, weight after, gate) of each decision, the live log's and the replay's alike.
type Line = (String, f64, Option<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_run_replays_to_the_decisions_it_made_live() {
    let (s, envs, dir) = server_with("").await;
    for env in &envs {
        env.behaviour.latency_ms.store(2, SeqCst);
    }
    let load = steady_load(&s);
    s.start_plan(PLAN).await;
    // NEW fails half of its requests once it carries half of the users: the gate rolls back.
    s.wait_status("step 2", Duration::from_secs(20), |st| st["step"] == 2)
        .await;
    envs[1].behaviour.error_permille.store(500, SeqCst);
    let end = s
        .wait_status("the rollback", Duration::from_secs(20), |st| {
            st["state"] != "running"
        })
        .await;
    load.stop().await;
    assert_eq!(end["state"], "rolled_back", "{end:#}");

    let live: Vec<Line> = s
        .events()
        .await
        .iter()
        .filter(|e| e["run_id"] == 1)
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_owned(),
                e["weight"].as_f64().unwrap_or(-1.0),
                e["data"]["gate"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let (code, traffic, err) = s.cli(&["metrics", "export", "--run", "1"]);
    assert_eq!(code, 0, "{err}");
    let ticks: Vec<Value> = traffic
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(ticks.len() >= 4, "a tick every 250 ms: {}", ticks.len());
    assert!(ticks
        .iter()
        .all(|t| t["scopes"]["new"]["requests"].is_u64()));

    let plan = dir.path().join("short.toml");
    let file = dir.path().join("traffic.jsonl");
    std::fs::write(&plan, PLAN).expect("plan");
    std::fs::write(&file, &traffic).expect("traffic");
    let sim = run_simulation(&SimulateArgs {
        plan: &plan,
        traffic: &file,
        approvals: Approvals::All,
        capacity: Capacity::default(),
        json: false,
    })
    .expect("simulate");
    let replayed: Vec<Line> = sim
        .decisions
        .iter()
        .map(|d| (d.action.as_str().to_owned(), d.weight_after, d.gate.clone()))
        .collect();
    assert_eq!(replayed, live, "the replay decides as the live run did");
    assert_eq!(
        live.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
        ["start", "advance", "rollback"],
        "{live:?}"
    );
    assert_eq!(sim.end.state.as_str(), "rolled_back");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("\ncutover_ticks_record_failures_total 0\n"),
        "every tick recorded: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_holds_before_a_step_old_could_not_take_back_and_says_why() {
    let envs = sim_envs().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // OLD can take 5 requests a second: far less than the test's users send.
    let cfg = write_config_envs(
        dir.path(),
        [envs[0].addr, envs[1].addr, envs[2].addr],
        ["capacity_rps = 5", "", ""],
        "",
    );
    let s = Server::start(&cfg);
    let load = steady_load(&s);
    s.start_plan(PLAN).await;
    let held = s
        .wait_status("a headroom hold", Duration::from_secs(20), |st| {
            st["reason"]
                .as_str()
                .is_some_and(|r| r.contains("rollback headroom"))
        })
        .await;
    let reason = held["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("a rollback from step 2 (50%) would send every user back to OLD")
            && reason.contains("it has 5")
            && reason.contains("holding before step 2"),
        "{reason}"
    );
    assert!(reason.contains("OLD would need "), "{reason}");
    let need = held["headroom"]["need_rps"]
        .as_f64()
        .expect("headroom in status");
    assert!(need > 5.0, "{held:#}");
    assert_eq!(held["headroom"]["old_capacity_rps"], 5.0);
    // It keeps holding while 1,000 more requests go through: nothing advances.
    let sent = load.sent.load(SeqCst);
    wait_until("1,000 more requests", Duration::from_secs(20), || async {
        let st = s.status().await;
        assert_eq!(
            (st["step"].as_u64(), st["weight"].as_f64()),
            (Some(1), Some(25.0)),
            "{st:#}"
        );
        load.sent.load(SeqCst) > sent + 1000
    })
    .await;
    assert!(s.events().await.iter().all(|e| e["action"] != "advance"));
    let (code, out, _) = s.cli(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("headroom"), "{out}");

    // An OLD being retired: the plan opts its steps out, and the run goes on to the end.
    let (code, _, err) = s.cli(&["abort", "--reason", "test"]);
    assert_eq!(code, 0, "{err}");
    let opted = PLAN
        .replace("weight = 50\n", "weight = 50\nheadroom_check = false\n")
        .replace("weight = 100\n", "weight = 100\nheadroom_check = false\n");
    s.start_plan(&opted).await;
    let done = s
        .wait_status("completion", Duration::from_secs(30), |st| {
            st["state"] == "completed"
        })
        .await;
    assert_eq!(done["weight"], 100.0);

    // Held again; then OLD is given room by a config reload, and the run goes on by itself.
    s.start_plan(PLAN).await;
    s.wait_status("a headroom hold again", Duration::from_secs(20), |st| {
        st["run_id"] == 3
            && st["reason"]
                .as_str()
                .is_some_and(|r| r.contains("rollback headroom"))
    })
    .await;
    write_config_envs(
        dir.path(),
        [envs[0].addr, envs[1].addr, envs[2].addr],
        ["capacity_rps = 1000000", "", ""],
        "",
    );
    let r = s
        .api()
        .post(s.url("/v1/reload"))
        .send()
        .await
        .expect("reload");
    let body: Value = r.json().await.expect("reload json");
    assert_eq!(
        body["changed"],
        serde_json::json!(["envs.old.capacity_rps"]),
        "{body}"
    );
    let done = s
        .wait_status(
            "completion after the reload",
            Duration::from_secs(30),
            |st| st["state"] == "completed",
        )
        .await;
    assert_eq!(done["headroom"]["old_capacity_rps"], 1_000_000.0);
    load.stop().await;
    for env in &envs {
        env.stop();
    }
}
