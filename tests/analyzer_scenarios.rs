//! The analyzer acting by itself on real upstreams with injected faults (issue 4, a–f).

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::load::Load;
use common::server::Server;
use common::{server_with, WAIT};
use cutover::demo::upstream::SimEnv;
use serde_json::Value;

struct World {
    s: Server,
    old: SimEnv,
    new: SimEnv,
    _fallback: SimEnv,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    world_with("").await
}

async fn world_with(extra: &str) -> World {
    let (s, [old, new, fallback], dir) = server_with(extra).await;
    World {
        s,
        old,
        new,
        _fallback: fallback,
        _dir: dir,
    }
}

const ANALYSIS: &str = "[analysis]\ninterval = \"250ms\"\nwindow = \"2s\"\nmin_requests = 20\n";

fn load(s: &Server) -> Load {
    Load::start(
        s.proxy_url("/"),
        6,
        500,
        Duration::from_millis(5),
        Duration::from_secs(40),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_answering_500s_is_rolled_back_and_ramps_to_zero() {
    let w = world().await;
    let traffic = load(&w.s);
    let plan = format!(
        "name = \"a\"\n{ANALYSIS}[[steps]]\nweight = 40\nhold = \"60s\"\n[[steps]]\nweight = 100\n\
         [[gates]]\nname = \"new errors\"\nmetric = \"new.error_rate\"\nmax = 0.05\nafter = 2\non_fail = \"rollback\"\n\
         [rollback]\nramp = \"2s\"\n"
    );
    w.s.start_plan(&plan).await;
    w.s.wait_status("step 1 at 40%", Duration::from_secs(10), |st| {
        st["weight"] == 40.0
    })
    .await;
    w.new.behaviour.error_permille.store(1000, SeqCst);
    let st =
        w.s.wait_status("a rollback", Duration::from_secs(10), |st| {
            st["state"] == "rolling_back" || st["state"] == "rolled_back"
        })
        .await;
    assert!(
        st["reason"]
            .as_str()
            .is_some_and(|r| r.contains("new errors")),
        "{st:#}"
    );
    let st =
        w.s.wait_status("rolled back", Duration::from_secs(10), |st| {
            st["state"] == "rolled_back"
        })
        .await;
    assert_eq!(st["weight"], 0.0);
    let events: Vec<Value> = w.s.events().await;
    let ramp: Vec<f64> = events
        .iter()
        .skip_while(|e| e["action"] != "rollback")
        .filter_map(|e| e["weight"].as_f64())
        .collect();
    assert!(ramp.len() >= 3, "the rollback did not ramp: {ramp:?}");
    assert!(ramp.windows(2).all(|p| p[0] >= p[1]), "{ramp:?}");
    let rollback = events
        .iter()
        .find(|e| e["action"] == "rollback")
        .expect("rollback event");
    assert_eq!(rollback["actor"], "analyzer");
    assert!(
        rollback["data"]["value"].as_f64().is_some_and(|v| v > 0.05),
        "{rollback}"
    );
    traffic.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_new_rejects_spill_onto_fallback_and_the_fallback_gate_pauses() {
    // FALLBACK may absorb every reject (the retry budget would otherwise turn them into errors).
    let w = world_with("[retry_budget]\nratio = 1.0\n").await;
    // NEW takes only one request at a time and answers 503 past it: its rejects land on FALLBACK.
    w.new.behaviour.max_inflight.store(1, SeqCst);
    w.new.behaviour.latency_ms.store(20, SeqCst);
    let traffic = load(&w.s);
    let plan = format!(
        "name = \"b\"\n{ANALYSIS}[[steps]]\nweight = 60\nhold = \"60s\"\n[[steps]]\nweight = 100\n\
         [[gates]]\nname = \"new errors\"\nmetric = \"new.error_rate\"\nmax = 0.05\nafter = 2\non_fail = \"rollback\"\n\
         [[gates]]\nname = \"fallback share\"\nmetric = \"fallback.share\"\nmax = 0.05\nafter = 2\non_fail = \"pause\"\n"
    );
    w.s.start_plan(&plan).await;
    let st =
        w.s.wait_status("a pause", Duration::from_secs(15), |st| {
            st["state"] == "paused"
        })
        .await;
    assert!(
        st["reason"]
            .as_str()
            .is_some_and(|r| r.contains("fallback")),
        "{st:#}"
    );
    assert!(
        st["envs"]["new"]["error_rate"]
            .as_f64()
            .is_some_and(|e| e <= 0.05),
        "NEW looked unhealthy: {st:#}"
    );
    assert!(
        st["displaced"]["to_fallback"]
            .as_u64()
            .is_some_and(|d| d > 0),
        "{st:#}"
    );
    traffic.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_a_new_three_times_slower_than_old_trips_the_relative_gate() {
    let w = world().await;
    w.old.behaviour.latency_ms.store(10, SeqCst);
    w.new.behaviour.latency_ms.store(40, SeqCst);
    let traffic = load(&w.s);
    let plan = format!(
        "name = \"c\"\n{ANALYSIS}[[steps]]\nweight = 50\nhold = \"60s\"\n[[steps]]\nweight = 100\n\
         [[gates]]\nname = \"new slower than old\"\nmetric = \"new.p99_ms\"\nmax_ratio_of = \"old.p99_ms\"\nratio = 2.0\nafter = 2\non_fail = \"pause\"\n"
    );
    w.s.start_plan(&plan).await;
    let st =
        w.s.wait_status("a pause", Duration::from_secs(15), |st| {
            st["state"] == "paused"
        })
        .await;
    assert!(
        st["reason"]
            .as_str()
            .is_some_and(|r| r.contains("new slower than old")),
        "{st:#}"
    );
    traffic.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_too_little_traffic_decides_nothing_and_says_why() {
    let w = world().await;
    let plan = format!(
        "name = \"d\"\n{ANALYSIS}[[steps]]\nweight = 10\nhold = \"500ms\"\n[[steps]]\nweight = 100\n\
         [[gates]]\nname = \"new errors\"\nmetric = \"new.error_rate\"\nmax = 0.05\non_fail = \"rollback\"\n"
    );
    w.s.start_plan(&plan).await;
    w.s.wait_status("the gate to judge", WAIT, |st| {
        st["gates"][0]["verdict"] == "not_enough_traffic"
    })
    .await;
    // Waiting out the 500 ms hold several times over is the test: still at step 1, since a
    // gate that cannot judge is not healthy yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = w.s.status().await;
    assert_eq!(st["state"], "running", "{st:#}");
    assert_eq!(st["step"], 1, "{st:#}");
    assert!(
        st["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not enough traffic")),
        "{st:#}"
    );
    assert_eq!(st["gates"][0]["verdict"], "not_enough_traffic", "{st:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_old_degrading_during_a_rollback_ramp_holds_the_ramp() {
    let w = world().await;
    let traffic = load(&w.s);
    let plan = format!(
        "name = \"e\"\n{ANALYSIS}[[steps]]\nweight = 80\nhold = \"60s\"\n[[steps]]\nweight = 100\n\
         [[gates]]\nname = \"old errors\"\nmetric = \"old.error_rate\"\nmax = 0.05\nafter = 1\non_fail = \"pause\"\n\
         [rollback]\nramp = \"20s\"\n"
    );
    w.s.start_plan(&plan).await;
    w.s.wait_status("step 1 at 80%", Duration::from_secs(10), |st| {
        st["weight"] == 80.0
    })
    .await;
    let resp =
        w.s.api()
            .post(w.s.url("/v1/rollback"))
            .json(&serde_json::json!({"reason": "drill"}))
            .send()
            .await
            .expect("rb");
    assert_eq!(resp.status(), 200);
    w.old.behaviour.error_permille.store(500, SeqCst);
    let st =
        w.s.wait_status("the ramp to hold", Duration::from_secs(10), |st| {
            st["reason"].as_str().is_some_and(|r| r.contains("holding"))
        })
        .await;
    assert_eq!(st["state"], "rolling_back");
    let held = st["weight"].as_f64().expect("weight");
    // That the ramp stays put for a while (eight evaluations) is the test.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = w.s.status().await;
    assert_eq!(
        st["weight"].as_f64(),
        Some(held),
        "the ramp moved users onto a degraded OLD: {st:#}"
    );
    assert_eq!(st["state"], "rolling_back");
    // OLD recovers: the ramp continues.
    w.old.behaviour.error_permille.store(0, SeqCst);
    w.s.wait_status("the ramp to continue", Duration::from_secs(15), |st| {
        st["weight"].as_f64().is_some_and(|x| x < held)
    })
    .await;
    traffic.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_a_healthy_run_completes_all_its_steps_by_itself() {
    let w = world().await;
    let traffic = load(&w.s);
    let plan = format!(
        "name = \"f\"\n{ANALYSIS}[[steps]]\nweight = 10\nhold = \"1s\"\n[[steps]]\nweight = 50\nhold = \"1s\"\n[[steps]]\nweight = 100\nhold = \"1s\"\n\
         [[gates]]\nname = \"new errors\"\nmetric = \"new.error_rate\"\nmax = 0.05\non_fail = \"rollback\"\n\
         [[gates]]\nname = \"users errors\"\nmetric = \"users.error_rate\"\nmax = 0.05\non_fail = \"rollback\"\n"
    );
    w.s.start_plan(&plan).await;
    let st =
        w.s.wait_status("completion", Duration::from_secs(25), |st| {
            st["state"] == "completed"
        })
        .await;
    assert_eq!(st["weight"], 100.0);
    let (sent, failed) = traffic.stop().await;
    assert!(sent > 100);
    assert_eq!(failed, 0, "users saw failures during a healthy run");
}
