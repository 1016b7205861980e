//! One behaviour per shape, whatever the path: the conformance suite.
//!
//! A request reaches cutover through the client lane or hyper's server (`[proxy] client_lane`
//! on or off), over HTTP/1.1 or HTTP/2 (h2c), and leaves on cutover's own HTTP/1.1 client (no
//! body) or hyper's (with a body). Every shape below — env answers from [`shapes::ANSWERS`]
//! and hostile request heads from [`REQUESTS`] — runs through every combination against the
//! real binary and a recording env ([`env::Env`]), and must give the same answer and put the
//! same bytes at the env, besides meeting its own expectation.

mod client;
#[path = "../common/mod.rs"]
mod common;
mod env;
mod shapes;

use std::net::SocketAddr;

use client::Answer;
use common::dead_addr;
use common::server::{write_config, Server};
use env::{Env, Seen};

/// Two proxies in front of one recording env (as OLD, weight 0): the lane on, and off.
struct Paths {
    env: Env,
    lanes: [(Server, &'static str); 2],
    _dirs: [tempfile::TempDir; 2],
}

impl Paths {
    async fn start() -> Paths {
        let env = Env::start().await;
        let on = tempfile::tempdir().expect("tempdir");
        let off = tempfile::tempdir().expect("tempdir");
        let cfg_on = write_config(on.path(), env.addr, dead_addr(), dead_addr(), "");
        let cfg_off = write_config(
            off.path(),
            env.addr,
            dead_addr(),
            dead_addr(),
            "client_lane = false",
        );
        Paths {
            env,
            lanes: [
                (Server::start(&cfg_on), "lane on"),
                (Server::start(&cfg_off), "lane off"),
            ],
            _dirs: [on, off],
        }
    }
}

/// The body variants: none (cutover's own client upstream) and one (hyper's).
const BODIES: [(&str, Option<&[u8]>); 2] = [("GET", None), ("POST", Some(b"hello"))];

fn h1_request(method: &str, target: &str, lines: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\n{lines}");
    if let Some(b) = body {
        r.push_str(&format!("content-length: {}\r\n", b.len()));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body.unwrap_or_default());
    r
}

/// Short text of a value for a failure message.
fn short(v: &impl std::fmt::Debug) -> String {
    let t = format!("{v:?}");
    if t.len() > 600 {
        format!("{}…", &t[..600])
    } else {
        t
    }
}

/// The first path's result of a shape, which every other path must equal.
#[derive(Default)]
struct FirstPath(Option<(String, PathResult)>);

/// What one path gave: the answer as compared, and what the env saw.
type PathResult = (Option<Compared>, Vec<Seen>);

impl FirstPath {
    fn check(
        &mut self,
        path: String,
        now: (Option<Compared>, Vec<Seen>),
        failures: &mut Vec<String>,
    ) {
        match &self.0 {
            None => self.0 = Some((path, now)),
            Some((p, then)) if *then != now => failures.push(format!(
                "{path} differs from {p}:\n  {}\n  {}",
                short(&now),
                short(then)
            )),
            Some(_) => {}
        }
    }
}

/// An answer as compared: status, headers (sorted, without `date` and framing), body.
type Compared = (u16, Vec<(String, String)>, Vec<u8>);

/// What must be the same between two paths: the answer without its `date`, and what the
/// env saw (headers sorted: their order is not part of the contract).
fn comparable(answer: &Option<Answer>, seen: &[Seen]) -> PathResult {
    let answer = answer.as_ref().map(|a| {
        let mut h: Vec<_> = a
            .headers
            .iter()
            .filter(|(k, _)| {
                k != "date"
                    && k != "connection"
                    && k != "content-length"
                    && k != "transfer-encoding"
            })
            .cloned()
            .collect();
        h.sort();
        (a.status, h, a.body.clone())
    });
    let seen = seen
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.headers.sort();
            s
        })
        .collect();
    (answer, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_env_answer_reaches_every_client_path_alike() {
    let paths = Paths::start().await;
    let mut failures = Vec::new();
    for shape in shapes::ANSWERS {
        for (method, body) in BODIES {
            let target = format!("/answer/{}", shape.name);
            let mut first = FirstPath::default();
            for (server, lane) in &paths.lanes {
                for proto in ["HTTP/1.1", "h2c"] {
                    let path = format!("{} {lane}, {proto}, {method}", shape.name);
                    let answer = if proto == "h2c" {
                        client::h2c(server.proxy, method, &target, &[], body).await
                    } else {
                        let req = h1_request(method, &target, "host: conformance.test\r\n", body);
                        client::h1(server.proxy, &req, false, false).await.0
                    };
                    let seen = paths.env.take();
                    eprintln!(
                        "{path}: {:?}",
                        answer.as_ref().map(|a| (a.status, a.reason.clone()))
                    );
                    check_answer(&path, shape, answer.as_ref(), proto, &mut failures);
                    first.check(path, comparable(&answer, &seen), &mut failures);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn check_answer(
    path: &str,
    shape: &shapes::AnswerShape,
    answer: Option<&Answer>,
    proto: &str,
    failures: &mut Vec<String>,
) {
    let e = &shape.expect;
    let Some(a) = answer else {
        failures.push(format!("{path} ({}): no answer", shape.why));
        return;
    };
    let mut wrong = Vec::new();
    if a.status != e.status {
        wrong.push(format!("status {} (want {})", a.status, e.status));
    }
    if a.body != e.body && e.error.is_none() {
        wrong.push(format!("body {:?}", String::from_utf8_lossy(&a.body)));
    }
    if a.header("x-cutover-error") != e.error {
        wrong.push(format!("x-cutover-error {:?}", a.header("x-cutover-error")));
    }
    if proto == "HTTP/1.1" {
        if a.reason.as_deref() != Some(e.reason) {
            wrong.push(format!("reason {:?} (want {:?})", a.reason, e.reason));
        }
        if a.version.as_deref() != Some("HTTP/1.1") {
            wrong.push(format!("version {:?}", a.version));
        }
        if let Some(len) = e.length {
            if a.all("content-length") != [len] {
                wrong.push(format!("content-length {:?}", a.all("content-length")));
            }
        }
        if a.header("transfer-encoding").is_some() && a.header("content-length").is_some() {
            wrong.push("both Content-Length and Transfer-Encoding".into());
        }
    }
    if !wrong.is_empty() {
        failures.push(format!("{path} ({}): {}", shape.why, wrong.join(", ")));
    }
}

/// A hostile or odd request head: the lines after the request line (without the body's
/// framing), and what must come of it.
struct RequestShape {
    name: &'static str,
    target: &'static str,
    lines: &'static str,
    expect: Outcome,
}

enum Outcome {
    /// The proxy answers 400 with this `x-cutover-error` (or hyper's bare 400: `None`),
    /// closes, and nothing reaches the env.
    Refused(Option<&'static str>),
    /// The env gets the request; `check` says what it must have seen.
    Served(fn(&Seen) -> Result<(), String>),
}

const HOST: &str = "host: conformance.test\r\n";

const REQUESTS: &[RequestShape] = &[
    RequestShape {
        name: "two Host headers",
        target: "/answer/ok",
        lines: "host: a.test\r\nhost: b.test\r\n",
        expect: Outcome::Refused(Some("duplicate-host")),
    },
    RequestShape {
        name: "no Host on HTTP/1.1",
        target: "/answer/ok",
        lines: "x-a: 1\r\n",
        expect: Outcome::Refused(Some("missing-host")),
    },
    RequestShape {
        name: "a Host with a space",
        target: "/answer/ok",
        lines: "host: a b.test\r\n",
        expect: Outcome::Refused(Some("invalid-host")),
    },
    RequestShape {
        name: "authority-form target",
        target: "conformance.test:80",
        lines: HOST,
        expect: Outcome::Refused(Some("authority-form")),
    },
    RequestShape {
        name: "absolute-form target whose authority differs from Host",
        target: "http://target.test/answer/ok",
        lines: "host: other.test\r\n",
        expect: Outcome::Served(|s| {
            expect_eq("host", s.header("host"), Some("target.test"))?;
            expect_eq("target", Some(s.target.as_str()), Some("/answer/ok"))
        }),
    },
    RequestShape {
        name: "Connection naming Host, forwarding and framing headers",
        target: "/answer/ok",
        lines: "host: conformance.test\r\nconnection: host, x-forwarded-for, forwarded, content-length, x-forwarded-proto\r\nx-forwarded-for: 6.6.6.6\r\n",
        expect: Outcome::Served(|s| {
            expect_eq("host", s.header("host"), Some("conformance.test"))?;
            expect_eq("x-forwarded-for", s.header("x-forwarded-for"), Some("127.0.0.1"))?;
            expect_eq("x-forwarded-proto", s.header("x-forwarded-proto"), Some("http"))?;
            expect_eq(
                "forwarded",
                s.header("forwarded"),
                Some("for=127.0.0.1;proto=http;host=conformance.test"),
            )
        }),
    },
    RequestShape {
        name: "Connection naming an end-to-end header of the client's",
        target: "/answer/ok",
        lines: "host: conformance.test\r\nconnection: x-secret\r\nx-secret: 1\r\nx-kept: 1\r\n",
        expect: Outcome::Served(|s| {
            expect_eq("x-secret", s.header("x-secret"), None)?;
            expect_eq("x-kept", s.header("x-kept"), Some("1"))
        }),
    },
    RequestShape {
        name: "hop-by-hop headers",
        target: "/answer/ok",
        lines: "host: conformance.test\r\nkeep-alive: timeout=5\r\nte: deflate, trailers\r\nproxy-authorization: Basic eA==\r\nproxy-connection: keep-alive\r\ntrailer: x-t\r\n",
        expect: Outcome::Served(|s| {
            for h in ["keep-alive", "proxy-authorization", "proxy-connection", "connection"] {
                expect_eq(h, s.header(h), None)?;
            }
            // `TE` is hop-by-hop, but its `trailers` is what gRPC servers require: it goes on
            // alone. `Trailer` is end to end (RFC 9110 §6.6.2).
            expect_eq("te", s.header("te"), Some("trailers"))?;
            expect_eq("trailer", s.header("trailer"), Some("x-t"))
        }),
    },
    RequestShape {
        name: "TE without trailers",
        target: "/answer/ok",
        lines: "host: conformance.test\r\nte: gzip\r\n",
        expect: Outcome::Served(|s| expect_eq("te", s.header("te"), None)),
    },
    RequestShape {
        name: "spoofed forwarding headers",
        target: "/answer/ok",
        lines: "host: conformance.test\r\nx-forwarded-for: 6.6.6.6\r\nforwarded: for=6.6.6.6\r\nx-forwarded-proto: https\r\n",
        expect: Outcome::Served(|s| {
            expect_eq("x-forwarded-for", s.header("x-forwarded-for"), Some("127.0.0.1"))?;
            expect_eq("x-forwarded-proto", s.header("x-forwarded-proto"), Some("http"))?;
            expect_eq("forwarded count", Some(&*s.count("forwarded").to_string()), Some("1"))
        }),
    },
];

fn expect_eq(what: &str, got: Option<&str>, want: Option<&str>) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: {got:?}, want {want:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_shape_is_answered_alike_on_every_path() {
    let paths = Paths::start().await;
    let mut failures = Vec::new();
    for shape in REQUESTS {
        for (method, body) in BODIES {
            let mut first = FirstPath::default();
            for (server, lane) in &paths.lanes {
                let path = format!("{} ({lane}, {method})", shape.name);
                let req = h1_request(method, shape.target, shape.lines, body);
                let refused = matches!(shape.expect, Outcome::Refused(_));
                let (answer, closed) = client::h1(server.proxy, &req, false, refused).await;
                let seen = paths.env.take();
                match (&shape.expect, &answer) {
                    (Outcome::Refused(code), Some(a)) => {
                        if a.status != 400
                            || a.header("x-cutover-error") != *code
                            || !closed
                            || !seen.is_empty()
                        {
                            failures.push(format!(
                                "{path}: {} {:?}, closed {closed}, env saw {}",
                                a.status,
                                a.header("x-cutover-error"),
                                seen.len()
                            ));
                        }
                    }
                    (Outcome::Served(check), Some(a)) => {
                        let verdict = match seen.as_slice() {
                            [one] => check(one).and_then(|()| {
                                expect_eq(
                                    "body",
                                    Some(&*String::from_utf8_lossy(&one.body)),
                                    Some(&*String::from_utf8_lossy(body.unwrap_or_default())),
                                )
                            }),
                            other => Err(format!("the env saw {} requests", other.len())),
                        };
                        if a.status != 200 {
                            failures.push(format!("{path}: status {}", a.status));
                        }
                        if let Err(e) = verdict {
                            failures.push(format!("{path}: {e}"));
                        }
                    }
                    (_, None) => failures.push(format!("{path}: no answer")),
                }
                first.check(path, comparable(&answer, &seen), &mut failures);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// h2c is spoken from a connection's first byte or not at all: HTTP/2's preface after an
/// HTTP/1.1 request is refused (NGINX and HAProxy answer it 400 too), on both lanes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_preface_after_a_request_is_refused_on_both_lanes() {
    let paths = Paths::start().await;
    for (server, lane) in &paths.lanes {
        let mut req = h1_request("GET", "/answer/ok", HOST, None);
        req.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let mut s = tokio::net::TcpStream::connect(server.proxy)
            .await
            .expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut s, &req)
            .await
            .expect("write");
        let mut buf = Vec::new();
        let first = client::read_answer(&mut s, &mut buf, false)
            .await
            .expect("first answer");
        assert_eq!(first.status, 200, "{lane}");
        let second = client::read_answer(&mut s, &mut buf, false).await;
        let second = second.unwrap_or_else(|| panic!("{lane}: closed without an answer"));
        assert_eq!(
            (second.status, second.header("x-cutover-error")),
            (400, Some("late-http2-preface")),
            "{lane}"
        );
        assert_eq!(
            paths.env.take().len(),
            1,
            "{lane}: only the GET reached the env"
        );
    }
    // The preface as a connection's first bytes is HTTP/2, on both lanes.
    for (server, lane) in &paths.lanes {
        let a = client::h2c(server.proxy, "GET", "/answer/ok", &[], None)
            .await
            .unwrap_or_else(|| panic!("{lane}: h2c"));
        assert_eq!(a.status, 200, "{lane}");
    }
    let _: SocketAddr = paths.env.addr;
}

/// An env that sends late stray bytes after some answers: a body after a `204`, after a
/// `HEAD` answer, or past the `Content-Length`, 30 ms after the answer, on the same
/// connection. `strays` counts the strays written.
async fn stray_env() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let strays = std::sync::Arc::new(AtomicUsize::new(0));
    let count = strays.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            // Each write goes out at once: with Nagle's algorithm the stray would wait in this
            // env's send buffer for the ACK of the answer before it, and reach the proxy after
            // the next request was written, where no proxy can tell it from that answer.
            let _ = s.set_nodelay(true);
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some((head, end)) = common::raw::next_head(&mut s, &mut buf).await {
                    buf.drain(..end);
                    // A request's body is read and dropped, so the next head starts clean.
                    let length = common::raw::content_length(&head).unwrap_or(0);
                    while buf.len() < length {
                        if !common::raw::read_more(&mut s, &mut buf).await {
                            return;
                        }
                    }
                    buf.drain(..length);
                    let (answer, stray): (&[u8], &[u8]) = if head.contains("/204") {
                        (
                            b"HTTP/1.1 204 No Content\r\n\r\n",
                            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nSTRAY",
                        )
                    } else if head.starts_with("HEAD") {
                        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", b"STRAY")
                    } else if head.contains("/overflow") {
                        (
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nSTRAY",
                        )
                    } else {
                        (b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nreal", b"")
                    };
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                    if !stray.is_empty() {
                        // The stray bytes come unasked, after the answer: the case tested.
                        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                        if s.write_all(stray).await.is_err() {
                            return;
                        }
                        count.fetch_add(1, SeqCst);
                    }
                }
            });
        }
    });
    (addr, strays)
}

/// Bytes an env sends late, after an answer that had no room for them, arrive before the
/// next request on that pooled connection is written: they are never that request's answer
/// (the connection is dropped for another one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_stray_bytes_from_an_env_never_answer_the_next_request() {
    use std::sync::atomic::Ordering::SeqCst;
    let (env, strays) = stray_env().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), env, dead_addr(), dead_addr(), "");
    let server = Server::start(&cfg);
    // A `GET` goes out on a connection cutover speaks by hand, a `POST` with a body on one
    // of hyper's: both pools are checked.
    let body: Option<&[u8]> = Some(b"a body");
    for (method, first, next_body) in [
        ("GET", "/204", None),
        ("HEAD", "/head", None),
        ("GET", "/overflow", None),
        ("POST", "/204", body),
        ("POST", "/overflow", body),
    ] {
        let head = method == "HEAD";
        for round in 0..5 {
            let before = strays.load(SeqCst);
            let req = h1_request(method, first, HOST, next_body);
            let (a, _) = client::h1(server.proxy, &req, head, false).await;
            assert!(a.is_some(), "{first}: no answer");
            common::wait_until("the env to send its stray", common::WAIT, || {
                let n = strays.load(SeqCst);
                async move { n > before }
            })
            .await;
            // The stray is in the proxy's socket now (loopback delivers within the env's
            // write), though the proxy's runtime may not have polled for it yet: the next
            // request goes at once, which is the case tested — the proxy asks the kernel before
            // it reuses an idle connection, on both upstream paths.
            let next_method = if next_body.is_some() { "POST" } else { "GET" };
            let req = h1_request(next_method, "/next", HOST, next_body);
            let (next, _) = client::h1(server.proxy, &req, false, false).await;
            let next = next.expect("an answer to the next request");
            assert_eq!(
                (
                    next.status,
                    String::from_utf8_lossy(&next.body).into_owned()
                ),
                (200, "real".to_owned()),
                "{method} {first}, round {round}: the next request got the stray"
            );
        }
    }
}
