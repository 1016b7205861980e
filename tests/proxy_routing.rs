//! The sticky weighted split through real sockets (issue 2).

mod common;

use std::collections::HashMap;

use common::{client, get_as, TestProxy};
use cutover::router::Weight;
use futures_util::future::join_all;

async fn envs_of(p: &TestProxy, users: &[String]) -> Vec<String> {
    let c = client();
    let url = p.url("/app");
    let chunks = users.chunks(100);
    let mut out = Vec::with_capacity(users.len());
    for chunk in chunks {
        let results = join_all(chunk.iter().map(|u| get_as(&c, &url, u))).await;
        for (status, env) in results {
            assert_eq!(status, 200);
            out.push(env);
        }
    }
    out
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_is_within_three_percent_and_sticky() {
    let p = TestProxy::start(30.0, "").await;
    let users = users(2000);
    let first = envs_of(&p, &users).await;
    let on_new = first.iter().filter(|e| *e == "new").count();
    let share = on_new as f64 / users.len() as f64;
    assert!((0.27..=0.33).contains(&share), "NEW share {share}");
    assert!(first.iter().all(|e| e == "new" || e == "old"));
    // Every user lands on the same env every time.
    for _ in 0..2 {
        assert_eq!(envs_of(&p, &users).await, first);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_never_moves_new_to_old_and_lowering_never_old_to_new() {
    let p = TestProxy::start(10.0, "").await;
    let users = users(1000);
    let mut prev = envs_of(&p, &users).await;
    for w in [25.0, 50.0, 75.0] {
        p.router.set_weight(Weight::from_percent(w));
        let now = envs_of(&p, &users).await;
        for (before, after) in prev.iter().zip(&now) {
            assert!(
                !(before == "new" && after == "old"),
                "a NEW user moved to OLD when raising to {w}%"
            );
        }
        prev = now;
    }
    for w in [40.0, 5.0, 0.0] {
        p.router.set_weight(Weight::from_percent(w));
        let now = envs_of(&p, &users).await;
        for (before, after) in prev.iter().zip(&now) {
            assert!(
                !(before == "old" && after == "new"),
                "an OLD user moved to NEW when lowering to {w}%"
            );
        }
        prev = now;
    }
    assert!(prev.iter().all(|e| e == "old"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_sources_in_order_and_client_ip_without_key() {
    let p = TestProxy::start(
        50.0,
        "[routing]\nuser_key = [\"header:x-user-id\", \"cookie:uid\", \"query:u\", \"client_ip\"]",
    )
    .await;
    let c = client();
    // The same user by header, cookie and query lands on the same env.
    let mut seen = HashMap::new();
    for i in 0..50 {
        let u = format!("u{i}");
        let (_, by_header) = get_as(&c, &p.url("/"), &u).await;
        let by_cookie = c
            .get(p.url("/"))
            .header("cookie", format!("a=b; uid={u}"))
            .send()
            .await
            .expect("req");
        let by_query = c.get(p.url(&format!("/?u={u}"))).send().await.expect("req");
        let env = |r: &reqwest::Response| {
            r.headers()["x-cutover-served-by"]
                .to_str()
                .expect("ascii")
                .to_owned()
        };
        assert_eq!(env(&by_cookie), by_header);
        assert_eq!(env(&by_query), by_header);
        seen.insert(u, by_header);
    }
    assert!(seen.values().any(|e| e == "new") && seen.values().any(|e| e == "old"));
    // No key at all: routed by client address, and stickily so.
    let (_, a) = get_as(&c, &p.url("/"), "").await;
    for _ in 0..5 {
        let r = c.get(p.url("/")).send().await.expect("req");
        assert_eq!(r.headers()["x-cutover-served-by"], a.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_header_needs_the_secret_and_is_stripped() {
    let p = TestProxy::start(0.0, "[routing]\noverride_secret = \"letmein\"").await;
    let c = client();
    let forced = c
        .get(p.url("/smoke"))
        .header("x-cutover-env", "new")
        .header("x-cutover-key", "letmein")
        .send()
        .await
        .expect("req");
    assert_eq!(forced.headers()["x-cutover-served-by"], "new");
    let body: serde_json::Value = forced.json().await.expect("json");
    assert!(
        body["headers"].get("x-cutover-env").is_none(),
        "override header leaked upstream"
    );
    assert!(
        body["headers"].get("x-cutover-key").is_none(),
        "override secret leaked upstream"
    );
    let wrong = c
        .get(p.url("/smoke"))
        .header("x-cutover-env", "new")
        .header("x-cutover-key", "guess")
        .send()
        .await
        .expect("req");
    assert_eq!(wrong.headers()["x-cutover-served-by"], "old");
    let body: serde_json::Value = wrong.json().await.expect("json");
    assert!(
        body["headers"].get("x-cutover-env").is_none(),
        "ignored header must still be stripped"
    );
}
