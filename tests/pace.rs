//! Issue 19 §3 through the real binary: no command moves many users at once. Resume, a start
//! below the current weight, and a rollback after abort walk the weight at the plan's
//! `[rollback] ramp` pace; `set-weight` is immediate unless given `--ramp`; every event records
//! the weight before and after it.

mod common;

use std::time::Duration;

use common::server::Server;
use common::{server_with, WAIT};
use serde_json::{json, Value};

/// No gates (time alone judges), a long first step, a 4 s pace.
const PLAN: &str = "name = \"pace\"\n[analysis]\ninterval = \"100ms\"\nwindow = \"1s\"\n\
                    [[steps]]\nweight = 10\nhold = \"10m\"\n[[steps]]\nweight = 100\n\
                    [rollback]\nramp = \"4s\"\n";

/// Polls the weight until it reaches `target`; returns every distinct weight seen on the way.
async fn weights_until(s: &Server, target: f64, secs: u64) -> Vec<f64> {
    let mut seen: Vec<f64> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        let w = s.status().await["weight"].as_f64().unwrap_or(-1.0);
        if seen.last() != Some(&w) {
            seen.push(w);
        }
        if w == target {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("weight never reached {target}: {seen:?}");
}

/// The path from `from` to `to` went through weights strictly between them: a walk, not a jump.
fn walked(seen: &[f64], from: f64, to: f64) {
    let (lo, hi) = if from < to { (from, to) } else { (to, from) };
    let between = seen.iter().filter(|w| **w > lo && **w < hi).count();
    assert!(between >= 2, "{from} → {to} jumped: {seen:?}");
}

async fn post(s: &Server, path: &str, body: Value) -> (u16, Value) {
    let r = s
        .api()
        .post(s.url(path))
        .json(&body)
        .send()
        .await
        .expect("post");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_moves_are_ramped_and_every_event_records_before_and_after() {
    let (s, _envs, _dir) = server_with("").await;

    // start while 40 % of users are on NEW: down to step 1's 10 % at the plan's pace.
    assert_eq!(post(&s, "/v1/weight", json!({"weight": 40})).await.0, 200);
    s.start_plan(PLAN).await;
    let st = s.status().await;
    assert!(
        st["weight"].as_f64().unwrap_or(0.0) > 30.0,
        "start jumped: {st:#}"
    );
    walked(&weights_until(&s, 10.0, 20).await, 40.0, 10.0);

    // set-weight is the operator's immediate override; resume ramps back, it does not jump.
    let (code, _, err) = s.cli(&["set-weight", "20"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.status().await["weight"], 20.0);
    let (code, _, err) = s.cli(&["resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(s.status().await["weight"].as_f64().unwrap_or(0.0) > 17.0);
    walked(&weights_until(&s, 10.0, 20).await, 20.0, 10.0);
    assert_eq!(s.status().await["state"], "running");

    // After abort, rollback works (no longer 409) and is ramped.
    let (code, _, err) = s.cli(&["abort"]);
    assert_eq!(code, 0, "{err}");
    let (code, body) = post(&s, "/v1/rollback", json!({})).await;
    assert_eq!(code, 200, "{body:#}");
    assert_eq!(body["state"], "rolling_back");
    walked(&weights_until(&s, 0.0, 20).await, 10.0, 0.0);
    s.wait_for_state("rolled_back", WAIT).await;

    // set-weight with a ramp, from the CLI and the API.
    let (code, _, err) = s.cli(&["set-weight", "30", "--ramp", "3s"]);
    assert_eq!(code, 0, "{err}");
    walked(&weights_until(&s, 30.0, 20).await, 0.0, 30.0);
    let (code, body) = post(&s, "/v1/weight", json!({"weight": 0, "ramp": "forever"})).await;
    assert_eq!(code, 400, "{body:#}");
    assert_eq!(
        s.status().await["weight"],
        30.0,
        "a bad ramp changed nothing"
    );

    // Every event says where users were before it and after it.
    let events = s.events().await;
    assert!(events.len() >= 8, "{events:#?}");
    for e in &events {
        let (b, a) = (&e["data"]["weight_before"], &e["data"]["weight_after"]);
        assert!(b.is_f64() && a.is_f64(), "{e:#}");
        assert_eq!(a, &e["weight"], "{e:#}");
    }
    let start = events
        .iter()
        .find(|e| e["action"] == "start")
        .expect("start");
    assert_eq!(start["data"]["weight_before"], 40.0, "{start:#}");
}
