//! Shadow traffic through real sockets: copies of mirrored users' requests reach NEW marked
//! `x-cutover-mirror: 1`, users are answered by OLD even when NEW hangs or refuses, unsafe
//! methods are not copied unless the config allows them, request bodies are copied whole up to
//! a limit, mismatches are counted and sampled, and a mirror gate pauses a run of the real
//! binary.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client, config_text, dead_addr, wait_until, WAIT};
use cutover::config::Config;
use cutover::demo::upstream::SimEnv;
use cutover::metrics::{Metrics, MirrorCount, Scope};
use cutover::proxy::{Live, Proxy};
use cutover::router::{Router, RoutingTable, Weight};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use tokio::sync::oneshot;

/// A NEW that counts what it gets: every request, those marked as copies, and by method.
/// `status` 0 means: never answer (hang).
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    marked: AtomicU64,
    gets: AtomicU64,
    others: AtomicU64,
    status: AtomicU32,
    /// Each request's method, content-length header and body, in arrival order.
    bodies: std::sync::Mutex<Vec<(String, Option<String>, Bytes)>>,
}

struct Shadow {
    addr: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Shadow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shadow {
    /// Wait until what NEW counted satisfies `f`.
    async fn wait(&self, what: &str, f: impl Fn(&Counts) -> bool) {
        wait_until(what, WAIT, || std::future::ready(f(&self.counts))).await;
    }

    async fn start(status: u32) -> Shadow {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let counts = Arc::new(Counts::default());
        counts.status.store(status, SeqCst);
        let c = counts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let c = c.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let c = c.clone();
                        async move {
                            c.requests.fetch_add(1, SeqCst);
                            if req
                                .headers()
                                .get("x-cutover-mirror")
                                .is_some_and(|v| v == "1")
                            {
                                c.marked.fetch_add(1, SeqCst);
                            }
                            let method = req.method().to_string();
                            let length = req
                                .headers()
                                .get("content-length")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            if let Ok(body) = body {
                                if let Ok(mut seen) = c.bodies.lock() {
                                    seen.push((method.clone(), length, body));
                                }
                            }
                            if method == "GET" {
                                c.gets.fetch_add(1, SeqCst);
                            } else {
                                c.others.fetch_add(1, SeqCst);
                            }
                            let status = c.status.load(SeqCst);
                            if status == 0 {
                                std::future::pending::<()>().await;
                            }
                            let mut resp = hyper::Response::new(Full::new(Bytes::from("shadow")));
                            *resp.status_mut() =
                                http::StatusCode::from_u16(status as u16).expect("status");
                            // As the simulated OLD answers, plus a header compare ignores.
                            let h = resp.headers_mut();
                            h.insert("content-type", "application/json".parse().expect("v"));
                            h.insert("x-request-id", "shadow-1".parse().expect("v"));
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        Shadow { addr, counts, task }
    }
}

/// A proxy in front of a simulated OLD and `new`, at weight 0 with every user mirrored.
struct Front {
    addr: SocketAddr,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    old: SimEnv,
    _fallback: SimEnv,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.old.stop();
    }
}

impl Front {
    async fn start(new: SocketAddr, extra: &str, compare: bool) -> Front {
        let old = SimEnv::start("old", common::any_port()).await.expect("old");
        let fallback = SimEnv::start("fallback", common::any_port())
            .await
            .expect("fallback");
        let text = config_text(old.addr, new, fallback.addr, extra);
        let cfg = Config::parse(&text, "test.toml").expect("config");
        let table = RoutingTable::new(Weight::ZERO, "salt").with_mirror(Weight::FULL, compare);
        let router = Arc::new(Router::new(table));
        let metrics = Arc::new(Metrics::new());
        let proxy = Arc::new(Proxy::new(&cfg, router.clone(), metrics.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stop_rx) = oneshot::channel::<()>();
        let live = Live::new(proxy, cfg.limits, Duration::from_secs(5));
        tokio::spawn(cutover::proxy::serve_live(listener, live, async {
            let _ = stop_rx.await;
        }));
        Front {
            addr,
            router,
            metrics,
            old,
            _fallback: fallback,
            stop: Some(stop),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn mirror(&self) -> cutover::metrics::ScopeWindow {
        self.metrics
            .window(Instant::now(), Duration::from_secs(60))
            .scope(Scope::Mirror)
            .clone()
    }

    /// Wait until the mirror scope's last minute satisfies `f`.
    async fn wait_mirror(&self, what: &str, f: impl Fn(&cutover::metrics::ScopeWindow) -> bool) {
        wait_until(what, WAIT, || std::future::ready(f(&self.mirror()))).await;
    }

    /// `n` GETs as `n` users; every answer must be OLD's 200.
    async fn users_get(&self, n: usize) {
        let c = client();
        for i in 0..n {
            let resp = c
                .get(self.url(&format!("/item/{i}")))
                .header("x-user-id", format!("user-{i}"))
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["x-cutover-served-by"], "old");
            // Read to its end, as a user does: OLD's body is compared once it has streamed.
            resp.bytes().await.expect("body");
        }
    }
}

#[tokio::test]
async fn copies_reach_new_marked_while_old_answers_users() {
    let new = Shadow::start(200).await;
    let front = Front::start(new.addr, "", false).await;
    front.users_get(20).await;
    new.wait("20 copies at NEW", |c| c.requests.load(SeqCst) == 20)
        .await;
    assert_eq!(new.counts.marked.load(SeqCst), 20, "every copy is marked");
    assert_eq!(front.old.behaviour.served.load(SeqCst), 20);
    front
        .wait_mirror("20 copies recorded in the mirror scope", |w| {
            w.requests == 20
        })
        .await;
    let w = front.mirror();
    assert_eq!((w.errors, w.dropped, w.skipped), (0, 0, 0));

    // Mirror 0 %: nothing more is copied.
    front.router.set_mirror(Weight::ZERO, false);
    front.users_get(10).await;
    assert_eq!(front.old.behaviour.served.load(SeqCst), 30);
    assert_eq!(new.counts.requests.load(SeqCst), 20);
}

#[tokio::test]
async fn unsafe_methods_are_not_copied_unless_allowed() {
    let new = Shadow::start(200).await;
    let front = Front::start(new.addr, "", false).await;
    let c = client();
    let post = c
        .post(front.url("/orders"))
        .header("x-user-id", "alice")
        .body("{\"buy\":1}")
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), 200);
    let delete = c
        .delete(front.url("/orders/1"))
        .header("x-user-id", "alice")
        .send()
        .await
        .expect("delete");
    assert_eq!(delete.status(), 200);
    front.users_get(1).await;
    new.wait("the GET's copy at NEW", |c| c.gets.load(SeqCst) == 1)
        .await;
    assert_eq!(
        new.counts.others.load(SeqCst),
        0,
        "POST and DELETE never reach NEW"
    );
    assert_eq!(front.mirror().skipped, 2);
    assert_eq!(front.metrics.mirror_total(MirrorCount::Skipped), 2);

    // Widened in the config: a DELETE is copied.
    let new = Shadow::start(200).await;
    let front = Front::start(
        new.addr,
        "[mirror]\nmethods = [\"GET\", \"DELETE\"]\n",
        false,
    )
    .await;
    c.delete(front.url("/orders/1"))
        .header("x-user-id", "alice")
        .send()
        .await
        .expect("delete");
    new.wait("the DELETE's copy at NEW", |c| c.others.load(SeqCst) == 1)
        .await;
}

#[tokio::test]
async fn request_bodies_are_copied_whole_up_to_the_limit() {
    let new = Shadow::start(200).await;
    let extra = "[mirror]\nmethods = [\"GET\", \"POST\"]\nmax_body = 32\n";
    let front = Front::start(new.addr, extra, false).await;
    let c = client();
    let post = |body: reqwest::Body| {
        c.post(front.url("/orders"))
            .header("x-user-id", "alice")
            .body(body)
            .send()
    };
    // A body of known length, one sent in chunks (no length), and one over the limit.
    let known = post(reqwest::Body::from("{\"buy\":1}"))
        .await
        .expect("post");
    assert_eq!(known.status(), 200);
    let parts: Vec<Result<&'static str, std::io::Error>> = vec![Ok("{\"buy\":"), Ok("2}")];
    let chunked = post(reqwest::Body::wrap_stream(futures_util::stream::iter(
        parts,
    )))
    .await
    .expect("chunked post");
    assert_eq!(chunked.status(), 200);
    let long = post(reqwest::Body::from("x".repeat(100)))
        .await
        .expect("post");
    assert_eq!(long.status(), 200);
    assert_eq!(long.headers()["x-cutover-served-by"], "old");

    new.wait("two POST copies at NEW", |c| c.others.load(SeqCst) == 2)
        .await;
    front
        .wait_mirror("the long body counted as not copied", |w| w.skipped == 1)
        .await;
    let seen = new.counts.bodies.lock().expect("bodies").clone();
    let mut bodies: Vec<_> = seen
        .iter()
        .map(|(m, len, b)| (m.as_str(), len.as_deref(), b.as_ref()))
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [
            ("POST", Some("9"), &b"{\"buy\":1}"[..]),
            ("POST", Some("9"), &b"{\"buy\":2}"[..]),
        ],
        "each copy carries the user's whole body, framed by its length"
    );
    assert_eq!(front.old.behaviour.served.load(SeqCst), 3);
}

#[tokio::test]
async fn a_hanging_new_never_delays_users_and_copies_beyond_the_bound_are_dropped() {
    let new = Shadow::start(0).await;
    let front = Front::start(new.addr, "[mirror]\nmax_inflight = 2\n", false).await;
    let began = Instant::now();
    front.users_get(30).await;
    // NEW answers nothing (its request timeout is 5 s): the users never waited for it.
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "users waited {:?} for a hanging NEW",
        began.elapsed()
    );
    let w = front.mirror();
    assert!(w.dropped >= 28 - 2, "dropped {}", w.dropped);
    assert_eq!(front.metrics.mirror_total(MirrorCount::Dropped), w.dropped);
    new.wait("the copies in flight at NEW", |c| {
        c.requests.load(SeqCst) >= 1
    })
    .await;
    assert!(
        new.counts.requests.load(SeqCst) <= 2 * 4,
        "at most the bound per worker"
    );
}

#[tokio::test]
async fn a_refusing_new_is_counted_as_mirror_errors_not_users_errors() {
    let front = Front::start(dead_addr(), "", false).await;
    front.users_get(10).await;
    front
        .wait_mirror("10 refused copies", |w| w.errors == 10)
        .await;
    let w = front
        .metrics
        .window(Instant::now(), Duration::from_secs(60));
    assert_eq!(w.scope(Scope::Users).errors, 0);
    assert_eq!(
        w.scope(Scope::New).requests,
        0,
        "copies are not NEW's users"
    );
}

#[tokio::test]
async fn mismatches_are_counted_and_sampled() {
    let new = Shadow::start(500).await;
    let front = Front::start(new.addr, "", true).await;
    front.users_get(5).await;
    front
        .wait_mirror("5 compared copies", |w| w.compared == 5)
        .await;
    let w = front
        .metrics
        .window(Instant::now(), Duration::from_secs(60));
    let mirror = w.scope(Scope::Mirror);
    assert_eq!(mirror.mismatches, 5);
    assert_eq!(mirror.mismatch_rate, 1.0);
    let s = &w.mismatch_samples[0];
    assert_eq!(
        (
            s.method.as_str(),
            s.path.as_str(),
            s.old_status,
            s.new_status,
            s.what.as_str()
        ),
        ("GET", "/item/0", 200, Some(500), "status")
    );

    // The same status and headers (those that always differ ignored): the bodies differ
    // (NEW's "shadow" against OLD's JSON), and that is what the samples say.
    new.counts.status.store(200, SeqCst);
    front.users_get(3).await;
    front
        .wait_mirror("8 compared copies", |w| w.compared == 8)
        .await;
    let w = front
        .metrics
        .window(Instant::now(), Duration::from_secs(60));
    assert_eq!(w.scope(Scope::Mirror).mismatches, 8);
    let last: Vec<_> = w.mismatch_samples[5..]
        .iter()
        .map(|s| s.what.as_str())
        .collect();
    assert_eq!(last, ["body"; 3]);
}

const SHADOW_PLAN: &str = r#"
name = "shadow"
[analysis]
interval = "100ms"
window = "2s"
min_requests = 5

[[steps]]
weight = 0
mirror = 100
compare = true
hold = "1h"

[[steps]]
weight = 100

[[gates]]
name = "mirror errors"
metric = "mirror.error_rate"
max = 0.1
"#;

/// Users' GETs through the proxy until the returned sender is dropped or fired; each answer's
/// env is checked to be OLD.
fn users_until_stopped(url: String) -> (oneshot::Sender<()>, tokio::task::JoinHandle<u64>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let c = client();
        let mut n = 0u64;
        while stopped.try_recv().is_err() {
            let (status, env) = common::get_as(&c, &url, &format!("user-{}", n % 50)).await;
            assert_eq!((status, env.as_str()), (200, "old"), "a user moved");
            n += 1;
        }
        n
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_gate_pauses_the_run_before_any_user_moves() {
    let (server, envs, _dir) = common::server_with("").await;
    envs[1].behaviour.error_permille.store(1000, SeqCst);
    let (stop, users) = users_until_stopped(server.proxy_url("/page"));
    server.start_plan(SHADOW_PLAN).await;
    let st = server
        .wait_for_state("paused", Duration::from_secs(20))
        .await;
    let _ = stop.send(());
    let answered = users.await.expect("users");
    assert!(answered > 0);
    assert_eq!(st["weight"], 0.0, "no user moved: {st:#}");
    assert_eq!(st["step"], 1);
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("mirror errors"), "{reason}");
    // Paused: the copies stop too, and the status says what they came to.
    assert_eq!(st["mirror"]["percent"], 0.0, "{st:#}");
    assert!(
        st["mirror"]["stats"]["error_rate"].as_f64().unwrap_or(0.0) > 0.1,
        "{st:#}"
    );
    assert!(
        envs[1].behaviour.served.load(SeqCst) > 0,
        "copies reached NEW"
    );
    // NEW's 500s against OLD's 200s: mismatches, sampled in status and reported as events.
    let samples = st["mirror"]["samples"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let last = samples
        .last()
        .unwrap_or_else(|| panic!("no sample: {st:#}"));
    assert_eq!(
        (last["method"].as_str(), last["old_status"].as_u64()),
        (Some("GET"), Some(200))
    );
    assert_eq!(
        (last["path"].as_str(), last["new_status"].as_u64()),
        (Some("/page"), Some(500))
    );
    let events = server.events().await;
    let mismatch = events
        .iter()
        .find(|e| e["action"] == "mirror_mismatch")
        .unwrap_or_else(|| panic!("no mirror_mismatch event: {events:#?}"));
    assert!(
        mismatch["data"]["count"].as_u64().is_some_and(|n| n >= 1),
        "{mismatch:#}"
    );
    assert_eq!(mismatch["data"]["latest"]["what"], "status");
    let (code, out, err) = server.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\nmirror "), "{out}");
    assert!(
        out.contains("differs  GET /page  old 200 new 500  (status)"),
        "{out}"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("cutover_mirror_errors_total{env=\"new\",kind=\"server_error\"}"),
        "{metrics}"
    );
    for e in &envs {
        e.stop();
    }
}

#[tokio::test]
async fn bodies_are_compared_with_json_fields_ignored() {
    // Both envs echo the request as JSON: the copy's differs in `env` and its mark.
    let new = SimEnv::start("new", common::any_port()).await.expect("new");
    let front = Front::start(new.addr, "", true).await;
    front.users_get(4).await;
    front
        .wait_mirror("4 compared copies", |w| w.compared == 4)
        .await;
    let w = front
        .metrics
        .window(Instant::now(), Duration::from_secs(60));
    assert_eq!(w.scope(Scope::Mirror).mismatches, 4);
    assert!(
        w.mismatch_samples.iter().all(|s| s.what == "body"),
        "{:?}",
        w.mismatch_samples
    );

    let ignore = "[mirror]\nignore_json_fields = [\"/env\", \"/headers/x-cutover-mirror\"]\n";
    let front = Front::start(new.addr, ignore, true).await;
    front.users_get(4).await;
    front
        .wait_mirror("4 compared copies", |w| w.compared == 4)
        .await;
    assert_eq!(
        front.mirror().mismatches,
        0,
        "{:?}",
        front.metrics.mismatch_samples()
    );

    // Bodies over the limit are not compared: status and headers only.
    let small = "[mirror]\ncompare_max_body = 8\n";
    let front = Front::start(new.addr, small, true).await;
    front.users_get(2).await;
    front
        .wait_mirror("2 compared copies", |w| w.compared == 2)
        .await;
    assert_eq!(front.mirror().mismatches, 0);
    new.stop();
}
