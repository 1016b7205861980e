//! HTTP/2 floods against the real binary (issue 9): rapid reset (HEADERS then RST_STREAM, over
//! and over) and CONTINUATION (a header block that never ends). The server must survive,
//! keep its memory bounded and keep serving a normal client.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::server::Server;
use common::server_with;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Resident-set peak (VmHWM) and current size (VmRSS) of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A normal HTTP/2 client gets its answer promptly.
async fn normal_client_is_served(s: &Server) {
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let start = Instant::now();
    let resp = c.get(s.proxy_url("/after")).send().await.expect("served");
    assert_eq!(resp.status(), 200);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_flood_is_survived_with_bounded_memory() {
    let (s, envs, _dir) = server_with("").await;
    normal_client_is_served(&s).await;
    let (_, rss_before) = memory_kib(s.child.id());
    const SENT: usize = 20_000;
    let mut sent = 0;
    let mut connections = 0;
    let start = Instant::now();
    // Each connection floods until the server sends GOAWAY or closes it; then a new one.
    while sent < SENT && start.elapsed() < Duration::from_secs(20) {
        connections += 1;
        let tcp = TcpStream::connect(s.proxy).await.expect("connect");
        let (h2, conn) = h2::client::handshake(tcp).await.expect("handshake");
        let conn = tokio::spawn(conn);
        let mut h2 = Some(h2);
        while let Some(ready) = h2.take().filter(|_| sent < SENT) {
            let Ok(mut ready) = ready.ready().await else {
                break;
            };
            let req = http::Request::get(format!("http://{}/flood", s.proxy))
                .body(())
                .expect("req");
            let Ok((resp, mut stream)) = ready.send_request(req, false) else {
                break;
            };
            stream.send_reset(h2::Reason::CANCEL);
            drop(resp);
            sent += 1;
            h2 = Some(ready);
        }
        drop(h2);
        let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
    }
    assert_eq!(sent, SENT, "flood cut short after {:?}", start.elapsed());
    normal_client_is_served(&s).await;
    let (peak, rss_after) = memory_kib(s.child.id());
    let reached: u64 = envs.iter().map(|e| e.behaviour.served.load(SeqCst)).sum();
    eprintln!(
        "rapid reset: {sent} streams on {connections} connection(s) in {:?}; {reached} reached an \
         env; RSS {rss_before} -> {rss_after} KiB, peak {peak} KiB",
        start.elapsed()
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} to {rss_after} KiB"
    );
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
    // The server pushed back (GOAWAY past max_pending_reset_streams) instead of taking it all
    // on one connection, and the flood did not turn into upstream load.
    assert!(
        connections > 1,
        "one connection carried {sent} resets unchallenged"
    );
    assert!(reached < 1000, "{reached} reset streams were forwarded");
}

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal without indexing, new name" for `x-aN: <100 bytes>`.
fn literal(i: usize) -> Vec<u8> {
    let name = format!("x-a{}", i % 1000);
    let mut out = vec![0x00, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.push(100);
    out.extend_from_slice(&[b'v'; 100]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut_off_with_bounded_memory() {
    let (s, envs, _dir) = server_with("").await;
    normal_client_is_served(&s).await;
    let (_, rss_before) = memory_kib(s.child.id());
    let tcp = TcpStream::connect(s.proxy).await.expect("connect");
    let (mut rd, mut wr) = tcp.into_split();
    let mut first = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    first.extend(frame(0x4, 0, 0, &[])); // SETTINGS
                                         // HEADERS on stream 1: :method GET, :scheme http, :path / — END_STREAM, no END_HEADERS.
    first.extend(frame(0x1, 0x1, 1, &[0x82, 0x86, 0x84]));
    wr.write_all(&first).await.expect("preface");
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    let block: Vec<u8> = (0..150).flat_map(literal).collect(); // ~15.9 KB per frame
    let cont = frame(0x9, 0, 1, &block);
    const MAX: usize = 64 * 1024 * 1024;
    let mut written = first.len();
    let start = Instant::now();
    let stopped = loop {
        if written >= MAX {
            break "never";
        }
        match tokio::time::timeout(Duration::from_secs(2), wr.write_all(&cont)).await {
            Ok(Ok(())) => written += cont.len(),
            Ok(Err(_)) => break "closed",
            Err(_) => break "stopped reading",
        }
    };
    drop(wr);
    let got = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .map(|r| r.unwrap_or_default())
        .unwrap_or_default();
    // A GOAWAY frame (type 7) from the server, if it sent one before closing.
    let goaway = got.windows(4).any(|w| w[3] == 0x7);
    eprintln!(
        "continuation flood: server {stopped} after {written} bytes in {:?} (GOAWAY seen: {goaway})",
        start.elapsed()
    );
    assert_ne!(
        stopped, "never",
        "the server swallowed {MAX} bytes of one header block"
    );
    assert!(
        written < 16 * 1024 * 1024,
        "the server read {written} bytes of one header block before stopping"
    );
    normal_client_is_served(&s).await;
    let (peak, rss_after) = memory_kib(s.child.id());
    assert!(
        rss_after < rss_before + 64 * 1024 && peak < 256 * 1024,
        "RSS {rss_before} -> {rss_after} KiB, peak {peak} KiB"
    );
    let reached: u64 = envs.iter().map(|e| e.behaviour.served.load(SeqCst)).sum();
    assert_eq!(reached, 2, "only the two normal requests reach an env");
}
