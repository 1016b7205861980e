//! Issue 19 §2 through the real binary: requests forced to an env by the override header (smoke
//! tests) are counted apart from the users' traffic, so a smoke test neither moves nor stalls a
//! run. Here a smoke test hammers a FALLBACK that answers every request 500 while a run guards
//! FALLBACK's error rate with a rollback gate: the run must not roll back, FALLBACK's scope must
//! stay empty (so its gate passes by design), and the smoke requests show in their own counter.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::load::Load;
use common::{server_with, WAIT};

const PLAN: &str = "name = \"smoke\"\n[analysis]\ninterval = \"250ms\"\nwindow = \"2s\"\nmin_requests = 20\n\
                    [[steps]]\nweight = 10\nhold = \"10m\"\n[[steps]]\nweight = 100\n\
                    [[gates]]\nname = \"fallback errors\"\nmetric = \"fallback.error_rate\"\nmax = 0.05\non_fail = \"rollback\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_test_neither_moves_nor_stalls_a_run() {
    let (s, [_old, _new, fallback], _dir) =
        server_with("[routing]\noverride_secret = \"smoke-secret\"\n").await;
    fallback.behaviour.error_permille.store(1000, SeqCst);
    let users = Load::start(
        s.proxy_url("/"),
        4,
        300,
        Duration::from_millis(5),
        Duration::from_secs(40),
    );
    s.start_plan(PLAN).await;

    // The smoke test: 200 forced requests to FALLBACK, every one answered 500 by it.
    let c = reqwest::Client::new();
    let mut failed = 0;
    for _ in 0..200 {
        let r = c
            .get(s.proxy_url("/smoke"))
            .header("x-cutover-env", "fallback")
            .header("x-cutover-key", "smoke-secret")
            .send()
            .await
            .expect("smoke request");
        if r.status() == 500 {
            failed += 1;
        }
    }
    assert_eq!(failed, 200, "the smoke test did not see FALLBACK's fault");

    // Several evaluations later the run still holds its step and the gate is not failing.
    let st = s
        .wait_status("the gate ok and 2 s of the hold served", WAIT, |st| {
            st["gates"][0]["verdict"] == "ok"
                && st["hold_remaining_s"].as_f64().unwrap_or(600.0) < 598.0
        })
        .await;
    assert_eq!(st["state"], "running", "a smoke test moved the run: {st:#}");
    assert_eq!(st["weight"], 10.0, "{st:#}");
    assert_eq!(st["envs"]["fallback"]["requests"], 0, "{st:#}");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("cutover_override_requests_total{env=\"fallback\",result=\"error\"} 200"),
        "{metrics}"
    );
    let (_, user_failures) = users.stop().await;
    assert_eq!(user_failures, 0);
}
