//! Fallback, retry budget and timeouts through real sockets (issue 2).

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{client, get_as, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_new_is_answered_by_fallback_even_for_a_post() {
    let p = TestProxy::start(100.0, "").await;
    p.new.stop();
    let c = client();
    for i in 0..20 {
        let (status, env) = get_as(&c, &p.url("/page"), &format!("u{i}")).await;
        assert_eq!((status, env.as_str()), (200, "fallback"));
    }
    // Nothing of a refused request reached NEW, so even a POST with a body is safe to replay.
    let resp = c
        .post(p.url("/orders"))
        .header("x-user-id", "buyer")
        .body("x".repeat(10_000))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-cutover-served-by"], "fallback");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["body_bytes"], 10_000);
    assert!(p.fallback.behaviour.served.load(SeqCst) >= 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_closing_without_answer_gets_gets_replayed_but_not_posts() {
    let p = TestProxy::start(100.0, "").await;
    p.new.behaviour.close_without_answer.store(true, SeqCst);
    let c = client();
    let (status, env) = get_as(&c, &p.url("/page"), "reader").await;
    assert_eq!(
        (status, env.as_str()),
        (200, "fallback"),
        "an idempotent GET is replayed"
    );
    let resp = c
        .post(p.url("/orders"))
        .header("x-user-id", "buyer")
        .body("x".repeat(100_000))
        .send()
        .await
        .expect("post");
    assert_eq!(
        resp.status(),
        502,
        "a POST that reached NEW must not be replayed"
    );
    assert_eq!(resp.headers()["x-cutover-error"], "reset");
    let text = resp.text().await.expect("text");
    assert!(
        text.contains("new environment closed the connection"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_caps_fallback_retries() {
    // ratio 0: only the reserve of 1/s over 10 s = 10 retries.
    let p = TestProxy::start(
        100.0,
        "[retry_budget]\nratio = 0.0\nmin_per_sec = 1\nwindow = \"10s\"",
    )
    .await;
    p.new.stop();
    let c = client();
    let mut by_fallback = 0;
    let mut refused = 0;
    for i in 0..60 {
        match get_as(&c, &p.url("/"), &format!("u{i}")).await {
            (200, env) if env == "fallback" => by_fallback += 1,
            (502, env) if env == "new" => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(by_fallback, 10, "retries beyond the budget");
    assert_eq!(refused, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_env_times_out_with_504_and_is_not_replayed() {
    let p = TestProxy::start(100.0, "").await;
    let text = common::config_text(p.old.addr, p.new.addr, p.fallback.addr, "")
        .replace(
            "[envs.new]\nupstreams",
            "[envs.new]\nrequest_timeout = \"300ms\"\nupstreams",
        )
        .replace(
            "request_timeout = \"5s\"\n[envs.fallback]",
            "\n[envs.fallback]",
        );
    let cfg = cutover::config::Config::parse(&text, "t.toml").expect("config");
    assert_eq!(cfg.new.request_timeout, Duration::from_millis(300));
    let proxy = std::sync::Arc::new(cutover::proxy::Proxy::new(
        &cfg,
        p.router.clone(),
        p.metrics.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(common::any_port())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(cutover::proxy::serve(
        listener,
        proxy,
        Duration::from_secs(1),
        std::future::pending(),
    ));
    p.new.behaviour.latency_ms.store(3_000, SeqCst);
    let c = client();
    let start = Instant::now();
    let (status, env) = get_as(&c, &format!("http://{addr}/slow"), "patient").await;
    assert_eq!((status, env.as_str()), (504, "new"));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(
        p.fallback.behaviour.served.load(SeqCst),
        0,
        "a timeout must not be replayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_when_fallback_is_down_too() {
    let p = TestProxy::start(100.0, "").await;
    p.new.stop();
    p.fallback.stop();
    let c = client();
    let (status, env) = get_as(&c, &p.url("/"), "unlucky").await;
    assert_eq!((status, env.as_str()), (502, "new"));
}
