//! Hostile HTTP/1.1 from a raw TCP client (issue 9): oversized heads, smuggling shapes,
//! invalid bytes, spoofed forwarding headers, connection-listed headers, and requests that
//! try to reach something other than a configured upstream. `Content-Length` together with
//! `Transfer-Encoding` has its own file: `tests/conflicting_framing.rs`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::raw::{exchange, Reply};
use common::TestProxy;

const WAIT: Duration = Duration::from_secs(3);

async fn send(p: &TestProxy, bytes: impl AsRef<[u8]>) -> Reply {
    exchange(p.addr, bytes.as_ref(), WAIT).await
}

/// Requests that reached any env.
fn reached(p: &TestProxy) -> u64 {
    [&p.old, &p.new, &p.fallback]
        .iter()
        .map(|e| e.behaviour.served.load(SeqCst))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_and_long_targets_414_then_the_connection_closes() {
    let p = TestProxy::start(
        100.0,
        "[limits]\nmax_header_bytes = 8192\nmax_uri_bytes = 1024\nmax_headers = 20\n",
    )
    .await;
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "target over max_uri_bytes (checked by the proxy)",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(2000)),
            414,
        ),
        (
            "request line over max_header_bytes (hyper's buffer)",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(20_000)),
            431,
        ),
        (
            "one huge header",
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
                "b".repeat(20_000)
            ),
            431,
        ),
        (
            "too many headers",
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
                (0..30)
                    .map(|i| format!("X-H{i}: v\r\n"))
                    .collect::<String>()
            ),
            431,
        ),
    ];
    for (what, bytes, want) in cases {
        let r = send(&p, bytes).await;
        assert_eq!(r.status(), Some(want), "{what}: {}", r.text());
        assert!(r.closed, "{what}: connection left open");
    }
    assert_eq!(reached(&p), 0, "a refused request reached an env");
    // Under the limits, the same shapes pass.
    let ok = send(
        &p,
        format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n{}Connection: close\r\n\r\n",
            "a".repeat(500),
            (0..10)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect::<String>()
        ),
    )
    .await;
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_and_invalid_bytes_get_400_close_and_never_reach_an_env() {
    let p = TestProxy::start(100.0, "").await;
    let post = "POST /x HTTP/1.1\r\nHost: a\r\n";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "two different Content-Lengths",
            format!("{post}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").into(),
        ),
        (
            "Content-Length list with different values",
            format!("{post}Content-Length: 5, 6\r\n\r\nhello!").into(),
        ),
        (
            "signed Content-Length",
            format!("{post}Content-Length: +5\r\n\r\nhello").into(),
        ),
        (
            "TE: chunked, identity (chunked not last)",
            format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                .into(),
        ),
        (
            "TE: identity",
            format!("{post}Transfer-Encoding: identity\r\n\r\nhello").into(),
        ),
        (
            "two TE headers, the last not chunked",
            format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n")
                .into(),
        ),
        (
            "TE on HTTP/1.0",
            "POST /x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
        ),
        (
            "space before the colon",
            format!("{post}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n").into(),
        ),
        (
            "obs-fold",
            format!("{post}X-Folded: a\r\n  b\r\nContent-Length: 0\r\n\r\n").into(),
        ),
        (
            "control byte in a header value",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\x01b\r\n\r\n".to_vec(),
        ),
        (
            "NUL in the request target",
            b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        (
            "space in a header name",
            b"GET / HTTP/1.1\r\nHost: a\r\nX Bad: 1\r\n\r\n".to_vec(),
        ),
        (
            "bare LF garbage",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n".to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let r = send(&p, &bytes).await;
        assert_eq!(r.status(), Some(400), "{what}: {:?}", r.text());
        assert!(r.closed, "{what}: connection left open");
    }
    assert_eq!(reached(&p), 0, "a malformed request reached an env");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_listed_headers_are_stripped_both_ways() {
    let p = TestProxy::start(100.0, "").await;
    p.new.behaviour.connection_listed_header.store(true, SeqCst);
    let r = send(
        &p,
        "GET /h HTTP/1.1\r\nHost: a\r\nConnection: x-secret, keep-alive, close\r\n\
         X-Secret: from-client\r\nKeep-Alive: timeout=5\r\nTE: gzip\r\nX-Kept: 1\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), Some(200), "{}", r.text());
    let seen: serde_json::Value = serde_json::from_str(r.body().trim()).expect("echo");
    let headers = &seen["headers"];
    for gone in ["x-secret", "keep-alive", "te", "connection"] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} reached the env: {seen}"
        );
    }
    assert_eq!(headers["x-kept"], "1");
    // The env answered with `Connection: x-hop` and `x-hop`: the client never sees x-hop.
    assert!(
        !r.text().to_ascii_lowercase().contains("x-hop"),
        "{}",
        r.text()
    );
    assert!(r.header("x-cutover-served-by").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sent_x_forwarded_for_is_replaced_unless_trusted() {
    let spoof = "GET /f HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\n\
                 Forwarded: for=6.6.6.6\r\nConnection: close\r\n\r\n";
    let p = TestProxy::start(100.0, "").await;
    let r = send(&p, spoof).await;
    let seen: serde_json::Value = serde_json::from_str(r.body().trim()).expect("echo");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(
        seen["headers"]["forwarded"], "for=127.0.0.1;proto=http;host=a",
        "{seen}"
    );
    let trusted = TestProxy::start(100.0, "[routing]\ntrust_forwarded = true\n").await;
    let r = send(&trusted, spoof).await;
    let seen: serde_json::Value = serde_json::from_str(r.body().trim()).expect("echo");
    assert_eq!(seen["headers"]["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
}

/// A loopback service that counts connections (stands in for the control listener or any
/// other local service that is not an upstream).
async fn sentinel() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = l.accept().await {
            h.fetch_add(1, SeqCst);
        }
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_host_uri_or_method_steers_the_data_path_to_another_local_service() {
    let p = TestProxy::start(100.0, "").await;
    let (target, hits) = sentinel().await;
    let attempts = [
        format!(
            "GET http://{target}/v1/status HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
        ),
        format!("GET /v1/status HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"),
        format!("GET http://{target}/v1/status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        format!(
            "GET /ws HTTP/1.1\r\nHost: {target}\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
        ),
    ];
    for a in &attempts {
        let r = send(&p, a).await;
        assert_eq!(
            r.header("x-cutover-served-by").as_deref(),
            Some("new"),
            "{a}: {}",
            r.text()
        );
    }
    for connect in [
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        format!("CONNECT http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    ] {
        let r = send(&p, &connect).await;
        assert!(
            matches!(r.status(), Some(400 | 405)),
            "{connect}: {}",
            r.text()
        );
        assert!(r.closed, "CONNECT left the connection open");
        assert!(!r.text().contains("200 Connection established"));
    }
    // HTTP/2 CONNECT too.
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let resp = c
        .request(reqwest::Method::CONNECT, format!("http://{}/", p.addr))
        .send()
        .await;
    if let Ok(resp) = resp {
        assert!(matches!(resp.status().as_u16(), 400 | 405), "{resp:?}");
    }
    assert_eq!(
        hits.load(SeqCst),
        0,
        "the data path connected to a non-upstream"
    );
    assert!(p.new.behaviour.served.load(SeqCst) >= 3);
}
