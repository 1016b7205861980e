//! The client side's own HTTP/1.1 lane (`src/proxy/client/lane.rs`), through the real binary
//! and raw sockets: requests it takes and requests it leaves to hyper, mixed and pipelined on one
//! connection, heads trickling in byte by byte, how answers are framed (length, chunked,
//! `HEAD`, `204`, `304`, the proxy's own errors), `Date`, `Connection: close` both ways, and
//! `[proxy] client_lane = false`, which gives every connection to hyper.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw::{content_length, next_head, read_more, read_until_closed};
use common::server::{write_config, Server};
use common::{dead_addr, wait_until, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every request an upstream got: its head and its body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An upstream that answers by path and records every request it got (head and body).
struct Upstream {
    addr: SocketAddr,
    seen: Seen,
    /// `/slow` and `/stall` requests whose connection closed before their answer was due.
    abandoned: Arc<AtomicUsize>,
}

/// The answer to a request for `path` (`body_len` bytes of body came with it).
fn answer(method: &str, path: &str, body_len: usize) -> Vec<u8> {
    match path {
        "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
            .to_vec(),
        "/no-content" => b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n".to_vec(),
        "/not-modified" => {
            b"HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\ncontent-length: 10\r\n\r\n".to_vec()
        }
        // A status with no standard reason phrase: every path passes the env's own on.
        "/odd" => b"HTTP/1.1 599 Odd\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        "/dated" => b"HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
              content-length: 2\r\n\r\nok"
            .to_vec(),
        _ => {
            let body = format!("{method} {path} {body_len}");
            let mut a = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if method != "HEAD" {
                a.extend_from_slice(body.as_bytes());
            }
            a
        }
    }
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Seen = Arc::default();
        let abandoned: Arc<AtomicUsize> = Arc::default();
        let (s, a) = (seen.clone(), abandoned.clone());
        tokio::spawn(async move {
            while let Ok((c, _)) = listener.accept().await {
                tokio::spawn(serve(c, s.clone(), a.clone()));
            }
        });
        Upstream {
            addr,
            seen,
            abandoned,
        }
    }

    fn seen(&self) -> Vec<(String, Vec<u8>)> {
        self.seen.lock().expect("seen").clone()
    }
}

/// Serve requests with a `Content-Length` body, a chunked one (without extensions or
/// trailers: what cutover sends upstream) or none.
async fn serve(mut s: TcpStream, seen: Seen, abandoned: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    loop {
        let Some((head, start)) = next_head(&mut s, &mut buf).await else {
            return;
        };
        let len = content_length(&head).unwrap_or(0);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = loop {
            if chunked {
                if let Some((body, used)) = dechunk(&buf[start..]) {
                    buf.drain(..start + used);
                    break body;
                }
            } else if buf.len() >= start + len {
                let body = buf[start..start + len].to_vec();
                buf.drain(..start + len);
                break body;
            }
            if !read_more(&mut s, &mut buf).await {
                return;
            }
        };
        let mut words = head.split(' ');
        let method = words.next().unwrap_or("").to_owned();
        let path = words.next().unwrap_or("/").to_owned();
        seen.lock().expect("seen").push((head, body.clone()));
        // An env that answers late (`/slow`: 800 ms) or not before the test ends (`/stall`).
        let late = match path.as_str() {
            "/slow" => Some(Duration::from_millis(800)),
            "/stall" => Some(Duration::from_secs(60)),
            _ => None,
        };
        if let Some(late) = late {
            let mut probe = [0u8; 1];
            tokio::select! {
                _ = tokio::time::sleep(late) => {}
                read = s.read(&mut probe) => {
                    if matches!(read, Ok(0) | Err(_)) {
                        abandoned.fetch_add(1, SeqCst);
                    }
                    return;
                }
            }
        }
        if s.write_all(&answer(&method, &path, body.len()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A whole chunked body at the start of `bytes`: its data and how many bytes it took.
fn dechunk(mut bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = bytes.len();
    let mut body = Vec::new();
    loop {
        let line = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&bytes[..line]).ok()?, 16).ok()?;
        bytes = &bytes[line + 2..];
        if bytes.len() < size + 2 {
            return None;
        }
        if size == 0 {
            return Some((body, total - bytes.len() + 2));
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

/// cutover with every user on OLD (the upstream); NEW and FALLBACK dead.
fn server_for(old: SocketAddr) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), old, dead_addr(), dead_addr(), "");
    (Server::start(&cfg), dir)
}

/// Split a stream of HTTP/1.1 answers into (head, body) pairs, decoding chunked bodies; the
/// bodies of answers to `HEAD` (`heads[i]`) and of 1xx/204/304 are empty.
fn answers(mut bytes: &[u8], head_requests: &[bool]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        bytes = &bytes[end + 4..];
        let lower = head.to_ascii_lowercase();
        let status: u16 = head[9..12].parse().expect("status");
        let header = |name: &str| {
            lower.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_owned())
            })
        };
        let bodiless = head_requests.get(out.len()).copied().unwrap_or(false)
            || status == 204
            || status == 304;
        let mut body = Vec::new();
        if bodiless {
        } else if header("transfer-encoding").as_deref() == Some("chunked") {
            loop {
                let line_end = bytes.windows(2).position(|w| w == b"\r\n").expect("size");
                let size = usize::from_str_radix(
                    std::str::from_utf8(&bytes[..line_end]).expect("hex"),
                    16,
                )
                .expect("hex");
                bytes = &bytes[line_end + 2..];
                if size == 0 {
                    assert!(bytes.starts_with(b"\r\n"), "no trailers expected");
                    bytes = &bytes[2..];
                    break;
                }
                body.extend_from_slice(&bytes[..size]);
                assert_eq!(&bytes[size..size + 2], b"\r\n");
                bytes = &bytes[size + 2..];
            }
        } else {
            let len: usize = header("content-length")
                .expect("a length or chunked")
                .parse()
                .expect("length");
            body.extend_from_slice(&bytes[..len]);
            bytes = &bytes[len..];
        }
        out.push((head, String::from_utf8_lossy(&body).into_owned()));
    }
    assert!(
        bytes.is_empty(),
        "bytes left over: {:?}",
        String::from_utf8_lossy(bytes)
    );
    out
}

async fn send_and_read_to_close(proxy: SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let reply = read_until_closed(&mut s, Instant::now(), Duration::from_secs(10)).await;
    (reply.bytes, reply.closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_of_both_lanes_are_answered_in_order_on_one_connection() {
    let up = Upstream::start().await;
    let (server, _dir) = server_for(up.addr);
    // Two for the lane, one with a body (hyper's from there on), two more after it.
    let pipeline = b"GET /one HTTP/1.1\r\nhost: a\r\nx-user-id: u1\r\n\r\n\
        HEAD /two HTTP/1.1\r\nhost: a\r\n\r\n\
        POST /three HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello\
        GET /four HTTP/1.1\r\nhost: a\r\n\r\n\
        GET /five HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n";
    let (bytes, closed) = send_and_read_to_close(server.proxy, pipeline).await;
    assert!(closed, "connection: close ends the connection");
    let got = answers(&bytes, &[false, true, false, false, false]);
    let bodies: Vec<&str> = got.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "GET /one 0",
            "",
            "POST /three 5",
            "GET /four 0",
            "GET /five 0"
        ]
    );
    for (head, _) in &got {
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("x-cutover-served-by: old"), "{head}");
        assert!(head.to_ascii_lowercase().contains("\r\ndate: "), "{head}");
    }
    assert!(
        got[1].0.contains("content-length: 11"),
        "a HEAD answer keeps the length the upstream gave: {}",
        got[1].0
    );
    assert!(
        got[4].0.to_ascii_lowercase().contains("connection: close"),
        "{}",
        got[4].0
    );
    let seen = up.seen();
    let paths: Vec<&str> = seen
        .iter()
        .map(|(h, _)| h.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(paths, ["/one", "/two", "/three", "/four", "/five"]);
    assert_eq!(seen[2].1, b"hello", "the body reached the upstream");
    for (head, _) in &seen {
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("\r\nhost: a"), "Host kept: {head}");
        assert!(lower.contains("\r\nx-forwarded-for: 127.0.0.1"), "{head}");
        assert!(
            !lower.contains("connection: close"),
            "hop-by-hop dropped: {head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickling_in_byte_by_byte_is_answered_and_the_connection_kept() {
    let up = Upstream::start().await;
    let (server, _dir) = server_for(up.addr);
    let mut s = TcpStream::connect(server.proxy).await.expect("connect");
    for round in 0..2 {
        let req = format!("GET /slow{round} HTTP/1.1\r\nhost: a\r\nx-user-id: u\r\n\r\n");
        for b in req.as_bytes() {
            s.write_all(&[*b]).await.expect("write");
            s.flush().await.expect("flush");
            // The trickle is what is tested: one byte at a time, each in its own read.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let text = common::raw::read_response(&mut s).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with(&format!("GET /slow{round} 0")), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_framed_for_the_client_whatever_the_upstream_sent() {
    let up = Upstream::start().await;
    let (server, _dir) = server_for(up.addr);
    let pipeline = b"GET /chunked HTTP/1.1\r\nhost: a\r\n\r\n\
        GET /no-content HTTP/1.1\r\nhost: a\r\n\r\n\
        GET /not-modified HTTP/1.1\r\nhost: a\r\n\r\n\
        GET /dated HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n";
    let (bytes, closed) = send_and_read_to_close(server.proxy, pipeline).await;
    assert!(closed);
    let got = answers(&bytes, &[]);
    assert_eq!(got.len(), 4, "{}", String::from_utf8_lossy(&bytes));
    let (head, body) = &got[0];
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(body, "abcdefg");
    assert!(
        got[1].0.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{}",
        got[1].0
    );
    assert!(got[1].0.contains("x-a: 1"), "{}", got[1].0);
    assert!(
        got[2].0.starts_with("HTTP/1.1 304 Not Modified\r\n"),
        "{}",
        got[2].0
    );
    assert!(!got[2].0.contains("content-length"), "{}", got[2].0);
    assert!(
        got[3].0.contains("date: Thu, 01 Jan 2026 00:00:00 GMT"),
        "the upstream's own Date is kept: {}",
        got[3].0
    );
    assert_eq!(got[3].0.matches("date:").count(), 1, "{}", got[3].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_own_answers_are_framed_and_dated() {
    // Every env dead: the lane's request gets the proxy's own 502.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), dead_addr(), dead_addr(), dead_addr(), "");
    let server = Server::start(&cfg);
    let (bytes, closed) = send_and_read_to_close(
        server.proxy,
        b"GET /x HTTP/1.1\r\nhost: a\r\n\r\nGET /y HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(closed);
    let got = answers(&bytes, &[]);
    assert_eq!(got.len(), 2, "{}", String::from_utf8_lossy(&bytes));
    for (head, body) in &got {
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{head}");
        assert!(head.contains("x-cutover-error: refused"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(body.starts_with("cutover: the old environment"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_lane_leaves_reach_hyper_with_every_byte() {
    let up = Upstream::start().await;
    let (server, _dir) = server_for(up.addr);
    // Each of these goes to hyper as the first request of its connection.
    let cases: &[(&[u8], &str)] = &[
        (
            b"GET /a HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "GET /a 3",
        ),
        (b"GET /b HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi", "GET /b 2"),
        (b"GET /c HTTP/1.0\r\nhost: a\r\n\r\n", "GET /c 0"),
        (
            b"PUT /d HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\nx",
            "PUT /d 1",
        ),
    ];
    for (bytes, want) in cases {
        let mut s = TcpStream::connect(server.proxy).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        let mut text = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while !text.ends_with(want) && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => break,
            }
        }
        assert!(
            text.ends_with(want),
            "{}: {text}\nupstream saw: {:?}",
            String::from_utf8_lossy(bytes),
            up.seen()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_lanes_answer_in_flight_and_closes_its_idle_connections() {
    let up = Upstream::start().await;
    let (mut server, _dir) = server_for(up.addr);
    // One connection idle after an answer, one with an answer in flight.
    let mut idle = TcpStream::connect(server.proxy).await.expect("connect");
    idle.write_all(b"GET /one HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("write");
    let first = common::raw::read_response(&mut idle).await;
    assert!(first.ends_with("GET /one 0"), "{first}");
    let mut busy = TcpStream::connect(server.proxy).await.expect("connect");
    busy.write_all(b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("write");
    wait_until("the /slow request at the upstream", WAIT, || async {
        up.seen().len() == 2
    })
    .await;
    let start = Instant::now();
    let exited = tokio::task::spawn_blocking(move || server.sigterm(Duration::from_secs(10)));
    let answer = read_until_closed(&mut busy, Instant::now(), Duration::from_secs(5)).await;
    assert!(answer.closed, "the connection ends after its last answer");
    assert_eq!(answer.status(), Some(200), "{}", answer.text());
    assert_eq!(answer.header("connection").as_deref(), Some("close"));
    assert!(answer.text().ends_with("GET /slow 0"), "{}", answer.text());
    let rest = read_until_closed(&mut idle, Instant::now(), Duration::from_secs(5)).await;
    assert!(
        rest.closed && rest.bytes.is_empty(),
        "idle connection: {}",
        rest.text()
    );
    assert_eq!(
        exited.await.expect("join"),
        Some(0),
        "exit code after SIGTERM"
    );
    // The drain timeout is 5 s: before it, so nothing waited for it.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_while_its_answer_is_on_the_way_cancels_the_request() {
    let up = Upstream::start().await;
    let (server, _dir) = server_for(up.addr);
    let mut s = TcpStream::connect(server.proxy).await.expect("connect");
    s.write_all(b"GET /stall HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("write");
    wait_until("the /stall request at the upstream", WAIT, || async {
        up.seen().len() == 1
    })
    .await;
    drop(s);
    // The upstream's answer is not due before the test ends: the proxy must let go of the
    // exchange (close its upstream connection) when its client goes.
    wait_until(
        "the upstream to see its exchange abandoned",
        WAIT,
        || async { up.abandoned.load(SeqCst) == 1 },
    )
    .await;
    assert_eq!(up.seen().len(), 1);
}

/// The status line of the one answer to `request` on a new connection.
async fn status_line(proxy: SocketAddr, request: &[u8]) -> String {
    let (bytes, _) = send_and_read_to_close(proxy, request).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    text.split("\r\n").next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lane_can_be_turned_off_and_on_again_by_a_reload() {
    // Every path answers alike (tests/conformance), so who answered is told by the lane's
    // own counter, `cutover_client_lane_requests_total`; the answer is the same either way.
    const ODD: &str = "HTTP/1.1 599 Odd";
    let get = b"GET /odd HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n";
    let post = b"POST /odd HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx";
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let off = "client_lane = false";
    let cfg = write_config(dir.path(), up.addr, dead_addr(), dead_addr(), off);
    let server = Server::start(&cfg);

    // Off: hyper answers every request, the lane's kind too.
    assert_eq!(status_line(server.proxy, get).await, ODD);
    assert_eq!(status_line(server.proxy, post).await, ODD);
    let pipeline = b"GET /a HTTP/1.1\r\nhost: a\r\n\r\nHEAD /b HTTP/1.1\r\nhost: a\r\n\r\n\
        GET /odd HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n";
    let (bytes, closed) = send_and_read_to_close(server.proxy, pipeline).await;
    assert!(closed);
    let got = answers(&bytes, &[false, true, false]);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].1, "GET /a 0");
    assert_eq!(got[2].0.lines().next(), Some(ODD));
    assert_eq!(lane_requests(&server).await, 0, "the lane is off");

    // On again by a reload: new connections start in the lane; hyper still takes a body.
    write_config(dir.path(), up.addr, dead_addr(), dead_addr(), "");
    let api = server.api();
    let r = api
        .post(server.url("/v1/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(
        body["changed"].to_string().contains("proxy.client_lane"),
        "{body}"
    );
    assert_eq!(status_line(server.proxy, get).await, ODD);
    assert_eq!(status_line(server.proxy, post).await, ODD);
    wait_until(
        "one lane request (the GET went through the lane, the POST through hyper)",
        WAIT,
        || async { lane_requests(&server).await == 1 },
    )
    .await;

    // A mistyped value is refused whole, naming the key; the lane stays on.
    write_config(
        dir.path(),
        up.addr,
        dead_addr(),
        dead_addr(),
        "client_lane = \"no\"",
    );
    let r = api
        .post(server.url("/v1/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 400);
    let text = r.text().await.expect("text");
    assert!(text.contains("client_lane"), "{text}");
    assert_eq!(status_line(server.proxy, get).await, ODD);
    wait_until(
        "a second lane request (the lane stayed on)",
        WAIT,
        || async { lane_requests(&server).await == 2 },
    )
    .await;
}

/// `cutover_client_lane_requests_total` of `server`.
async fn lane_requests(server: &Server) -> u64 {
    server
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("cutover_client_lane_requests_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the lane's counter")
}
