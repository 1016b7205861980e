//! Issue 19 §1 through the real binary: absence is not always a lack of evidence. Every shipped
//! plan, with its durations shrunk and `min_requests` lowered, completes on a healthy service
//! with steady traffic — although FALLBACK never gets a request and OLD has none at 100 %.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::load::Load;

use common::{eventually, server_with};
use serde_json::Value;

/// `plans/NAME.toml` with every hold 1s, a 3s window judged every 250ms, `min_requests = 5`,
/// the production plan's site-specific checks pointed at what the test upstreams serve, and
/// nothing else changed (same steps, same gates, same approvals).
fn compressed(name: &str) -> String {
    let path = format!("{}/plans/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("read plan");
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let line = match key {
            "hold" => "hold = \"1s\"".to_owned(),
            "interval" => "interval = \"250ms\"".to_owned(),
            "window" => "window = \"3s\"".to_owned(),
            "min_requests" => "min_requests = 5".to_owned(),
            "command" => "command = \"true\"".to_owned(),
            "http_get" => "http_get = \"/healthz\"".to_owned(),
            "expect_json" => "expect_json = { pointer = \"/pool_size\", equals = 40 }".to_owned(),
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

async fn completes(name: &str) {
    let (s, envs, _dir) = server_with("").await;
    // A service that does some work (20 ms an answer), so latency gates compare latencies
    // rather than loopback scheduling noise of a few hundred microseconds.
    for env in &envs {
        env.behaviour.latency_ms.store(20, SeqCst);
    }
    let traffic = Load::start(
        s.proxy_url("/"),
        6,
        500,
        Duration::from_millis(5),
        Duration::from_secs(90),
    );
    let plan = compressed(name);
    s.start_plan(&plan).await;
    let done = eventually(Duration::from_secs(80), || async {
        let st = s.status().await;
        if st["state"] == "awaiting_approval" {
            let _ = s.cli(&["approve", "--reason", "test"]);
        }
        !matches!(st["state"].as_str(), Some("running" | "awaiting_approval"))
    })
    .await;
    let st: Value = s.status().await;
    assert!(done, "{name}: did not finish: {st:#}");
    assert_eq!(st["state"], "completed", "{name}: {st:#}");
    assert_eq!(st["weight"], 100.0, "{name}");
    let events = s.events().await;
    let complete = events
        .iter()
        .find(|e| e["action"] == "complete")
        .expect("a complete event");
    let reason = complete["reason"].as_str().unwrap_or("");
    // A FALLBACK gate can never see traffic on a healthy run: it passed, and the decision
    // says why.
    if plan.contains("\"fallback.error_rate\"") {
        assert!(
            reason.contains("nothing was displaced to fallback"),
            "{name}: {reason}"
        );
    }
    let (sent, failed) = traffic.stop().await;
    assert!(sent > 100, "{name}: {sent}");
    assert_eq!(failed, 0, "{name}: users saw failures during a healthy run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_plan_completes_on_a_healthy_service() {
    completes("production").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_staging_plan_completes_on_a_healthy_service() {
    completes("staging").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_plan_completes_on_a_healthy_service() {
    completes("demo").await;
}

/// Every file in plans/ has a test above.
#[test]
fn every_shipped_plan_is_covered() {
    let dir = format!("{}/plans", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("plans/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["demo.toml", "production.toml", "staging.toml"]);
}
