//! WebSocket tunnels, HTTP/2 clients, streamed uploads and header rules (issue 2).

mod common;

use bytes::Bytes;
use common::{client, wait_until, TestProxy, WAIT};
use cutover::router::Env;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy_to_the_users_env() {
    let p = TestProxy::start(100.0, "").await;
    let mut req = format!("ws://{}/ws", p.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("x-user-id", "ws-user".parse().expect("header"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("handshake");
    assert_eq!(resp.headers()["x-cutover-served-by"], "new");
    let hello = ws.next().await.expect("frame").expect("message");
    assert_eq!(hello, Message::text("hello from new"));
    for i in 0..20 {
        ws.send(Message::text(format!("ping {i}")))
            .await
            .expect("send");
        let echo = ws.next().await.expect("frame").expect("message");
        assert_eq!(echo, Message::text(format!("ping {i}")));
    }
    assert_eq!(p.proxy.tunnels.open(Env::New), 1);
    ws.close(None).await.expect("close");
    drop(ws);
    wait_until("the closed tunnel to be forgotten", WAIT, || async {
        p.proxy.tunnels.open(Env::New) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served_and_host_is_kept() {
    let p = TestProxy::start(0.0, "").await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    for _ in 0..3 {
        let resp = c
            .get(p.url("/h2?x=1"))
            .header("x-user-id", "h2user")
            .send()
            .await
            .expect("h2 request");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["path"], "/h2?x=1");
        assert_eq!(body["headers"]["host"], p.addr.to_string());
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_streams_with_bounded_memory() {
    let p = TestProxy::start(100.0, "").await;
    const CHUNK: usize = 1024 * 1024;
    const CHUNKS: usize = 100;
    let chunk = Bytes::from(vec![b'z'; CHUNK]);
    let stream = futures_util::stream::iter(
        (0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let before = peak_rss_kib();
    let resp = client()
        .post(p.url("/upload"))
        .header("x-user-id", "uploader")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["body_bytes"], (CHUNK * CHUNKS) as u64);
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    // Buffering the body anywhere would grow the peak by ~100 MiB.
    assert!(
        grown_mib < 40,
        "peak memory grew by {grown_mib} MiB for a 100 MiB upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_dropped_and_forwarding_headers_set() {
    let p = TestProxy::start(0.0, "").await;
    let resp = client()
        .get(p.url("/headers"))
        .header("x-user-id", "h")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "deflate, trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-kept", "yes")
        .send()
        .await
        .expect("request");
    let body: serde_json::Value = resp.json().await.expect("json");
    let h = &body["headers"];
    for gone in ["x-private", "keep-alive", "proxy-authorization"] {
        assert!(h.get(gone).is_none(), "{gone} crossed the proxy: {h}");
    }
    // Only `trailers` of `TE` goes on (gRPC servers require it; docs/operations.md).
    assert_eq!(h["te"], "trailers");
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "client-sent XFF must not be trusted by default"
    );
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["forwarded"],
        format!("for=127.0.0.1;proto=http;host={}", p.addr)
    );
    assert_eq!(h["host"], p.addr.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_uri_cannot_steer_the_request_elsewhere() {
    let p = TestProxy::start(0.0, "").await;
    // A raw HTTP/1.1 request with an absolute URI naming another host: it still goes to OLD.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(p.addr)
        .await
        .expect("connect");
    s.write_all(
        b"GET http://127.0.0.1:1/admin HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("x-cutover-served-by: old"), "{out}");
    assert!(out.contains("\"path\":\"/admin\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_upgrade_is_passed_through_and_the_connection_stays_http() {
    use tokio::io::AsyncWriteExt;
    let p = TestProxy::start(100.0, "").await;
    let mut s = tokio::net::TcpStream::connect(p.addr)
        .await
        .expect("connect");
    // An upgrade the env declines (no Sec-WebSocket-Key: the simulated env answers 400).
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nx-user-id: ws-user\r\n\
          Connection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .expect("write");
    let declined = common::raw::read_response(&mut s).await;
    assert!(declined.starts_with("HTTP/1.1 400"), "{declined}");
    assert!(
        declined
            .to_ascii_lowercase()
            .contains("x-cutover-served-by: new"),
        "{declined}"
    );
    assert!(declined.contains("no sec-websocket-key"), "{declined}");
    assert_eq!(p.proxy.tunnels.open(Env::New), 0, "no tunnel was opened");

    // The same connection goes on as plain HTTP.
    s.write_all(b"GET /split HTTP/1.1\r\nHost: t\r\nx-user-id: ws-user\r\n\r\n")
        .await
        .expect("write");
    let next = common::raw::read_response(&mut s).await;
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
    assert!(next.contains("\"env\":\"new\""), "{next}");
}
