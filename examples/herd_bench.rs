//! The thundering-herd benchmark (issue 8): a thousand clients reconnect at once to a slow
//! OLD, with and without herd protection. Run by `bench/herd-model.sh`, which puts the table
//! into docs/benchmarks.md; or directly:
//!
//! ```sh
//! cargo run --release --example herd_bench -- 1000     # clients (default 1000)
//! ```
//!
//! OLD is a model of a server with `CAPACITY` workers: a request's service time is
//! `BASE × max(1, in_flight / CAPACITY)` at its arrival (work queues behind the workers), and
//! the server finishes every request it started even when the client has given up — which is
//! what turns client retries into a spiral. Clients behave the same in every scenario: a new
//! connection per attempt, a 2 s timeout, then a retry after the `Retry-After` the answer gave,
//! or after 100–200 ms without one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cutover::config::Config;
use cutover::demo::upstream::SimEnv;
use cutover::metrics::{Metrics, Scope};
use cutover::proxy::Proxy;
use cutover::router::{Router, RoutingTable, Weight};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

const CAPACITY: usize = 100;
const BASE: Duration = Duration::from_millis(200);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
const GIVE_UP: Duration = Duration::from_secs(60);

/// The slow OLD: counts what it started, what it held at once, what it finished.
#[derive(Default)]
struct Old {
    inflight: AtomicUsize,
    peak: AtomicUsize,
    started: AtomicU64,
}

async fn start_old() -> std::io::Result<(SocketAddr, Arc<Old>)> {
    let listener = cutover::proxy::bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?;
    let addr = listener.local_addr()?;
    let old = Arc::new(Old::default());
    let state = old.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let state = state.clone();
                    async move {
                        let n = state.inflight.fetch_add(1, SeqCst) + 1;
                        state.peak.fetch_max(n, SeqCst);
                        state.started.fetch_add(1, SeqCst);
                        let factor = (n as f64 / CAPACITY as f64).max(1.0);
                        let work = BASE.mul_f64(factor);
                        // The work runs to the end even if the client leaves.
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        let s = state.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(work).await;
                            s.inflight.fetch_sub(1, SeqCst);
                            let _ = tx.send(());
                        });
                        let _ = rx.await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"{\"env\":\"old\"}"),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, old))
}

struct Scenario {
    name: &'static str,
    old_keys: &'static str,
    extra: &'static str,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "no protection",
        old_keys: "",
        extra: "",
    },
    Scenario {
        name: "max_inflight = 100",
        old_keys: "max_inflight = 100\nqueue_timeout = \"50ms\"",
        extra: "[waiting_room]\nretry_after = 1\n",
    },
    Scenario {
        name: "max_inflight = 100, new_sessions 400/s",
        old_keys: "max_inflight = 100\nqueue_timeout = \"50ms\"\nnew_sessions_per_sec = 400\nnew_sessions_burst = 100",
        extra: "[waiting_room]\nretry_after = 1\n",
    },
];

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    ok: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    by_fallback: AtomicU64,
}

struct Row {
    served: usize,
    all_served_s: Option<f64>,
    p50_s: f64,
    p99_s: f64,
    requests: u64,
    errors: u64,
    timeouts: u64,
    by_fallback: u64,
    old_peak: usize,
    old_started: u64,
    shed: u64,
}

async fn attempt(addr: SocketAddr, user: &str) -> Result<(u16, Option<u64>, bool), ()> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|_| ())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|_| ())?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/")
        .header("host", "herd")
        .header("x-user-id", user)
        .body(Empty::<Bytes>::new())
        .map_err(|_| ())?;
    let resp = send.send_request(req).await.map_err(|_| ())?;
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let fallback = resp
        .headers()
        .get("x-cutover-served-by")
        .is_some_and(|v| v == "fallback");
    let _ = resp.into_body().collect().await;
    Ok((status, retry, fallback))
}

async fn run(s: &Scenario, clients: usize) -> Result<Row, Box<dyn std::error::Error>> {
    let (old_addr, old) = start_old().await?;
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let new = SimEnv::start("new", any).await?;
    let fallback = SimEnv::start("fallback", any).await?;
    fallback.behaviour.max_inflight.store(50, SeqCst);
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[envs.old]\nupstreams = [\"{old_addr}\"]\n{}\n\
         [envs.new]\nupstreams = [\"{}\"]\n[envs.fallback]\nupstreams = [\"{}\"]\n{}",
        s.old_keys, new.addr, fallback.addr, s.extra
    );
    let cfg = Config::parse(&text, "herd-bench.toml")?;
    let router = Arc::new(Router::new(RoutingTable::new(Weight::ZERO, "bench")));
    let metrics = Arc::new(Metrics::new());
    let proxy = Arc::new(Proxy::new(&cfg, router, metrics.clone()));
    let listener = cutover::proxy::bind(any)?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cutover::proxy::serve(
        listener,
        proxy,
        Duration::from_secs(1),
        async {
            let _ = stop_rx.await;
        },
    ));

    let tally = Arc::new(Tally::default());
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let tally = tally.clone();
            tokio::spawn(async move {
                let user = format!("user-{i}");
                while t0.elapsed() < GIVE_UP {
                    tally.requests.fetch_add(1, SeqCst);
                    let wait =
                        match tokio::time::timeout(CLIENT_TIMEOUT, attempt(addr, &user)).await {
                            Ok(Ok((200, _, fb))) => {
                                tally.ok.fetch_add(1, SeqCst);
                                if fb {
                                    tally.by_fallback.fetch_add(1, SeqCst);
                                }
                                return Some(t0.elapsed());
                            }
                            Ok(Ok((_, Some(secs), _))) => {
                                tally.errors.fetch_add(1, SeqCst);
                                Duration::from_secs(secs)
                            }
                            Ok(_) => {
                                tally.errors.fetch_add(1, SeqCst);
                                Duration::from_millis(100 + rand::random::<u64>() % 100)
                            }
                            Err(_) => {
                                tally.timeouts.fetch_add(1, SeqCst);
                                Duration::from_millis(100 + rand::random::<u64>() % 100)
                            }
                        };
                    tokio::time::sleep(wait).await;
                }
                None
            })
        })
        .collect();
    let mut done = Vec::with_capacity(clients);
    for t in tasks {
        if let Ok(Some(d)) = t.await {
            done.push(d.as_secs_f64());
        }
    }
    done.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        done.get(((done.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let w = metrics.window(Instant::now(), Duration::from_secs(120));
    let row = Row {
        served: done.len(),
        all_served_s: (done.len() == clients).then(|| pct(1.0)),
        p50_s: pct(0.5),
        p99_s: pct(0.99),
        requests: tally.requests.load(SeqCst),
        errors: tally.errors.load(SeqCst),
        timeouts: tally.timeouts.load(SeqCst),
        by_fallback: tally.by_fallback.load(SeqCst),
        old_peak: old.peak.load(SeqCst),
        old_started: old.started.load(SeqCst),
        shed: w.scope(Scope::Old).shed,
    };
    let _ = stop.send(());
    let _ = server.await;
    new.stop();
    fallback.stop();
    Ok(row)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clients: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    println!(
        "| scenario | served | all served after | p50 / p99 time to served | requests sent | \
         users' error rate | client timeouts | shed by cutover | served by fallback | \
         OLD peak in flight | OLD work wasted |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for s in &SCENARIOS {
        let r = run(s, clients).await?;
        let failed = r.errors + r.timeouts;
        println!(
            "| {} | {}/{clients} | {} | {:.2} s / {:.2} s | {} | {:.1}% | {} | {} | {} | {} | {} |",
            s.name,
            r.served,
            r.all_served_s.map_or_else(
                || format!("not within {} s", GIVE_UP.as_secs()),
                |t| format!("{t:.2} s")
            ),
            r.p50_s,
            r.p99_s,
            r.requests,
            100.0 * failed as f64 / r.requests.max(1) as f64,
            r.timeouts,
            r.shed,
            r.by_fallback,
            r.old_peak,
            // Requests OLD worked on for clients that had already given up.
            r.old_started
                .saturating_sub(r.served as u64 - r.by_fallback),
        );
        // Let sockets in TIME_WAIT and stray tasks settle between scenarios.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}
