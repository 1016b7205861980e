//! Issue 19 §2 through the real binary: requests forced to an env by the override header (smoke
//! tests) are counted apart from the users' traffic, so a smoke test neither moves nor stalls a
//! run. Here a smoke test hammers a FALLBACK that answers every request 500 while a run guards
//! FALLBACK's error rate with a rollback gate: the run must not roll back, FALLBACK's scope must
//! stay empty (so its gate passes by design), and the smoke requests show in their own counter.
//! A forced WebSocket is counted apart the same way.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::load::Load;
use common::{server_with, WAIT};
use futures_util::StreamExt;

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

/// A smoke test of a WebSocket: an upgrade forced to NEW by the override header is carried to
/// NEW like any tunnel, but counted apart like any forced request — neither in NEW's scope nor
/// in `users`, and once in the override counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_websocket_is_counted_apart_too() {
    let (s, _envs, _dir) = server_with("[routing]\noverride_secret = \"smoke-secret\"\n").await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/ws", s.proxy),
    )
    .expect("request");
    req.headers_mut()
        .insert("x-cutover-env", "new".parse().expect("header"));
    req.headers_mut()
        .insert("x-cutover-key", "smoke-secret".parse().expect("header"));
    let (mut ws, answer) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    assert_eq!(answer.headers()["x-cutover-served-by"], "new");
    let hello = ws.next().await.expect("hello").expect("message");
    assert!(hello.is_text(), "{hello:?}");
    ws.close(None).await.expect("close");

    let metrics = s
        .api()
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for counted in [
        "cutover_override_requests_total{env=\"new\",result=\"ok\"} 1",
        "cutover_requests_total{env=\"new\"} 0",
        "cutover_user_requests_total 0",
    ] {
        assert!(metrics.contains(counted), "{counted} missing in\n{metrics}");
    }
}
