//! Requests framed two ways — `Content-Length` and `Transfer-Encoding` together — sent to the
//! real binary from a raw TCP client (issue 9): `400` and a close, in either order and in
//! disguise, first on a connection or after kept-alive requests with chunked and sized bodies,
//! pipelined or trickled in pieces; the env never sees the request nor what it hides.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::raw::{exchange, read_until_closed, Reply};
use common::server_with;
use cutover::demo::upstream::SimEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

/// Requests any env answered.
fn served(envs: &[SimEnv; 3]) -> u64 {
    envs.iter().map(|e| e.behaviour.served.load(SeqCst)).sum()
}

/// `POST /bad` with `framing` as its framing headers, a chunked body, then a hidden request.
fn bad(framing: &str) -> String {
    format!("POST /bad HTTP/1.1\r\nHost: a\r\n{framing}\r\n0\r\n\r\n{SMUGGLED}")
}

/// A body that looks like a request framed two ways, to be carried as plain data.
const DECOY: &str =
    "GET /decoy HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";

fn chunked(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x};ext=1\r\n{DECOY}\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
        DECOY.len()
    )
}

fn sized(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{DECOY}",
        DECOY.len()
    )
}

/// The answer must be our 400, alone, and the connection closed.
fn assert_refused(r: &Reply, what: &str) {
    assert_eq!(r.status(), Some(400), "{what}: {:?}", r.text());
    assert_eq!(
        r.header("x-cutover-error").as_deref(),
        Some("conflicting-framing"),
        "{what}"
    );
    assert_eq!(r.header("connection").as_deref(), Some("close"), "{what}");
    assert_eq!(
        r.text().matches("HTTP/1.1 ").count(),
        1,
        "{what}: {:?}",
        r.text()
    );
    assert!(r.closed, "{what}: connection left open");
}

/// The first whole response in `bytes` (with a `content-length`): status, body, and how many
/// bytes it took.
fn first_response(bytes: &[u8]) -> Option<(u16, String, usize)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let len = common::raw::content_length(&head)?;
    let total = end + 4 + len;
    let body = bytes.get(end + 4..total)?;
    Some((status, String::from_utf8_lossy(body).into_owned(), total))
}

/// The whole responses in `bytes`, in order.
fn responses(mut bytes: &[u8]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    while let Some((status, body, used)) = first_response(bytes) {
        out.push((status, body));
        bytes = &bytes[used..];
    }
    out
}

/// Read one whole response from a kept-alive connection; its body is the env's JSON echo.
async fn one_response(s: &mut TcpStream) -> (u16, serde_json::Value) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((status, body, used)) = first_response(&bytes) {
            assert_eq!(used, bytes.len(), "more than one answer");
            return (status, serde_json::from_str(body.trim()).expect("echo"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
            other => panic!(
                "no whole answer ({other:?}): {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_framings_in_either_order_get_400_and_a_close_and_reach_no_env() {
    let (s, envs, _dir) = server_with("").await;
    for framing in [
        "Content-Length: 60\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 60\r\n",
        "transfer-encoding:\tchunked\r\ncontent-length: 60\r\n",
        "Transfer-Encoding: chunked\r\nX-A: b\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n",
    ] {
        let r = exchange(s.proxy, bad(framing).as_bytes(), WAIT).await;
        assert_refused(&r, framing);
    }
    // Control: the same request with one framing is served.
    let ok = exchange(
        s.proxy,
        chunked("/ok")
            .replace("Host: a", "Host: a\r\nConnection: close")
            .as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    assert_eq!(
        served(&envs),
        1,
        "a refused request or what it hid reached an env"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_kept_alive_connection_framing_is_followed_through_chunked_and_sized_bodies() {
    let (s, envs, _dir) = server_with("").await;
    let mut c = TcpStream::connect(s.proxy).await.expect("connect");
    // Each body carries a decoy that looks like a request framed two ways: followed as
    // data, it is harmless; mistaken for a head, it would get the good request refused.
    for (req, path, body_bytes) in [
        (chunked("/one"), "/one", DECOY.len() + 3),
        (sized("/two"), "/two", DECOY.len()),
        ("GET /three HTTP/1.1\nHost: a\n\n".to_string(), "/three", 0),
    ] {
        c.write_all(req.as_bytes()).await.expect("write");
        let (status, seen) = one_response(&mut c).await;
        assert_eq!(status, 200, "{path}: {seen}");
        assert_eq!(seen["path"], path);
        assert_eq!(seen["body_bytes"], body_bytes as u64, "{path}: {seen}");
    }
    let start = Instant::now();
    let _ = c
        .write_all(bad("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n").as_bytes())
        .await;
    let r = read_until_closed(&mut c, start, WAIT).await;
    assert_refused(&r, "after three kept-alive requests");
    assert_eq!(
        served(&envs),
        3,
        "the refused request or what it hid reached an env"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_up_to_the_bad_one() {
    let (s, envs, _dir) = server_with("").await;
    let pipeline = format!(
        "{}{}{}GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
        chunked("/one"),
        sized("/two"),
        bad("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n")
    );
    let r = exchange(s.proxy, pipeline.as_bytes(), WAIT).await;
    assert!(r.closed, "connection left open: {}", r.text());
    let got = responses(&r.bytes);
    let statuses: Vec<u16> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 400], "{}", r.text());
    for ((_, body), path) in got.iter().zip(["/one", "/two"]) {
        let seen: serde_json::Value = serde_json::from_str(body.trim()).expect("echo");
        assert_eq!(seen["path"], path);
    }
    assert!(got[2].1.contains("Content-Length and Transfer-Encoding"));
    assert_eq!(
        served(&envs),
        2,
        "the refused request or what it hid reached an env"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_head_trickled_in_pieces_after_a_good_request_is_still_refused() {
    let (s, envs, _dir) = server_with("").await;
    let mut c = TcpStream::connect(s.proxy).await.expect("connect");
    c.write_all(sized("/first").as_bytes())
        .await
        .expect("write");
    let (status, _) = one_response(&mut c).await;
    assert_eq!(status, 200);
    // hyper gets the first pieces before the second framing header arrives.
    let start = Instant::now();
    for piece in [
        "POST /bad HTTP/1.1\r\nHo",
        "st: a\r\nContent-Le",
        "ngth: 4\r\nX-Pad: 1\r\nTransfer-",
        "Encoding: chunked\r\n\r\n0\r\n\r\n",
        SMUGGLED,
    ] {
        if c.write_all(piece.as_bytes()).await.is_err() {
            break;
        }
        // The trickle is what is tested: each piece in a read of its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = read_until_closed(&mut c, start, WAIT).await;
    assert_refused(&r, "trickled");
    assert_eq!(
        served(&envs),
        1,
        "the refused request or what it hid reached an env"
    );
}
