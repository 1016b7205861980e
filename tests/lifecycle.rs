//! A run driven by its holds through the real binary, and crash safety with kill -9 (issue 3).

mod common;

use std::time::Duration;

use common::server::{write_config, Server};
use common::{server_with, sim_envs, wait_in_flight, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_from_the_cli_advances_by_its_holds_and_completes() {
    let (s, _envs, dir) = server_with("").await;
    let plan = dir.path().join("quick.toml");
    std::fs::write(
        &plan,
        "name = \"quick\"\n[analysis]\ninterval = \"200ms\"\nwindow = \"1s\"\n\
         [[steps]]\nweight = 10\nhold = \"1s\"\n[[steps]]\nweight = 50\nhold = \"1s\"\n[[steps]]\nweight = 100\n",
    )
    .expect("plan");
    let (code, out, err) = s.cli(&["start", plan.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("plan quick"), "{out}");
    let st = s.wait_for_state("completed", Duration::from_secs(15)).await;
    assert_eq!(st["weight"], 100.0);
    let actions: Vec<String> = s
        .events()
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        actions.first().map(String::as_str),
        Some("start"),
        "{actions:?}"
    );
    assert_eq!(
        actions.last().map(String::as_str),
        Some("complete"),
        "{actions:?}"
    );
    // Weights only ever rose, step by step.
    let weights: Vec<f64> = s
        .events()
        .await
        .iter()
        .filter_map(|e| e["weight"].as_f64())
        .collect();
    assert!(weights.windows(2).all(|w| w[0] <= w[1]), "{weights:?}");
    assert!(
        weights.contains(&10.0) && weights.contains(&50.0),
        "{weights:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_resumes_at_the_same_step_and_weight_with_events_intact() {
    let [old, new, fallback] = sim_envs().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), old.addr, new.addr, fallback.addr, "");
    let mut s = Server::start(&cfg);
    let plan = "name = \"crashy\"\n[analysis]\ninterval = \"200ms\"\nwindow = \"1s\"\n\
                [[steps]]\nweight = 10\nhold = \"500ms\"\n[[steps]]\nweight = 30\nhold = \"60s\"\n[[steps]]\nweight = 100\n";
    s.start_plan(plan).await;
    s.wait_status("weight 30", WAIT, |st| st["weight"] == 30.0)
        .await;
    // Serve a few seconds of the 60 s hold, then crash hard. Progress is saved about every
    // second: with 3 s served, at least the first 1.8 s are stored.
    let before = s
        .wait_status("3 s of the hold served", WAIT, |st| {
            st["hold_remaining_s"].as_f64().is_some_and(|l| l <= 57.0)
        })
        .await;
    let events_before = s.events().await;
    assert_eq!(before["state"], "running");
    assert_eq!(before["step"], 2);
    s.kill9();

    let s2 = Server::start(&cfg);
    let after = s2.status().await;
    assert_eq!(after["state"], "running", "{after}");
    assert_eq!(after["step"], 2, "{after}");
    assert_eq!(after["weight"], 30.0, "{after}");
    let left = after["hold_remaining_s"].as_f64().expect("hold remaining");
    assert!(
        left < 59.0,
        "the hold served before the crash was lost: {left}s left"
    );
    assert_eq!(
        s2.events().await,
        events_before,
        "the event log changed across the crash"
    );
    // And the proxy routes at the resumed weight from its first request.
    let web = reqwest::Client::new();
    let mut on_new = 0;
    for i in 0..400 {
        let r = web
            .get(s2.proxy_url("/"))
            .header("x-user-id", format!("u{i}"))
            .send()
            .await
            .expect("get");
        if r.headers()["x-cutover-served-by"] == "new" {
            on_new += 1;
        }
    }
    assert!(
        (80..=160).contains(&on_new),
        "{on_new} of 400 on NEW at 30%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_store_is_refused() {
    let [old, new, fallback] = sim_envs().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), old.addr, new.addr, fallback.addr, "");
    let _s = Server::start(&cfg);
    let out = std::process::Command::new(common::server::bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lock"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let [old, new, fallback] = sim_envs().await;
    old.behaviour
        .latency_ms
        .store(1500, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start(&write_config(
        dir.path(),
        old.addr,
        new.addr,
        fallback.addr,
        "",
    ));
    let url = s.proxy_url("/slow");
    let inflight =
        tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    wait_in_flight(&old, 1).await;
    let code = tokio::task::spawn_blocking(move || {
        let code = s.sigterm(Duration::from_secs(10));
        (code, s)
    })
    .await
    .expect("join");
    assert_eq!(
        inflight.await.expect("join").expect("answered"),
        200,
        "in-flight request was cut"
    );
    assert_eq!(code.0, Some(0), "exit code after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_names_file_line_and_key_and_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[listen]\naddr = \"127.0.0.1:0\"\n[envs.old]\nupstreams = [\"nowhere\"]\n[envs.new]\nupstream = []\n")
        .expect("write");
    let out = std::process::Command::new(common::server::bin())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:6:1:"), "{err}");
    assert!(err.contains("upstream"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_step_check_pauses_and_moves_nobody() {
    let [old, new, fallback] = sim_envs().await;
    // The maintenance window left NEW's database pool half configured.
    new.behaviour
        .pool_size
        .store(20, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(&write_config(
        dir.path(),
        old.addr,
        new.addr,
        fallback.addr,
        "",
    ));
    let plan = "name = \"checked\"\n[analysis]\ninterval = \"200ms\"\nwindow = \"1s\"\n\
                [[steps]]\nweight = 25\nhold = \"60s\"\n\
                [[steps.checks]]\nenv = \"new\"\nhttp_get = \"/healthz\"\nexpect_status = 200\n\
                expect_json = { pointer = \"/pool_size\", equals = 40 }\n\
                [[steps]]\nweight = 100\n";
    s.start_plan(plan).await;
    let st = s.wait_for_state("paused", WAIT).await;
    let reason = st["reason"].as_str().unwrap_or("");
    assert!(reason.contains("/pool_size is 20, expected 40"), "{st:#}");
    assert_eq!(st["weight"], 0.0, "a user moved although the check failed");
    // Fixed: resume re-runs the check, and the step's weight is applied.
    new.behaviour
        .pool_size
        .store(40, std::sync::atomic::Ordering::SeqCst);
    let (code, _, err) = s.cli(&["resume", "--reason", "pool fixed"]);
    assert_eq!(code, 0, "{err}");
    s.wait_status("weight 25", WAIT, |st| st["weight"] == 25.0)
        .await;
    assert_eq!(s.status().await["state"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_of_every_env_reach_the_status() {
    let [old, new, fallback] = sim_envs().await;
    new.behaviour
        .error_permille
        .store(1000, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = "[probes]\ninterval = \"100ms\"\n";
    let cfg = write_config(dir.path(), old.addr, new.addr, fallback.addr, extra);
    let text = std::fs::read_to_string(&cfg)
        .expect("read")
        .replace("upstreams = [", "probe_path = \"/healthz\"\nupstreams = [");
    std::fs::write(&cfg, text).expect("write");
    let s = Server::start(&cfg);
    s.wait_status("probes of old and fallback up, new down", WAIT, |st| {
        st["envs"]["old"]["probe_success"] == 1.0
            && st["envs"]["fallback"]["probe_success"] == 1.0
            && st["envs"]["new"]["probe_success"] == 0.0
    })
    .await;
}
