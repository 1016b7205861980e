//! Builders for integration tests: simulated envs, a proxy under test, and helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::config::Config;
use cutover::demo::upstream::SimEnv;
use cutover::metrics::Metrics;
use cutover::proxy::Live;
use cutover::proxy::Proxy;
use cutover::router::{Router, RoutingTable, Weight};
use tokio::sync::oneshot;

/// Simulated old, new and fallback environments on free loopback ports.
pub async fn sim_envs() -> [SimEnv; 3] {
    [
        SimEnv::start("old", any_port()).await.expect("old"),
        SimEnv::start("new", any_port()).await.expect("new"),
        SimEnv::start("fallback", any_port())
            .await
            .expect("fallback"),
    ]
}

/// The real binary in front of three simulated envs, with `extra` config appended.
pub async fn server_with(extra: &str) -> (server::Server, [SimEnv; 3], tempfile::TempDir) {
    let envs = sim_envs().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = server::write_config(dir.path(), envs[0].addr, envs[1].addr, envs[2].addr, extra);
    (server::Server::start(&cfg), envs, dir)
}

pub struct TestProxy {
    pub addr: SocketAddr,
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    pub proxy: Arc<Proxy>,
    /// What a reload swaps (the proxy above is its first value).
    pub live: Arc<Live>,
    pub old: SimEnv,
    pub new: SimEnv,
    pub fallback: SimEnv,
    pub stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<()>>,
}

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

/// A port nothing listens on (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

pub fn config_text(old: SocketAddr, new: SocketAddr, fallback: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[envs.old]
upstreams = ["{old}"]
request_timeout = "5s"
[envs.new]
upstreams = ["{new}"]
request_timeout = "5s"
[envs.fallback]
upstreams = ["{fallback}"]
request_timeout = "5s"
{extra}
"#
    )
}

impl TestProxy {
    /// Three simulated envs and a proxy in front of them at `weight` percent.
    pub async fn start(weight: f64, extra: &str) -> TestProxy {
        let [old, new, fallback] = sim_envs().await;
        let text = config_text(old.addr, new.addr, fallback.addr, extra);
        let cfg = Config::parse(&text, "test.toml").expect("config");
        let router = Arc::new(Router::new(RoutingTable::new(
            Weight::from_percent(weight),
            "test-salt",
        )));
        let metrics = Arc::new(Metrics::new());
        let proxy = Arc::new(Proxy::new(&cfg, router.clone(), metrics.clone()));
        let listener = tokio::net::TcpListener::bind(any_port())
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stop_rx) = oneshot::channel::<()>();
        let live = Live::new(proxy.clone(), cfg.limits, Duration::from_secs(5));
        let done = tokio::spawn(cutover::proxy::serve_live(listener, live.clone(), async {
            let _ = stop_rx.await;
        }));
        TestProxy {
            addr,
            router,
            metrics,
            proxy,
            live,
            old,
            new,
            fallback,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

/// GET `path` as `user`; returns (status, env that answered).
pub async fn get_as(c: &reqwest::Client, url: &str, user: &str) -> (u16, String) {
    let resp = c
        .get(url)
        .header("x-user-id", user)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let env = resp
        .headers()
        .get("x-cutover-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, env)
}

/// How long a test waits for something it expects: generous, because a loaded 2-core machine
/// may be slow, and spent in full only when the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(10);

/// Poll `f` until it is true (returns true) or `timeout` passes (returns false).
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Wait until `f` is true; after `timeout`, fail the test naming `what` it waited for.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        eventually(timeout, f).await,
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// [`eventually`] for a test without a runtime (or in a blocking section).
pub fn eventually_blocking(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_until`] for a test without a runtime (or in a blocking section).
pub fn wait_until_blocking(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(
        eventually_blocking(timeout, f),
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Wait until `env` has at least `n` requests in flight (they reached it and wait for their
/// answer).
pub async fn wait_in_flight(env: &SimEnv, n: usize) {
    let what = format!("{n} request(s) in flight at {}", env.name);
    wait_until(&what, WAIT, || async {
        env.behaviour
            .inflight
            .load(std::sync::atomic::Ordering::SeqCst)
            >= n
    })
    .await;
}

pub mod etcd;
pub mod fault;
pub mod load;
pub mod raw;
pub mod server;
