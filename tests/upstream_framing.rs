//! Answers of every shape, through the real binary, from a scripted upstream. A request
//! without a body goes out on cutover's own HTTP/1.1 client (`src/proxy/upstream/h1.rs`,
//! `src/proxy/upstream/rawconn.rs`): chunked answers with extensions and trailers, answers
//! read to the close, interim `1xx` answers, `HEAD`, malformed and cut-short answers, an
//! upstream that closes without answering, and keep-alive connections the upstream closed (or
//! sent an unasked `408` on) while idle.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::server::{write_config, Server};
use common::{dead_addr, wait_until, WAIT};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the scripted upstream sends for a path, and whether it closes the connection after.
fn script(path: &str) -> (&'static [u8], bool) {
    match path {
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
            false,
        ),
        "/close" => (
            b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end",
            true,
        ),
        "/interim" => (
            b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            false,
        ),
        "/head" => (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", false),
        "/bad-length" => (b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n", false),
        "/short" => (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort", true),
        "/silent" => (b"", true),
        _ => (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
    }
}

/// A raw upstream answering by [`script`]; counts connections and requests and keeps every
/// request head it got.
struct Scripted {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    /// Connections it has closed.
    closed: Arc<AtomicUsize>,
}

impl Scripted {
    /// `close_soon`: close every connection a moment after answering, as an upstream with a
    /// short keep-alive timeout does.
    async fn start(close_soon: bool) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let up = Scripted {
            addr,
            conns: Arc::default(),
            requests: Arc::default(),
            heads: Arc::default(),
            closed: Arc::default(),
        };
        let (c, r, h) = (up.conns.clone(), up.requests.clone(), up.heads.clone());
        let d = up.closed.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                c.fetch_add(1, SeqCst);
                let (r, h, d) = (r.clone(), h.clone(), d.clone());
                tokio::spawn(async move {
                    serve(s, close_soon, r, h).await;
                    d.fetch_add(1, SeqCst);
                });
            }
        });
        up
    }

    fn requests(&self) -> usize {
        self.requests.load(SeqCst)
    }

    /// Wait until it has closed `n` connections.
    async fn wait_closed(&self, n: usize) {
        let what = format!("the upstream to close {n} connection(s)");
        wait_until(&what, WAIT, || async { self.closed.load(SeqCst) >= n }).await;
    }
}

/// Answer the requests on `s` (heads only: the requests here have no body); the socket is
/// closed on return.
async fn serve(
    mut s: TcpStream,
    close_soon: bool,
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    loop {
        let Some((head, start)) = common::raw::next_head(&mut s, &mut buf).await else {
            return;
        };
        buf.drain(..start);
        requests.fetch_add(1, SeqCst);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        heads.lock().expect("heads").push(head);
        let (answer, close) = script(&path);
        if s.write_all(answer).await.is_err() || close {
            return;
        }
        if path == "/then-408" {
            // What some servers do to an idle keep-alive connection before closing it (the
            // pause is part of it: the answer comes unasked, after the last one).
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = s
                .write_all(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            return;
        }
        if close_soon {
            // The short keep-alive timeout under test.
            tokio::time::sleep(Duration::from_millis(5)).await;
            return;
        }
    }
}

/// cutover with everyone on OLD (the scripted upstream); NEW and FALLBACK dead, so a failure
/// is a clear error, never a hidden replay that answers.
fn server_for(old: SocketAddr) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), old, dead_addr(), dead_addr(), "");
    (Server::start(&cfg), dir)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framing_reaches_the_client_whole_on_reused_connections() {
    let up = Scripted::start(false).await;
    let (server, _dir) = server_for(up.addr);
    let c = common::client();
    for round in 0..3 {
        let chunked = c
            .get(server.proxy_url("/chunked"))
            .send()
            .await
            .expect("get");
        assert_eq!(chunked.status(), 200);
        assert_eq!(
            chunked.text().await.expect("body"),
            "hello world",
            "round {round}"
        );
        let interim = c
            .get(server.proxy_url("/interim"))
            .send()
            .await
            .expect("get");
        assert_eq!(
            interim.status(),
            200,
            "the 103 is skipped, the 200 is the answer"
        );
        assert_eq!(interim.text().await.expect("body"), "ok");
        let head = c
            .head(server.proxy_url("/head"))
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), 200);
        assert_eq!(
            head.headers().get("content-length").map(|v| v.as_bytes()),
            Some(&b"10"[..]),
            "a HEAD answer keeps its length"
        );
        assert_eq!(head.text().await.expect("body"), "");
    }
    assert_eq!(up.requests(), 9);
    let conns = up.conns.load(SeqCst);
    assert!(
        conns <= cores() + 1,
        "9 sequential requests took {conns} upstream connections: not reused"
    );
    let heads = up.heads.lock().expect("heads").clone();
    let first = heads[0].to_ascii_lowercase();
    assert!(first.starts_with("get /chunked http/1.1\r\n"), "{first}");
    assert!(first.contains("\r\nhost: "), "Host kept: {first}");
    assert!(first.contains("\r\nx-forwarded-for: 127.0.0.1"), "{first}");
    assert!(
        !first.contains("content-length"),
        "a GET needs no length: {first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_read_to_the_close_arrives_whole_and_its_connection_is_not_reused() {
    let up = Scripted::start(false).await;
    let (server, _dir) = server_for(up.addr);
    let c = common::client();
    let resp = c.get(server.proxy_url("/close")).send().await.expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "until the end");
    let resp = c.get(server.proxy_url("/plain")).send().await.expect("get");
    assert_eq!(resp.text().await.expect("body"), "ok");
    assert_eq!(up.conns.load(SeqCst), 2, "the closed connection was reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_cut_answers_are_clear_errors_and_poison_nothing() {
    let up = Scripted::start(false).await;
    let (server, _dir) = server_for(up.addr);
    let c = common::client();
    let bad = c
        .get(server.proxy_url("/bad-length"))
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 502);
    assert_eq!(
        bad.headers().get("x-cutover-error").map(|v| v.as_bytes()),
        Some(&b"reset"[..])
    );
    // The head was fine but the body stops short: the client sees an error (on the head or
    // the body, depending on how far the answer got) rather than a short body passed off as
    // whole.
    if let Ok(short) = c.get(server.proxy_url("/short")).send().await {
        assert_eq!(short.status(), 200);
        assert!(short.text().await.is_err(), "a cut body read as complete");
    }
    let ok = c.get(server.proxy_url("/plain")).send().await.expect("get");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.expect("body"), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_idle_connections_costs_no_bodyless_request_an_error() {
    let up = Scripted::start(true).await;
    let (server, _dir) = server_for(up.addr);
    let c = common::client();
    for i in 0..30 {
        let req = match i % 3 {
            0 => c.get(server.proxy_url("/plain")),
            // Not idempotent: never sent twice, so it must go out on a live connection.
            1 => c.post(server.proxy_url("/plain")),
            _ => c.delete(server.proxy_url("/plain")),
        };
        let resp = req.header("x-user-id", "u").send().await.expect("send");
        assert_eq!(resp.status(), 200, "request {i}: {:?}", resp.headers());
        // Let the upstream's close come before the next request.
        up.wait_closed(i + 1).await;
    }
    assert_eq!(up.requests(), 30, "a request was sent twice");
    assert_eq!(
        up.conns.load(SeqCst),
        30,
        "one upstream connection per answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_without_an_answer_gets_a_request_at_most_twice() {
    let up = Scripted::start(false).await;
    let (server, _dir) = server_for(up.addr);
    // One client connection (so one data-plane worker and its pool) for every request.
    let mut client = TcpStream::connect(server.proxy).await.expect("connect");
    let mut ask = async |req: &str| {
        client.write_all(req.as_bytes()).await.expect("write");
        common::raw::read_response(&mut client).await
    };
    // A keep-alive connection in the pool first.
    let warm = ask("GET /plain HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert!(warm.starts_with("HTTP/1.1 200"), "{warm}");
    let before = up.requests();
    // Idempotent: the pooled connection might have been stale, so it is sent once more, on a
    // new connection; never a third time.
    let get = ask("GET /silent HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert!(get.starts_with("HTTP/1.1 502"), "{get}");
    assert_eq!(up.requests() - before, 2, "GET sent other than twice");
    // Again from a pooled connection: a POST is sent once, whatever happens.
    let warm = ask("GET /plain HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert!(warm.starts_with("HTTP/1.1 200"), "{warm}");
    let before = up.requests();
    let post = ask("POST /silent HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n").await;
    assert!(post.starts_with("HTTP/1.1 502"), "{post}");
    assert_eq!(up.requests() - before, 1, "a POST was sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unasked_answer_on_an_idle_connection_is_never_taken_for_the_next_one() {
    let up = Scripted::start(false).await;
    let (server, _dir) = server_for(up.addr);
    let mut client = TcpStream::connect(server.proxy).await.expect("connect");
    for (round, method) in ["GET", "POST"].into_iter().enumerate() {
        client
            .write_all(b"GET /then-408 HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .expect("write");
        let first = common::raw::read_response(&mut client).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        // The upstream's 408 and close arrive while the connection sits in the pool.
        up.wait_closed(round + 1).await;
        let req = format!("{method} /plain HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n");
        client.write_all(req.as_bytes()).await.expect("write");
        let next = common::raw::read_response(&mut client).await;
        assert!(
            next.starts_with("HTTP/1.1 200") && next.ends_with("ok"),
            "{method}: {next}"
        );
    }
}
