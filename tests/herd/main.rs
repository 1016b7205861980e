//! Herd protection through real sockets (issue 8): admission control under a herd, the waiting
//! room, new-session rates, the retry budget when everything fails, and (in [`drain`]) moving
//! a thousand WebSockets after a weight change.

#[path = "../common/mod.rs"]
mod common;
mod drain;
mod harness;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use cutover::metrics::Scope;
use cutover::router::Env;
use harness::{get_once, Conn, Herd, Setup};

const NO_RETRIES: &str = "[retry_budget]\nratio = 0.0\nmin_per_sec = 0\n";

fn retry_after(a: &harness::Answer) -> u64 {
    a.header("retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("503 without a numeric Retry-After: {a:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_is_held_at_max_inflight_answered_fast_and_then_served() {
    const CLIENTS: usize = 400;
    const LIMIT: usize = 100;
    let h = Herd::start(Setup {
        old: "max_inflight = 100\nqueue_timeout = \"50ms\"",
        extra: &format!("{NO_RETRIES}[waiting_room]\nretry_after = 1\n"),
        ..Default::default()
    })
    .await;
    // OLD takes 2 s: an answer that waited for OLD cannot pass for a fast shed.
    h.old.behaviour.latency_ms.store(2000, SeqCst);
    let addr = h.addr;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(async move {
                let user = format!("herd-{i}");
                let mut sheds = Vec::new();
                loop {
                    // A new connection each time (a reconnecting herd); the answer is timed
                    // from the request, not from the TCP handshake.
                    let mut c = Conn::open(addr).await.map_err(|e| e.to_string())?;
                    let t = Instant::now();
                    let a = c
                        .get("/herd", &user, None)
                        .await
                        .map_err(|e| e.to_string())?;
                    let took = t.elapsed();
                    match a.status {
                        200 => return Ok::<_, String>(sheds),
                        503 => {
                            if a.header("x-cutover-error") != "shed" {
                                return Err(format!("503 not from shedding: {a:?}"));
                            }
                            sheds.push(took);
                            // A client honouring Retry-After: the herd's behaviour under test.
                            tokio::time::sleep(Duration::from_secs(retry_after(&a))).await;
                        }
                        s => return Err(format!("unexpected status {s}: {}", a.body)),
                    }
                    if started.elapsed() > Duration::from_secs(120) {
                        return Err("not served within 120 s".into());
                    }
                }
            })
        })
        .collect();
    let mut shed_latencies = Vec::new();
    for t in tasks {
        let sheds = t
            .await
            .expect("join")
            .expect("every client is answered and served");
        shed_latencies.extend(sheds);
    }
    let peak = h.old.behaviour.peak_inflight.load(SeqCst);
    eprintln!(
        "herd: {CLIENTS} clients served in {:.2}s, {} sheds, OLD peak {peak}",
        started.elapsed().as_secs_f64(),
        shed_latencies.len()
    );
    assert!(peak <= LIMIT, "OLD held {peak} requests, limit {LIMIT}");
    assert!(peak >= LIMIT / 2, "the herd did fill OLD ({peak})");
    assert!(
        shed_latencies.len() >= CLIENTS - LIMIT,
        "the first wave alone sheds at least {} ({})",
        CLIENTS - LIMIT,
        shed_latencies.len()
    );
    shed_latencies.sort();
    let slowest = shed_latencies.last().copied().unwrap_or_default();
    let median = shed_latencies[shed_latencies.len() / 2];
    eprintln!("herd: shed answers took {median:?} (median), {slowest:?} (slowest)");
    // "A little" is generous: two cores shared with the other tests of this binary.
    assert!(
        slowest < Duration::from_millis(50 + 950),
        "a shed answer took {slowest:?}: queue_timeout is 50 ms, OLD answers in 2 s"
    );
    assert_eq!(
        h.old.behaviour.served.load(SeqCst),
        CLIENTS as u64,
        "OLD served each user once, never a shed request"
    );
    let w = h.metrics.window(Instant::now(), Duration::from_secs(120));
    let shed = shed_latencies.len() as u64;
    assert_eq!(w.scope(Scope::Old).shed, shed);
    assert_eq!(w.scope(Scope::Users).shed, shed, "users saw every shed");
    // Issue 19: a shed answer is `users.shed_rate`, a metric of its own, not a users' error.
    assert_eq!(
        w.scope(Scope::Users).errors,
        0,
        "a shed answer is shed, not an error"
    );
    assert!(w.scope(Scope::Old).shed_rate > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_the_waiting_room_and_api_clients_a_plain_503() {
    let dir = tempfile::tempdir().expect("dir");
    let page = dir.path().join("room.html");
    std::fs::write(&page, "<p>Full. Back in {retry_after} s.</p>").expect("page");
    for custom in [false, true] {
        let extra = if custom {
            format!(
                "{NO_RETRIES}[waiting_room]\npage_file = \"{}\"\n",
                page.display()
            )
        } else {
            NO_RETRIES.to_owned()
        };
        let h = Herd::start(Setup {
            old: "max_inflight = 1\nqueue_timeout = \"0s\"",
            extra: &extra,
            ..Default::default()
        })
        .await;
        h.old.behaviour.latency_ms.store(3000, SeqCst);
        let addr = h.addr;
        let holder = tokio::spawn(async move { get_once(addr, "/slow", "holder", None).await });
        common::wait_in_flight(&h.old, 1).await;

        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let a = get_once(addr, "/", "visitor", Some(browser))
            .await
            .expect("answer");
        assert_eq!(a.status, 503);
        assert!(a.header("content-type").starts_with("text/html"), "{a:?}");
        let secs = retry_after(&a);
        assert!((1..=3).contains(&secs), "2 s ±50%: {secs}");
        assert_eq!(a.header("refresh"), secs.to_string());
        if custom {
            assert_eq!(a.body, format!("<p>Full. Back in {secs} s.</p>"));
        } else {
            let meta = format!("<meta http-equiv=\"refresh\" content=\"{secs}\">");
            assert!(a.body.contains(&meta), "{}", a.body);
            assert!(a
                .body
                .contains(&format!("try again by itself in {secs} seconds")));
        }

        let a = get_once(addr, "/api/items", "app", Some("application/json"))
            .await
            .expect("answer");
        assert_eq!(a.status, 503);
        assert_eq!(a.header("content-type"), "application/json");
        let body: serde_json::Value = serde_json::from_str(&a.body).expect("json");
        assert_eq!(body["retry_after_s"].as_u64(), Some(retry_after(&a)));
        assert_eq!(body["error"], "shed");
        assert!(a.header("refresh").is_empty());

        let a = get_once(addr, "/api/items", "curl", Some("*/*"))
            .await
            .expect("answer");
        assert_eq!(a.status, 503);
        assert!(a.header("content-type").starts_with("text/plain"));
        assert!(a.body.contains("retry after"), "{}", a.body);

        let w = h.metrics.window(Instant::now(), Duration::from_secs(30));
        assert_eq!(w.scope(Scope::Old).waiting_room, 1, "only the browser");
        assert_eq!(w.scope(Scope::Users).waiting_room, 1);
        assert_eq!(w.scope(Scope::Old).shed, 3);
        let text = cutover::metrics::render_prometheus(&h.metrics, &Default::default());
        assert!(text.contains("cutover_waiting_room_total{env=\"old\"} 1\n"));
        assert_eq!(
            holder.await.expect("join").expect("holder").status,
            200,
            "the request in flight was never disturbed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_is_admitted_at_the_session_rate_while_a_connected_user_is_served() {
    const STORM: usize = 200;
    const RATE: f64 = 20.0;
    const BURST: usize = 10;
    let h = Herd::start(Setup {
        old: "new_sessions_per_sec = 20\nnew_sessions_burst = 10",
        extra: NO_RETRIES,
        ..Default::default()
    })
    .await;
    let addr = h.addr;
    let mut regular = Conn::open(addr).await.expect("connect");
    let first = regular.get("/", "regular", None).await.expect("first");
    assert_eq!(
        first.status, 200,
        "the first request takes one of the burst"
    );

    let started = Instant::now();
    let storm: Vec<_> = (0..STORM)
        .map(|i| {
            tokio::spawn(async move { get_once(addr, "/", &format!("storm-{i}"), None).await })
        })
        .collect();
    let mut served_regular = 0;
    for i in 0..20 {
        let a = regular
            .get("/", "regular", None)
            .await
            .expect("keep-alive request");
        assert_eq!(
            a.status, 200,
            "request {i} of an established connection was refused"
        );
        served_regular += 1;
    }
    let (mut admitted, mut limited) = (0usize, 0usize);
    for t in storm {
        let a = t
            .await
            .expect("join")
            .expect("every newcomer gets an answer");
        match a.status {
            200 => admitted += 1,
            503 => {
                assert_eq!(a.header("x-cutover-error"), "new-sessions");
                assert_eq!(a.header("connection"), "close");
                assert!(retry_after(&a) >= 1);
                limited += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cap = (BURST - 1) as f64 + RATE * elapsed + 1.0;
    assert!(
        admitted as f64 <= cap,
        "{admitted} newcomers admitted in {elapsed:.2}s; the bucket allows {cap:.1}"
    );
    assert!(
        admitted >= 1 && limited >= STORM / 2,
        "{admitted} / {limited}"
    );
    assert_eq!(served_regular, 20);
    assert!(regular.is_open(), "the established connection was kept");
    let w = h.metrics.window(Instant::now(), Duration::from_secs(60));
    assert_eq!(w.scope(Scope::Old).sessions_limited, limited as u64);
    assert_eq!(w.scope(Scope::Old).shed, limited as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_everything_fails_retries_never_exceed_the_budget() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let h = Herd::start(Setup {
        old_addr: Some(dead),
        extra: "[retry_budget]\nratio = 0.1\nwindow = \"10s\"\nmin_per_sec = 1\n",
        ..Default::default()
    })
    .await;
    h.fallback.behaviour.error_permille.store(1000, SeqCst);
    let addr = h.addr;
    let tasks: Vec<_> = (0..30)
        .map(|w| {
            tokio::spawn(async move {
                let mut c = Conn::open(addr).await.expect("connect");
                let mut statuses = Vec::new();
                for i in 0..10 {
                    let a = c
                        .get("/", &format!("u{w}-{i}"), None)
                        .await
                        .expect("answer");
                    statuses.push(a.status);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.extend(t.await.expect("join"));
    }
    assert_eq!(statuses.len(), 300);
    assert!(
        statuses.iter().all(|s| *s == 502 || *s == 500),
        "{statuses:?}"
    );
    let retried = h.fallback.behaviour.served.load(SeqCst);
    // 0.1 × 300 requests + 1/s × 10 s of reserve.
    assert!(retried <= 40, "FALLBACK got {retried} retries, budget 40");
    assert!(retried >= 30, "the budget was used ({retried})");
    assert_eq!(
        statuses.iter().filter(|s| **s == 500).count() as u64,
        retried
    );
    let w = h.metrics.window(Instant::now(), Duration::from_secs(60));
    assert_eq!(w.retries, retried);
    assert_eq!(w.budget_exhausted, 300 - retried);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_requests_retry_on_fallback_only_within_the_budget_and_never_on_their_env() {
    let h = Herd::start(Setup {
        old: "max_inflight = 5\nqueue_timeout = \"0s\"",
        extra: "[retry_budget]\nratio = 0.1\nwindow = \"10s\"\nmin_per_sec = 1\n",
        ..Default::default()
    })
    .await;
    h.old.behaviour.latency_ms.store(500, SeqCst);
    h.fallback.behaviour.error_permille.store(1000, SeqCst);
    let addr = h.addr;
    let tasks: Vec<_> = (0..200)
        .map(|i| tokio::spawn(async move { get_once(addr, "/", &format!("s{i}"), None).await }))
        .collect();
    let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
    for t in tasks {
        let a = t.await.expect("join").expect("answer");
        if a.status == 503 {
            assert_eq!(a.header("x-cutover-error"), "shed");
        }
        *by_status.entry(a.status).or_default() += 1;
    }
    assert!(h.old.behaviour.peak_inflight.load(SeqCst) <= 5);
    let served_by_old = h.old.behaviour.served.load(SeqCst);
    assert_eq!(by_status.get(&200).copied().unwrap_or(0), served_by_old);
    let retried = h.fallback.behaviour.served.load(SeqCst);
    assert!(
        retried <= 30,
        "{retried} retries; budget 0.1 × 200 + 10 = 30"
    );
    assert_eq!(by_status.get(&500).copied().unwrap_or(0), retried);
    assert_eq!(
        by_status.get(&503).copied().unwrap_or(0),
        200 - served_by_old - retried,
        "{by_status:?}"
    );
    let w = h.metrics.window(Instant::now(), Duration::from_secs(60));
    assert_eq!(w.scope(Scope::Old).shed, 200 - served_by_old);
    // Every slot comes back once the answers' bodies are done.
    common::wait_until("every admission slot of OLD back", common::WAIT, || async {
        h.proxy.guard(Env::Old).limit() == Some((5, 0))
    })
    .await;
}
