//! Slow, idle and numerous clients (issue 9): the header, body and idle timeouts really fire,
//! a thousand half-sent connections do not starve a real user, and the connection cap answers.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::raw::{exchange, read_head, read_until_closed};
use common::{client, wait_until, TestProxy, WAIT};
use cutover::metrics::Scope;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_is_cut_at_the_header_read_timeout() {
    let p = TestProxy::start(100.0, "[limits]\nheader_read_timeout = \"1s\"\n").await;
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("write");
    // One byte of a header every 100 ms: always "making progress", never done.
    let mut cut_after = None;
    let mut answer = String::new();
    for i in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let byte = if i % 20 == 19 {
            b"\r\n".to_vec()
        } else {
            b"x".to_vec()
        };
        if s.write_all(&byte).await.is_err() {
            cut_after = Some(start.elapsed());
            break;
        }
        let probe = read_until_closed(&mut s, Instant::now(), Duration::from_millis(1)).await;
        answer.push_str(&probe.text());
        if probe.closed {
            cut_after = Some(start.elapsed());
            break;
        }
    }
    let cut_after = cut_after.expect("the slowloris connection was never closed");
    assert!(
        cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(3),
        "closed after {cut_after:?}, the timeout is 1s"
    );
    // hyper closes without an answer (there is no complete request to answer).
    assert_eq!(answer, "", "unexpected answer to a slowloris head");
    assert_eq!(p.new.behaviour.served.load(SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_is_not_counted_against_the_env() {
    let p = TestProxy::start(100.0, "[limits]\nbody_read_timeout = \"500ms\"\n").await;
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    let start = Instant::now();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .expect("write");
    let r = read_until_closed(&mut s, start, Duration::from_secs(5)).await;
    assert_eq!(r.status(), Some(408), "{}", r.text());
    assert_eq!(
        r.header("x-cutover-error").as_deref(),
        Some("client-body-timeout")
    );
    assert!(r.closed, "connection left open after 408");
    assert!(
        r.elapsed >= Duration::from_millis(450) && r.elapsed < Duration::from_secs(3),
        "{:?}",
        r.elapsed
    );
    let w = p
        .metrics
        .window(std::time::Instant::now(), Duration::from_secs(10));
    assert_eq!(
        w.scope(Scope::New).errors,
        0,
        "the client's silence was blamed on NEW"
    );
    assert_eq!(
        p.fallback.behaviour.served.load(SeqCst),
        0,
        "replayed elsewhere"
    );
    // A body that keeps coming, however slowly, is not cut.
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(b"ab").await.expect("write");
    }
    let r = read_until_closed(&mut s, Instant::now(), Duration::from_secs(5)).await;
    assert_eq!(r.status(), Some(200), "{}", r.text());
    assert!(r.body().contains("\"body_bytes\":8"), "{}", r.body());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_below_the_rate_floor_gets_408_and_is_not_counted_against_the_env() {
    // Each pause (300 ms) is well under body_read_timeout: only the rate floor can end it.
    let p = TestProxy::start(
        100.0,
        "[limits]\nbody_read_timeout = \"10s\"\nmin_body_rate = 100\nbody_rate_grace = \"1s\"\n",
    )
    .await;
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        .await
        .expect("write");
    let start = Instant::now();
    let mut r = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if s.write_all(b"x").await.is_err() {
            break;
        }
        let got = read_until_closed(&mut s, Instant::now(), Duration::from_millis(10)).await;
        if !got.bytes.is_empty() || got.closed {
            r = Some(got);
            break;
        }
    }
    let r = r.expect("the trickle was never cut");
    assert_eq!(r.status(), Some(408), "{}", r.text());
    assert_eq!(
        r.header("x-cutover-error").as_deref(),
        Some("client-body-too-slow")
    );
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    let w = p
        .metrics
        .window(std::time::Instant::now(), Duration::from_secs(30));
    assert_eq!(
        w.scope(Scope::New).errors,
        0,
        "the trickle was blamed on NEW"
    );
    // A body at a pace above the floor, with the same pauses, is not cut.
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 320\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(&[b'a'; 40]).await.expect("write");
    }
    let r = read_until_closed(&mut s, Instant::now(), Duration::from_secs(5)).await;
    assert_eq!(r.status(), Some(200), "{}", r.text());
    assert!(r.body().contains("\"body_bytes\":320"), "{}", r.body());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_slow_answers_are_not() {
    let p = TestProxy::start(
        100.0,
        "[limits]\nidle_timeout = \"500ms\"\nheader_read_timeout = \"10s\"\n",
    )
    .await;
    // HTTP/1.1 keep-alive: one request, then silence.
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let head = read_head(&mut s, Duration::from_secs(3)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let idle_from = Instant::now();
    let r = read_until_closed(&mut s, idle_from, Duration::from_secs(5)).await;
    assert!(r.closed, "idle keep-alive connection never closed");
    assert!(
        r.elapsed >= Duration::from_millis(400) && r.elapsed < Duration::from_secs(3),
        "{:?}",
        r.elapsed
    );

    // HTTP/2: hyper has no idle timeout of its own; the watchdog closes it.
    let tcp = TcpStream::connect(p.addr).await.expect("connect");
    let (mut h2, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/", p.addr))
        .body(())
        .expect("req");
    let (resp, _) = h2.send_request(req, true).expect("send");
    assert_eq!(resp.await.expect("resp").status(), 200);
    let start = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "idle HTTP/2 connection never closed");
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );

    // An answer slower than the idle timeout is not cut: the request is in flight.
    p.new.behaviour.latency_ms.store(1500, SeqCst);
    let r = exchange(
        p.addr,
        b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status(), Some(200), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_half_sent_connections_do_not_starve_a_real_client() {
    let p = TestProxy::start(100.0, "").await;
    let mut hogs = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut s = TcpStream::connect(p.addr).await.expect("connect");
        // A head that never ends (no blank line).
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\n")
            .await
            .expect("write");
        hogs.push(s);
    }
    let c = client();
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let start = Instant::now();
        let (status, _) = common::get_as(&c, &p.url("/real"), &format!("u{i}")).await;
        assert_eq!(status, 200);
        slowest = slowest.max(start.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a real user waited {slowest:?} behind 1000 half-sent connections"
    );
    assert_eq!(
        p.new.behaviour.served.load(SeqCst),
        50,
        "a half-sent request was forwarded"
    );
    drop(hogs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_new_clients_get_503_and_a_close() {
    let p = TestProxy::start(100.0, "[limits]\nmax_connections = 20\n").await;
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(p.addr).await.expect("connect");
        // Complete one request so the connection is surely accepted and counted.
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let head = read_head(&mut s, Duration::from_secs(3)).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(s);
    }
    let r = exchange(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(r.status(), Some(503), "{}", r.text());
    assert_eq!(
        r.header("x-cutover-error").as_deref(),
        Some("too-many-connections")
    );
    assert!(r.closed);
    let resp = c
        .get(p.url("/"))
        .send()
        .await
        .expect("an answer, not a reset");
    assert_eq!(resp.status(), 503);
    // Slots free up as connections close.
    held.truncate(10);
    wait_until(
        "closed connections to give their slots back",
        WAIT,
        || async { matches!(c.get(p.url("/")).send().await, Ok(r) if r.status() == 200) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_tunnels_count_against_max_connections() {
    let p = TestProxy::start(100.0, "[limits]\nmax_connections = 3\n").await;
    let mut tunnels = Vec::new();
    for _ in 0..3 {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", p.addr))
            .await
            .expect("websocket");
        tunnels.push(ws);
    }
    // The upgraded connections left hyper, but their sockets still hold the slots.
    let r = exchange(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(r.status(), Some(503), "{}", r.text());
    tunnels.pop();
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    wait_until("the closed tunnel to give its slot back", WAIT, || async {
        matches!(c.get(p.url("/")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
}
