//! Issue 20 §2 through real sockets: an `https://` env verified against a test CA in
//! `ca_file` and given its own `Host`; certificates that fail verification counted as the env's
//! failed connects and replayed on FALLBACK; a host name whose addresses move (the hosts file
//! rewritten) followed within `resolve_interval`, and kept when the lookup fails.

mod common;
#[path = "common/testca.rs"]
mod testca;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client, get_as, sim_envs, wait_until, WAIT};
use cutover::config::Config;
use cutover::metrics::{Metrics, Scope};
use cutover::orchestrator::checks::run_all;
use cutover::proxy::{Live, Proxy};
use cutover::reload::check_upstreams;
use cutover::router::{Router, RoutingTable, Weight};
use cutover::tls::{CertFiles, ServerTls};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use testca::TestCa;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A test env: answers every request `200` with its name, and remembers what it saw.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    connections: AtomicU64,
    hosts: Mutex<Vec<String>>,
    /// Close each connection at its second request without answering (as an env that closed
    /// an idle connection just as the request was written).
    one_answer_per_connection: std::sync::atomic::AtomicBool,
}

/// Serve on `addr`, over TLS with `tls` if given.
async fn env_at(addr: SocketAddr, name: &'static str, tls: Option<Arc<ServerTls>>) -> Arc<Seen> {
    let listener = TcpListener::bind(addr).await.expect("bind the test env");
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            state.connections.fetch_add(1, SeqCst);
            let (state, tls) = (state.clone(), tls.clone());
            tokio::spawn(async move {
                let on_this = Arc::new(AtomicU64::new(0));
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (state, on_this) = (state.clone(), on_this.clone());
                    async move {
                        let once = state.one_answer_per_connection.load(SeqCst);
                        if once && on_this.fetch_add(1, SeqCst) > 0 {
                            return Err("closed without an answer");
                        }
                        state.requests.fetch_add(1, SeqCst);
                        let host = req.headers().get(http::header::HOST);
                        let host = host.and_then(|h| h.to_str().ok()).unwrap_or("");
                        state.hosts.lock().expect("lock").push(host.to_owned());
                        Ok(http::Response::new(Full::new(Bytes::from(name))))
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                    Some(tls) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                        if let Ok(s) = acceptor.accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                }
            });
        }
    });
    seen
}

/// A TLS configuration for a certificate of `names` (and 127.0.0.1) signed by `ca`.
fn server_tls(ca: &TestCa, names: &[&str]) -> Arc<ServerTls> {
    let leaf = ca.leaf("env", names);
    let files = CertFiles {
        cert: leaf.cert,
        key: leaf.key,
    };
    Arc::new(ServerTls::new(&[files], &[b"http/1.1"]).expect("server tls"))
}

/// The proxy under test: every user on NEW (`new` is its `[envs.new]` body), OLD and FALLBACK
/// simulated envs.
struct Proxied {
    url: String,
    metrics: Arc<Metrics>,
    _stop: oneshot::Sender<()>,
    _envs: [cutover::demo::upstream::SimEnv; 3],
}

async fn proxy(new: &str, extra: &str) -> Proxied {
    let envs = sim_envs().await;
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[envs.old]\nupstreams = [\"{}\"]\n\
         [envs.new]\n{new}\n[envs.fallback]\nupstreams = [\"{}\"]\n{extra}",
        envs[0].addr, envs[2].addr
    );
    let cfg = Config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let router = Arc::new(Router::new(RoutingTable::new(
        Weight::from_percent(100.0),
        "salt",
    )));
    let metrics = Arc::new(Metrics::new());
    let proxy = Arc::new(Proxy::new(&cfg, router, metrics.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let live = Live::new(proxy, cfg.limits, Duration::from_secs(5));
    tokio::spawn(cutover::proxy::serve_live(listener, live, async {
        let _ = stopped.await;
    }));
    Proxied {
        url: format!("http://{addr}/page"),
        metrics,
        _stop: stop,
        _envs: envs,
    }
}

/// Ten users' GETs and a POST through `p`, each answered by NEW (which `seen` counts).
async fn ten_gets_and_a_post_reach_new(p: &Proxied, seen: &Seen) {
    let c = client();
    for i in 0..10 {
        assert_eq!(
            get_as(&c, &p.url, &format!("u{i}")).await,
            (200, "new".to_owned())
        );
    }
    let resp = c.post(&p.url).body("order").send().await.expect("post");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "new");
    assert_eq!(seen.requests.load(SeqCst), 11);
}

fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

fn hosts_file(dir: &Path, text: &str) -> String {
    let path = dir.join("hosts");
    std::fs::write(&path, text).expect("write the hosts file");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_env_is_verified_with_its_ca_file_and_gets_its_host_header() {
    let ca = TestCa::new("cutover test CA");
    let port = free_port("127.0.0.1");
    let seen = env_at(
        ([127, 0, 0, 1], port).into(),
        "new",
        Some(server_tls(&ca, &["new.test"])),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = hosts_file(dir.path(), "127.0.0.1 new.test\n");
    let p = proxy(
        &format!(
            "upstreams = [\"https://new.test:{port}\"]\nca_file = \"{}\"\n\
             host_header = \"new.internal\"",
            ca.cert.display()
        ),
        &format!("[resolve]\nhosts_file = \"{hosts}\"\n"),
    )
    .await;
    ten_gets_and_a_post_reach_new(&p, &seen).await;
    let hosts = seen.hosts.lock().expect("lock").clone();
    assert!(hosts.iter().all(|h| h == "new.internal"), "{hosts:?}");
    assert!(
        seen.connections.load(SeqCst) < 11,
        "TLS connections are kept alive and reused: {} for 11 requests",
        seen.connections.load(SeqCst)
    );
}

/// NEW's certificate fails verification: each request is NEW's failed connect, replayed on
/// FALLBACK (even a POST: nothing was sent), and NEW never sees a request.
async fn fails_verification(new: &str, seen: &Seen) {
    let p = proxy(new, "").await;
    let c = client();
    for i in 0..5 {
        assert_eq!(
            get_as(&c, &p.url, &format!("u{i}")).await,
            (200, "fallback".to_owned()),
            "replayed on FALLBACK"
        );
    }
    let resp = c.post(&p.url).body("order").send().await.expect("post");
    assert_eq!(resp.headers()["x-cutover-served-by"], "fallback");
    assert_eq!(seen.requests.load(SeqCst), 0, "nothing reached NEW");
    // Counted in NEW's scope as a failed connect would be: displaced to FALLBACK.
    let w = p.metrics.window(Instant::now(), Duration::from_secs(60));
    let new = w.scope(Scope::New);
    assert_eq!(new.displaced_to_fallback, 6, "{new:?}");
    assert_eq!(new.displaced_rate, 1.0, "{new:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_unknown_ca_is_a_failed_connect_replayed_on_fallback() {
    let ca = TestCa::new("a CA nobody trusts");
    let port = free_port("127.0.0.1");
    let tls = Some(server_tls(&ca, &["new.test"]));
    let seen = env_at(([127, 0, 0, 1], port).into(), "new", tls).await;
    // No ca_file: the system's roots only.
    fails_verification(
        &format!("upstreams = [\"https://127.0.0.1:{port}\"]"),
        &seen,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_a_failed_connect_replayed_on_fallback() {
    let ca = TestCa::new("cutover test CA");
    let port = free_port("127.0.0.1");
    let tls = Some(server_tls(&ca, &["new.test"]));
    let seen = env_at(([127, 0, 0, 1], port).into(), "new", tls).await;
    let new = format!(
        "upstreams = [\"https://127.0.0.1:{port}\"]\nca_file = \"{}\"\nsni = \"other.test\"",
        ca.cert.display()
    );
    fails_verification(&new, &seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_whose_address_changes_is_followed_and_a_failed_lookup_keeps_the_last() {
    // Two loopback addresses on one port behind one name.
    let port = free_port("127.0.0.2");
    let a = env_at(([127, 0, 0, 2], port).into(), "new", None).await;
    let b = env_at(([127, 0, 0, 3], port).into(), "new", None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = hosts_file(dir.path(), "127.0.0.2 new.test\n");
    let p = proxy(
        &format!("upstreams = [\"http://new.test:{port}\"]\nresolve_interval = \"100ms\""),
        &format!("[resolve]\nhosts_file = \"{hosts}\"\n"),
    )
    .await;
    let c = client();
    let ok = |r: (u16, String)| assert_eq!(r, (200, "new".to_owned()));
    for i in 0..5 {
        ok(get_as(&c, &p.url, &format!("u{i}")).await);
    }
    assert_eq!((a.requests.load(SeqCst), b.requests.load(SeqCst)), (5, 0));

    // The name moves to the other address: traffic follows within the interval.
    hosts_file(dir.path(), "127.0.0.3 new.test\n");
    wait_until("traffic on the new address", WAIT, || async {
        ok(get_as(&c, &p.url, "mover").await);
        b.requests.load(SeqCst) > 0
    })
    .await;
    let on_a = a.requests.load(SeqCst);
    for i in 0..10 {
        ok(get_as(&c, &p.url, &format!("u{i}")).await);
    }
    assert_eq!(
        a.requests.load(SeqCst),
        on_a,
        "nothing goes to the address that left"
    );

    // Both addresses: both carry traffic.
    hosts_file(dir.path(), "127.0.0.2 new.test\n127.0.0.3 new.test\n");
    wait_until("traffic on both addresses", WAIT, || async {
        ok(get_as(&c, &p.url, "both").await);
        a.requests.load(SeqCst) > on_a
    })
    .await;

    // A hosts file that no longer parses (as a failed lookup) keeps the addresses in use:
    // requests keep being answered by NEW over several intervals.
    hosts_file(dir.path(), "not-an-address new.test\n");
    let until = Instant::now() + Duration::from_millis(600);
    let (before_a, before_b) = (a.requests.load(SeqCst), b.requests.load(SeqCst));
    let mut sent = 0;
    while Instant::now() < until || sent < 20 {
        ok(get_as(&c, &p.url, &format!("k{sent}")).await);
        sent += 1;
    }
    let after = a.requests.load(SeqCst) + b.requests.load(SeqCst);
    assert_eq!(after - before_a - before_b, sent, "every request on NEW");
}

/// The config of the probe and check tests: NEW at `https://127.0.0.1:port` named `new.test`
/// by `sni`, trusted through `ca`, with `host_header` (OLD and FALLBACK refuse).
fn https_new(ca: &TestCa, port: u16) -> Config {
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[envs.old]\nupstreams = [\"127.0.0.1:1\"]\n\
         [envs.new]\nupstreams = [\"https://127.0.0.1:{port}\"]\nca_file = \"{}\"\n\
         sni = \"new.test\"\nhost_header = \"new.internal\"\nprobe_path = \"/healthz\"\n\
         [envs.fallback]\nupstreams = [\"127.0.0.1:2\"]\n",
        ca.cert.display()
    );
    Config::parse(&text, "test.toml").expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_step_checks_reach_an_https_env_with_its_host_header() {
    let ca = TestCa::new("cutover test CA");
    let port = free_port("127.0.0.1");
    let tls = Some(server_tls(&ca, &["new.test"]));
    let seen = env_at(([127, 0, 0, 1], port).into(), "new", tls).await;
    let addrs = check_upstreams(&https_new(&ca, port));
    let check = |expect_status| cutover::plan::Check::HttpGet {
        env: cutover::router::Env::New,
        path: "/healthz".into(),
        expect_status,
        expect_json: None,
        timeout: Duration::from_secs(5),
    };
    let passed = run_all(&[check(200)], &addrs)
        .await
        .expect("the check passes");
    assert!(passed.contains("on 1 upstream address"), "{passed}");
    let failed = run_all(&[check(204)], &addrs)
        .await
        .expect_err("wrong status");
    assert!(failed.contains("https://127.0.0.1"), "{failed}");
    let hosts = seen.hosts.lock().expect("lock").clone();
    assert_eq!(hosts, ["new.internal", "new.internal"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_reach_an_https_env_with_its_host_header() {
    let ca = TestCa::new("cutover test CA");
    let port = free_port("127.0.0.1");
    let tls = Some(server_tls(&ca, &["new.test"]));
    let seen = env_at(([127, 0, 0, 1], port).into(), "new", tls).await;
    let metrics = Arc::new(Metrics::new());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let target = cutover::analyzer::ProbeTarget {
        env: cutover::router::Env::New,
        config: https_new(&ca, port).new,
        path: "/healthz".into(),
        hosts_file: None,
    };
    let task = tokio::spawn(cutover::analyzer::run_probes(
        vec![target],
        Duration::from_millis(20),
        Duration::from_secs(2),
        metrics.clone(),
        rx,
    ));
    wait_until("three probes", WAIT, || async {
        let w = metrics.window(Instant::now(), Duration::from_secs(60));
        w.scope(Scope::New).probes >= 3
    })
    .await;
    let w = metrics.window(Instant::now(), Duration::from_secs(60));
    assert_eq!(w.scope(Scope::New).probe_success, Some(1.0));
    let hosts = seen.hosts.lock().expect("lock").clone();
    assert!(hosts.iter().all(|h| h == "new.internal"), "{hosts:?}");
    let _ = stop.send(true);
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_on_a_tls_connection_the_env_closed_is_sent_again_on_a_new_one() {
    let ca = TestCa::new("cutover test CA");
    let port = free_port("127.0.0.1");
    let tls = Some(server_tls(&ca, &["new.test"]));
    let seen = env_at(([127, 0, 0, 1], port).into(), "new", tls).await;
    seen.one_answer_per_connection.store(true, SeqCst);
    let new = format!(
        "upstreams = [\"https://127.0.0.1:{port}\"]\nca_file = \"{}\"\nsni = \"new.test\"",
        ca.cert.display()
    );
    let p = proxy(&new, "").await;
    let c = client();
    for i in 0..4 {
        assert_eq!(
            get_as(&c, &p.url, &format!("u{i}")).await,
            (200, "new".to_owned()),
            "answered by NEW on a new connection, not replayed on FALLBACK"
        );
    }
    assert_eq!(seen.requests.load(SeqCst), 4);
    assert!(seen.connections.load(SeqCst) >= 4);
    let w = p.metrics.window(Instant::now(), Duration::from_secs(60));
    assert_eq!(w.scope(Scope::New).displaced_to_fallback, 0);
}

#[tokio::test]
async fn a_pre_step_check_on_a_refusing_env_names_it() {
    let dead = common::dead_addr();
    let text = common::config_text(dead, dead, dead, "");
    let addrs = check_upstreams(&Config::parse(&text, "test.toml").expect("config"));
    let check = cutover::plan::Check::HttpGet {
        env: cutover::router::Env::New,
        path: "/healthz".into(),
        expect_status: 200,
        expect_json: None,
        timeout: Duration::from_secs(2),
    };
    let err = run_all(&[check], &addrs).await.expect_err("refused");
    assert!(
        err.starts_with(&format!(
            "check GET {dead}/healthz at {dead} (new): cannot connect"
        )),
        "{err}"
    );
}

/// An env that speaks only HTTP/2 over TLS (ALPN `h2`), remembering each request's authority.
async fn h2_env_at(addr: SocketAddr, tls: Arc<ServerTls>) -> Arc<Seen> {
    let listener = TcpListener::bind(addr).await.expect("bind the test env");
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            state.connections.fetch_add(1, SeqCst);
            let (state, tls) = (state.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move {
                        state.requests.fetch_add(1, SeqCst);
                        let authority = req.uri().authority().map(|a| a.to_string());
                        let seen = format!("{:?} {}", req.version(), authority.unwrap_or_default());
                        state.hosts.lock().expect("lock").push(seen);
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from("new"),
                        )))
                    }
                });
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                if let Ok(s) = acceptor.accept(tcp).await {
                    let http = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let _ = http.serve_connection(TokioIo::new(s), svc).await;
                }
            });
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_env_behind_tls_is_spoken_to_in_http2_chosen_by_alpn() {
    let ca = TestCa::new("cutover test CA");
    let port = free_port("127.0.0.1");
    let leaf = ca.leaf("env", &["new.test"]);
    let files = CertFiles {
        cert: leaf.cert,
        key: leaf.key,
    };
    let tls = Arc::new(ServerTls::new(&[files], &[b"h2"]).expect("server tls"));
    let seen = h2_env_at(([127, 0, 0, 1], port).into(), tls).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = hosts_file(dir.path(), "127.0.0.1 new.test\n");
    let p = proxy(
        &format!(
            "upstreams = [\"https://new.test:{port}\"]\nca_file = \"{}\"\n\
             protocol = \"h2\"\nhost_header = \"new.internal\"",
            ca.cert.display()
        ),
        &format!("[resolve]\nhosts_file = \"{hosts}\"\n"),
    )
    .await;
    ten_gets_and_a_post_reach_new(&p, &seen).await;
    let hosts = seen.hosts.lock().expect("lock").clone();
    assert!(
        hosts.iter().all(|h| h == "HTTP/2.0 new.internal"),
        "{hosts:?}"
    );
    assert!(
        seen.connections.load(SeqCst) <= 2,
        "a worker's requests share its HTTP/2 connection: {} for 11 requests",
        seen.connections.load(SeqCst)
    );
}
