//! Upstream faults through a fault proxy (issue 9): black-holed, SYN-black-holed, resetting,
//! slow and flapping upstreams give bounded latency and clear errors, and the analyzer sees
//! them in the status envs.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fault::{Fault, Mode, SynBlackHole};
use common::server::Server;
use common::{any_port, client, sim_envs, TestProxy, WAIT};
use cutover::config::Config;
use cutover::metrics::Scope;
use cutover::proxy::{Live, Proxy};

/// A proxy sharing `p`'s router, metrics, OLD and FALLBACK, with NEW at `new` (plus `keys`).
async fn proxy_with_new(p: &TestProxy, new: SocketAddr, keys: &str) -> SocketAddr {
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[envs.old]\nupstreams = [\"{}\"]\n\
         [envs.new]\nupstreams = [\"{new}\"]\n{keys}\n[envs.fallback]\nupstreams = [\"{}\"]\n",
        p.old.addr, p.fallback.addr
    );
    let cfg = Config::parse(&text, "faults.toml").expect("config");
    let proxy = Arc::new(Proxy::new(&cfg, p.router.clone(), p.metrics.clone()));
    let listener = tokio::net::TcpListener::bind(any_port())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let live = Live::new(proxy, cfg.limits, Duration::from_secs(1));
    tokio::spawn(cutover::proxy::serve_live(
        listener,
        live,
        std::future::pending(),
    ));
    addr
}

/// GET as `user`: (status, served by, error code, latency).
async fn get(c: &reqwest::Client, addr: SocketAddr, user: &str) -> (u16, String, String, Duration) {
    let start = Instant::now();
    let r = c
        .get(format!("http://{addr}/x"))
        .header("x-user-id", user)
        .send()
        .await
        .expect("an answer");
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    (
        r.status().as_u16(),
        h("x-cutover-served-by"),
        h("x-cutover-error"),
        start.elapsed(),
    )
}

/// NEW over the last 30 s: (errors, requests answered by FALLBACK instead).
fn new_seen(p: &TestProxy) -> (u64, u64) {
    let w = p.metrics.window(Instant::now(), Duration::from_secs(30));
    let new = w.scope(Scope::New);
    (new.errors, new.displaced_to_fallback)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_upstream_times_out_at_request_timeout_and_is_not_replayed() {
    let p = TestProxy::start(100.0, "").await;
    let fault = Fault::start(p.new.addr).await;
    fault.set(Mode::BlackHole);
    let addr = proxy_with_new(&p, fault.addr, "request_timeout = \"500ms\"").await;
    let c = client();
    for i in 0..3 {
        let (status, env, code, took) = get(&c, addr, &format!("u{i}")).await;
        assert_eq!(
            (status, env.as_str(), code.as_str()),
            (504, "new", "timeout")
        );
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
            "{took:?}"
        );
    }
    assert_eq!(
        p.fallback.behaviour.served.load(SeqCst),
        0,
        "a timeout was replayed"
    );
    assert_eq!(new_seen(&p), (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syn_black_hole_costs_one_connect_timeout_then_fallback_answers() {
    let p = TestProxy::start(100.0, "").await;
    let hole = SynBlackHole::start().await;
    let addr = proxy_with_new(&p, hole.addr, "connect_timeout = \"300ms\"").await;
    let c = client();
    for i in 0..3 {
        let (status, env, _, took) = get(&c, addr, &format!("u{i}")).await;
        assert_eq!((status, env.as_str()), (200, "fallback"));
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
            "{took:?}"
        );
    }
    // Nothing reached NEW, so even a POST with a body is replayed.
    let r = c
        .post(format!("http://{addr}/orders"))
        .body("x".repeat(1000))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cutover-served-by"], "fallback");
    // Counted as displaced to FALLBACK (the user was answered), not as NEW's errors.
    assert_eq!(new_seen(&p), (0, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_slow_upstreams_give_fast_clear_answers() {
    let p = TestProxy::start(100.0, "").await;
    let fault = Fault::start(p.new.addr).await;
    let addr = proxy_with_new(&p, fault.addr, "request_timeout = \"500ms\"").await;
    let c = client();
    fault.set(Mode::Reset);
    for i in 0..3 {
        let (status, env, _, took) = get(&c, addr, &format!("r{i}")).await;
        assert_eq!(
            (status, env.as_str()),
            (200, "fallback"),
            "reset GET is replayed"
        );
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
    fault.set_delay(Duration::from_secs(3));
    fault.set(Mode::Slow);
    let (status, env, code, took) = get(&c, addr, "patient").await;
    assert_eq!(
        (status, env.as_str(), code.as_str()),
        (504, "new", "timeout")
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(new_seen(&p), (1, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_upstream_never_hangs_a_user() {
    let p = TestProxy::start(100.0, "").await;
    let mut fault = Fault::start(p.new.addr).await;
    fault.flap(Duration::from_millis(150));
    let addr = proxy_with_new(&p, fault.addr, "request_timeout = \"1s\"").await;
    let c = client();
    let (mut by_new, mut by_fallback, mut slowest) = (0, 0, Duration::ZERO);
    for i in 0..80 {
        let (status, env, code, took) = get(&c, addr, &format!("f{i}")).await;
        slowest = slowest.max(took);
        match (status, env.as_str()) {
            (200, "new") => by_new += 1,
            (200, "fallback") => by_fallback += 1,
            (502 | 504, "new") => assert!(!code.is_empty(), "an error without a cause"),
            other => panic!("unexpected answer {other:?}"),
        }
        // Spread over the flaps: some requests meet NEW up, some down.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The 1 s request timeout and a retry, with room for a loaded machine; without the
    // timeout a user would wait for the client's own (20 s).
    assert!(
        slowest < Duration::from_secs(3),
        "a user waited {slowest:?}"
    );
    assert!(
        by_new > 0 && by_fallback > 0,
        "new {by_new}, fallback {by_fallback}"
    );
    assert!(fault.accepted.load(SeqCst) > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analyzer_sees_upstream_faults_in_the_status_envs() {
    let envs = sim_envs().await;
    let fault = Fault::start(envs[1].addr).await;
    fault.set(Mode::BlackHole);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cutover.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[store]\npath = \"store\"\n\
             [envs.old]\nupstreams = [\"{}\"]\n[envs.new]\nupstreams = [\"{}\"]\nrequest_timeout = \"300ms\"\n\
             [envs.fallback]\nupstreams = [\"{}\"]\n",
            envs[0].addr, fault.addr, envs[2].addr
        ),
    )
    .expect("config");
    let s = Server::start(&cfg);
    s.set_weight(100.0).await;
    let c = client();
    let mut answers = Vec::new();
    for i in 0..10 {
        answers.push(get(&c, s.proxy, &format!("a{i}")).await);
    }
    assert!(
        answers
            .iter()
            .all(|a| a.0 == 504 && a.3 < Duration::from_secs(1)),
        "{answers:?}"
    );
    s.wait_status("the status to show NEW's errors", WAIT, |st| {
        st["envs"]["new"]["error_rate"].as_f64() > Some(0.5)
            && st["envs"]["users"]["error_rate"].as_f64() > Some(0.5)
    })
    .await;
}
