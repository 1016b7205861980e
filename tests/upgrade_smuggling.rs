//! An upgrade request that declares a body must not desync a pooled upstream connection
//! (request smuggling), through the real binary, with the client lane on and off.
//!
//! The env here is a raw logging upstream that behaves like NGINX: it answers a request as
//! soon as its head is in and then skips the body its head declares. It records every raw
//! byte and every request head it parses, so the tests can say exactly which requests reached
//! it. Before the fix, `GET /early` with `Connection: Upgrade`, `Upgrade: foo` and a
//! `Content-Length` went upstream with that length but without its body; the env skipped the
//! first bytes of the next request cutover sent on that connection (another client's), and
//! read that client's body as a request of its own, spoofed headers and all.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw::{read_response, read_until_closed, Reply};
use common::server::Server;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// What the attacker wants the env to take for a request of its own (sent as the body of an
/// ordinary POST), with the forwarding and override headers cutover normally strips.
const SMUGGLED: &str = "GET /SMUGGLED HTTP/1.1\r\nHost: internal\r\nX-Forwarded-For: 6.6.6.6\r\nX-Cutover-Env: fallback\r\n\r\n";

/// One request as the env parsed it off one of its connections.
#[derive(Debug, Clone)]
struct Seen {
    conn: usize,
    head: String,
    /// Bytes of the head, blank line included.
    head_len: usize,
}

impl Seen {
    fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }
}

#[derive(Default)]
struct Log {
    seen: Vec<Seen>,
    /// Every byte each connection brought, by connection number.
    raw: Vec<Vec<u8>>,
    /// Connections that cutover closed.
    closed: Vec<usize>,
}

/// The logging upstream.
struct Logged {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl Logged {
    async fn start() -> Logged {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Log::default()));
        let l = log.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let conn = {
                    let mut g = l.lock().expect("log");
                    g.raw.push(Vec::new());
                    g.raw.len() - 1
                };
                tokio::spawn(serve(s, conn, l.clone()));
            }
        });
        Logged { addr, log }
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().expect("log").seen.clone()
    }

    fn raw(&self) -> Vec<u8> {
        self.log.lock().expect("log").raw.concat()
    }

    fn closed(&self, conn: usize) -> bool {
        self.log.lock().expect("log").closed.contains(&conn)
    }
}

/// Read more of connection `conn` into `buf`, logging the bytes; false once it closed.
async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>, conn: usize, log: &Mutex<Log>) -> bool {
    let before = buf.len();
    if !common::raw::read_more(s, buf).await {
        return false;
    }
    log.lock().expect("log").raw[conn].extend_from_slice(&buf[before..]);
    true
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Answer each request at once (its path is the answer's body), then skip the body its head
/// declares — what NGINX does with a request it answers without reading the body.
async fn serve(mut s: TcpStream, conn: usize, log: Arc<Mutex<Log>>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if !read_more(&mut s, &mut buf, conn, &log).await {
                log.lock().expect("log").closed.push(conn);
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end - 4]).into_owned();
        buf.drain(..end);
        let seen = Seen {
            conn,
            head: head.clone(),
            head_len: end,
        };
        let path = seen.path().to_owned();
        log.lock().expect("log").seen.push(seen);
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}",
            path.len()
        );
        if s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        let chunked = header(&head, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let skip = if chunked {
            loop {
                if let Some(p) = buf.windows(5).position(|w| w == b"0\r\n\r\n") {
                    break p + 5;
                }
                if !read_more(&mut s, &mut buf, conn, &log).await {
                    return;
                }
            }
        } else {
            let n: usize = header(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < n {
                if !read_more(&mut s, &mut buf, conn, &log).await {
                    return;
                }
            }
            n
        };
        buf.drain(..skip);
    }
}

/// cutover on one data-plane worker (so every request shares one pool of upstream
/// connections), every env on the logging upstream.
fn server_for(up: SocketAddr, lane: bool) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg: PathBuf = dir.path().join("cutover.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\nworkers = 1\n[admin]\naddr = \"127.0.0.1:0\"\n\
             [store]\npath = \"store\"\n[envs.old]\nupstreams = [\"{up}\"]\n\
             [envs.new]\nupstreams = [\"{up}\"]\n[envs.fallback]\nupstreams = [\"{up}\"]\n\
             [proxy]\nclient_lane = {lane}\n"
        ),
    )
    .expect("config");
    (Server::start(&cfg), dir)
}

/// A client's ordinary `POST /login` whose body is [`SMUGGLED`]; returns the whole answer.
async fn login(proxy: SocketAddr) -> String {
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    let req = format!(
        "POST /login HTTP/1.1\r\nHost: app\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    read_response(&mut s).await
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Send `bytes` on a new connection; read until cutover closes it (or a few seconds pass).
async fn attempt(proxy: SocketAddr, bytes: &[u8]) -> Reply {
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    let _ = s.write_all(bytes).await;
    read_until_closed(&mut s, Instant::now(), Duration::from_secs(3)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_with_a_body_is_refused_and_smuggles_nothing() {
    for lane in [true, false] {
        let up = Logged::start().await;
        let (server, _dir) = server_for(up.addr, lane);

        // An ordinary client first; the env's view of its head gives the attacker the length
        // to announce (cutover forwards the same head for the same request every time).
        let first = login(server.proxy).await;
        assert_eq!(body(&first), "/login", "lane {lane}: {first}");
        let head_len = up.seen()[0].head_len;

        // The attack: an upgrade whose declared body would swallow exactly the next
        // request's head on the same upstream connection.
        let early = format!(
            "GET /early HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\
             Content-Length: {head_len}\r\n\r\n{}",
            "x".repeat(head_len)
        );
        let refused = attempt(server.proxy, early.as_bytes()).await;
        // Another client, on the connection the attack would have poisoned.
        let second = login(server.proxy).await;
        assert_eq!(
            body(&second),
            "/login",
            "lane {lane}: the other client got someone else's answer: {second}; the env saw {:#?}",
            up.seen()
        );

        let chunked = attempt(
            server.proxy,
            b"GET /early-chunked HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\
              Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        // And one without a body (the hand-spoken upstream lane).
        let mut s = TcpStream::connect(server.proxy).await.expect("connect");
        s.write_all(b"GET /after HTTP/1.1\r\nHost: app\r\n\r\n")
            .await
            .expect("write");
        let after = read_response(&mut s).await;
        assert_eq!(body(&after), "/after", "lane {lane}: {after}");

        for (name, r) in [("content-length", &refused), ("chunked", &chunked)] {
            assert_eq!(r.status(), Some(400), "lane {lane}, {name}: {}", r.text());
            assert_eq!(
                r.header("x-cutover-error").as_deref(),
                Some("upgrade-with-body"),
                "lane {lane}, {name}: {}",
                r.text()
            );
            assert!(r.closed, "lane {lane}, {name}: the connection stays open");
        }

        // The env saw exactly the requests cutover meant to send, nothing else.
        let seen = up.seen();
        let paths: Vec<&str> = seen.iter().map(Seen::path).collect();
        assert_eq!(
            paths,
            ["/login", "/login", "/after"],
            "lane {lane}: {seen:#?}"
        );
        for s in &seen {
            let head = s.head.to_ascii_lowercase();
            assert!(
                !head.contains("6.6.6.6") && !head.contains("x-cutover-env"),
                "lane {lane}: a spoofed header reached the env: {head}"
            );
        }
        let raw = String::from_utf8_lossy(&up.raw()).into_owned();
        assert!(
            !raw.contains("/early"),
            "lane {lane}: the refused upgrade reached the env: {raw}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_upgrade_never_goes_back_to_the_pool() {
    for lane in [true, false] {
        let up = Logged::start().await;
        let (server, _dir) = server_for(up.addr, lane);
        let mut s = TcpStream::connect(server.proxy).await.expect("connect");
        s.write_all(
            b"GET /declined HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n",
        )
        .await
        .expect("write");
        let declined = read_response(&mut s).await;
        assert_eq!(body(&declined), "/declined", "lane {lane}: {declined}");
        let conn = up.seen()[0].conn;

        // The env answered without switching protocols: the exchange is not provably over for
        // the env, so cutover closes that connection instead of reusing it.
        let what = format!("lane {lane}: the connection of a declined upgrade to close");
        common::wait_until(&what, common::WAIT, || async { up.closed(conn) }).await;
        let next = login(server.proxy).await;
        assert_eq!(body(&next), "/login", "lane {lane}: {next}");
        let seen = up.seen();
        assert_eq!(seen.len(), 2, "lane {lane}: {seen:#?}");
        assert_ne!(
            seen[1].conn, conn,
            "lane {lane}: the next request went out on the upgrade's connection"
        );
    }
}
