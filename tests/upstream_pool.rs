//! The upstream connection pool through the real binary: keep-alive connections are reused, an
//! upstream that closes its idle connections costs no user an error (not even a POST, which is
//! never replayed), and a connection whose response was cut short is not reused.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::server::{write_config, Server};
use common::{dead_addr, wait_until, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a raw upstream treats a connection after each answer.
#[derive(Clone, Copy)]
enum After {
    /// Keep it open for the next request.
    KeepAlive,
    /// Close it a moment after answering (an upstream with a short keep-alive timeout).
    CloseSoon,
}

/// A raw HTTP/1.1 upstream that counts connections and requests and answers `200 ok`.
struct RawUpstream {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// Connections it has closed.
    closed: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start(after: After) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conns = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (c, r, d) = (conns.clone(), requests.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                c.fetch_add(1, SeqCst);
                let (r, d) = (r.clone(), d.clone());
                tokio::spawn(async move {
                    serve(s, after, r).await;
                    d.fetch_add(1, SeqCst);
                });
            }
        });
        RawUpstream {
            addr,
            conns,
            requests,
            closed,
        }
    }
}

/// Answer each request on `s` (heads and `content-length` bodies only, which is all the test
/// sends) until the peer closes or `after` says to close; the socket is closed on return.
async fn serve(mut s: TcpStream, after: After, requests: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len = common::raw::content_length(&head).unwrap_or(0);
        while buf.len() < end + 4 + len {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + 4 + len);
        requests.fetch_add(1, SeqCst);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if s.write_all(answer).await.is_err() {
            return;
        }
        if let After::CloseSoon = after {
            // The short keep-alive timeout under test.
            tokio::time::sleep(Duration::from_millis(5)).await;
            return;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn server_for(old: SocketAddr) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    // NEW and FALLBACK are dead: any error would surface as a 502, never as a hidden replay.
    let cfg = write_config(dir.path(), old, dead_addr(), dead_addr(), "");
    (Server::start(&cfg), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_a_few_keep_alive_connections() {
    let up = RawUpstream::start(After::KeepAlive).await;
    let (server, _dir) = server_for(up.addr).await;
    let c = common::client();
    for i in 0..200 {
        let resp = c
            .get(server.proxy_url("/item"))
            .header("x-user-id", format!("u{i}"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.text().await.expect("body"), "ok");
    }
    assert_eq!(up.requests.load(SeqCst), 200);
    // One client connection at a time: each data-plane worker needs at most one upstream
    // connection, whatever the number of requests.
    let conns = up.conns.load(SeqCst);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert!(
        conns <= cores + 1,
        "200 sequential requests opened {conns} upstream connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_idle_connections_costs_no_user_an_error() {
    let up = RawUpstream::start(After::CloseSoon).await;
    let (server, _dir) = server_for(up.addr).await;
    let c = common::client();
    for i in 0..60 {
        // A POST with a body is never replayed on FALLBACK (dead here anyway): it must go out
        // on a live connection, not on the pooled one the upstream has closed meanwhile.
        let resp = c
            .post(server.proxy_url("/orders"))
            .header("x-user-id", "buyer")
            .body(format!("order {i}"))
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 200, "request {i}: {:?}", resp.headers());
        // Let the upstream's close come before the next request, as a keep-alive timeout would.
        let what = format!("the upstream to close connection {}", i + 1);
        wait_until(&what, WAIT, || async { up.closed.load(SeqCst) > i }).await;
    }
    assert_eq!(up.requests.load(SeqCst), 60);
    assert_eq!(
        up.conns.load(SeqCst),
        60,
        "one upstream connection per answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_client_abandons_does_not_poison_the_pool() {
    // An upstream that streams a long body slowly: the client reads the head and goes away.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let n = counted.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                if n == 0 {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\npartial")
                        .await;
                    // Hold the connection (mid-body or idle) past the test's end.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                } else {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    // Hold the connection (mid-body or idle) past the test's end.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    let (server, _dir) = server_for(addr).await;
    let c = common::client();
    let first = c.get(server.proxy_url("/big")).send().await.expect("first");
    assert_eq!(first.status(), 200);
    drop(first);
    // The first connection is still mid-body: the next request must get a new one and its
    // own answer, not wait behind (or read the rest of) the abandoned body.
    let second = tokio::time::timeout(Duration::from_secs(5), async {
        c.get(server.proxy_url("/small"))
            .send()
            .await
            .expect("second")
            .text()
            .await
            .expect("body")
    })
    .await
    .expect("the second request did not wait behind the abandoned one");
    assert_eq!(second, "ok");
    assert_eq!(conns.load(SeqCst), 2);
}
