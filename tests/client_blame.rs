//! Whose fault a failed exchange was, through the real binary with every user on NEW: a
//! client's own broken body, and the proxy's own shortage of file handles, must never count as
//! NEW's errors (NEW's `error_rate` feeds the gates that roll a migration back).
//!
//! Before the fix a malformed chunk, or a client hanging up mid-upload, got `502
//! x-cutover-error: reset` ("the env closed the connection") and counted as NEW's error; a
//! proxy out of file handles counted NEW's `refused`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::raw::{read_response, read_until_closed, Reply};
use common::server::Server;
use common::{server_with, wait_in_flight, wait_until, WAIT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The value of the sample `name` (with its labels, as written) in a Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        (n == name).then(|| v.parse().ok())?
    })
}

/// Every `cutover_errors_total` sample of `scope`, summed.
fn errors_of(text: &str, scope: &str) -> f64 {
    let prefix = match scope {
        "users" => "cutover_user_errors_total{".to_owned(),
        env => format!("cutover_errors_total{{env=\"{env}\","),
    };
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// How a broken upload ends on the client's side.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Stays connected and waits for the answer.
    Wait,
    /// Stops sending (half-close) and waits for the answer.
    HalfClose,
    /// Hangs up entirely.
    HangUp,
}

async fn upload(proxy: std::net::SocketAddr, bytes: &[u8], end: End) -> Reply {
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    match end {
        End::Wait => {}
        End::HalfClose => s.shutdown().await.expect("shutdown"),
        End::HangUp => {
            drop(s);
            return Reply {
                bytes: Vec::new(),
                closed: true,
                elapsed: Duration::ZERO,
            };
        }
    }
    read_until_closed(&mut s, Instant::now(), Duration::from_secs(15)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_broken_body_is_never_the_envs_error() {
    let (s, _envs, _dir) = server_with("[limits]\nbody_read_timeout = \"1s\"\n").await;
    s.set_weight(100.0).await;
    let head_cl = "POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100\r\n\r\n0123456789";
    let head_chunked = "POST /upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n";
    let malformed = format!("{head_chunked}5\r\nhelloXX0\r\n\r\n");
    let mid_chunk = format!("{head_chunked}10\r\n0123456789");
    // (shape, bytes, how the client ends, the answer it must get if it reads one)
    let shapes: [(&str, String, End, u16); 5] = [
        ("malformed chunk", malformed, End::Wait, 400),
        (
            "hang-up mid-upload",
            head_cl.to_owned(),
            End::HalfClose,
            400,
        ),
        ("hang-up mid-chunk", mid_chunk, End::HalfClose, 400),
        ("gone mid-upload", head_cl.to_owned(), End::HangUp, 400),
        ("stalled body", head_cl.to_owned(), End::Wait, 408),
    ];
    const ROUNDS: usize = 3;
    let c = common::client();
    let mut good = 0;
    for round in 0..ROUNDS {
        let broken = shapes.iter().map(|(name, bytes, end, _)| async move {
            (*name, upload(s.proxy, bytes.as_bytes(), *end).await)
        });
        let broken = futures_util::future::join_all(broken).await;
        for ((name, reply), (_, _, end, want)) in broken.iter().zip(&shapes) {
            let got = reply.status();
            let readable = !matches!(end, End::HangUp);
            if readable {
                assert_eq!(
                    got,
                    Some(*want),
                    "round {round}, {name}: {:?}",
                    reply.text()
                );
            }
            assert_ne!(got, Some(502), "round {round}, {name}: blamed on the env");
        }
        for i in 0..10 {
            let r = c
                .post(s.proxy_url(&format!("/good/{round}/{i}")))
                .body("a fine body")
                .send()
                .await
                .expect("good post");
            assert_eq!(r.status(), 200);
            let r = c.get(s.proxy_url("/good")).send().await.expect("good get");
            assert_eq!(r.status(), 200);
            good += 2;
        }
    }

    // Every broken body is counted as the client's, by kind.
    let want = [
        ("body_malformed", ROUNDS),
        ("body_aborted", 3 * ROUNDS),
        ("body_timeout", ROUNDS),
    ];
    let st = s
        .wait_status("the client errors counted", WAIT, |st| {
            want.iter()
                .all(|(k, n)| st["client_errors"][k].as_u64() == Some(*n as u64))
                && st["envs"]["new"]["requests"].as_u64() >= Some(good)
        })
        .await;
    assert_eq!(
        st["client_errors"]["total"].as_u64(),
        Some(5 * ROUNDS as u64)
    );
    assert_eq!(
        st["envs"]["new"]["error_rate"].as_f64(),
        Some(0.0),
        "{st:#}"
    );
    assert_eq!(
        st["envs"]["users"]["error_rate"].as_f64(),
        Some(0.0),
        "{st:#}"
    );

    let text = s.metrics().await;
    for (kind, n) in want {
        assert_eq!(
            sample(
                &text,
                &format!("cutover_client_errors_total{{kind=\"{kind}\"}}")
            ),
            Some(n as f64),
            "{text}"
        );
    }
    for scope in ["new", "old", "fallback", "users"] {
        assert_eq!(errors_of(&text, scope), 0.0, "{scope}: {text}");
    }
}

/// The file descriptors `pid` has open.
fn open_fds(pid: u32) -> BTreeSet<u32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Set the soft `RLIMIT_NOFILE` of `pid`; returns the limits it had.
fn set_nofile(pid: u32, soft: Option<u64>, restore: Option<libc::rlimit>) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both pointers are to live, properly initialised rlimit values.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "prlimit get: {}", std::io::Error::last_os_error());
    let new = match (soft, restore) {
        (Some(s), _) => libc::rlimit {
            rlim_cur: s as libc::rlim_t,
            rlim_max: old.rlim_max,
        },
        (None, Some(r)) => r,
        (None, None) => return old,
    };
    // SAFETY: as above.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit set: {}", std::io::Error::last_os_error());
    old
}

/// An upstream that answers every request `200 ok` and closes its connection, so that the
/// proxy keeps no idle connection to it: every request needs a new socket.
async fn closing_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if common::raw::next_head(&mut s, &mut buf).await.is_some() {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                }
            });
        }
    });
    addr
}

/// Wait until the descriptors of `pid` have not changed for half a second; returns them.
async fn settled_fds(pid: u32) -> BTreeSet<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = open_fds(pid);
    let mut same = 0;
    while same < 10 {
        assert!(
            Instant::now() < deadline,
            "the proxy's descriptors never settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = open_fds(pid);
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_out_of_file_handles_is_its_own_fault_not_the_envs() {
    let [old, _new, fallback] = common::sim_envs().await;
    let new = closing_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = common::server::write_config(dir.path(), old.addr, new, fallback.addr, "");
    let s = Server::start(&cfg);
    s.set_weight(100.0).await;
    let pid = s.child.id();

    // A client connection, served once (so it has surely been accepted); NEW closed the
    // upstream connection after its answer, so the next request needs a new socket.
    let mut client = TcpStream::connect(s.proxy).await.expect("connect");
    client
        .write_all(b"GET /first HTTP/1.1\r\nHost: app\r\n\r\n")
        .await
        .expect("write");
    let first = read_response(&mut client).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // No descriptor is free below the soft limit from now on: the upstream socket for this
    // client's request cannot be had (EMFILE).
    let fds = settled_fds(pid).await;
    let lowest_free = (0..).find(|n| !fds.contains(n)).expect("a free number");
    let old = set_nofile(pid, Some(u64::from(lowest_free)), None);
    let sent = client
        .write_all(b"GET /when-short HTTP/1.1\r\nHost: app\r\n\r\n")
        .await;
    let answer = match sent {
        Ok(()) => tokio::time::timeout(Duration::from_secs(10), read_response(&mut client)).await,
        Err(e) => panic!("write: {e}"),
    };
    set_nofile(pid, None, Some(old));
    let answer = answer.expect("an answer in time");
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 503"),
        "the proxy's own shortage must be a 503: {answer}"
    );
    assert!(
        head.contains("x-cutover-error: proxy-resources"),
        "named as the proxy's own: {answer}"
    );

    // With descriptors back, NEW answers as ever.
    client
        .write_all(b"GET /after HTTP/1.1\r\nHost: app\r\n\r\n")
        .await
        .expect("write");
    let after = read_response(&mut client).await;
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
    assert!(after.contains("x-cutover-served-by: new"), "{after}");

    let text = s.metrics().await;
    assert_eq!(
        sample(&text, "cutover_proxy_errors_total{kind=\"resources\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(errors_of(&text, "new"), 0.0, "counted against NEW: {text}");
    let st = s.status().await;
    assert_eq!(
        st["envs"]["new"]["error_rate"].as_f64(),
        Some(0.0),
        "{st:#}"
    );

    // And it was said, once, in the log.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut warned = false;
    while !warned && Instant::now() < deadline {
        match s.stderr_lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => warned = line.contains("WARN") && line.contains("proxy-resources"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    assert!(warned, "no warning in the log");
}

/// A client that closes before its answer, and requests refused before routing (by the guard
/// or the framing screen), are the client's: counted as `gone` and `bad_request`, never as
/// NEW's errors nor in `users`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_before_its_answer_and_a_bad_request_are_the_clients() {
    use std::sync::atomic::Ordering::SeqCst;
    let (s, envs, _dir) = server_with("").await;
    s.set_weight(100.0).await;
    envs[1].behaviour.latency_ms.store(800, SeqCst);
    for lane in 0..2 {
        // The previous request has ended at NEW (cancelled, or answered to nobody).
        wait_until("NEW with nothing in flight", WAIT, || async {
            envs[1].behaviour.inflight.load(SeqCst) == 0
        })
        .await;
        let mut c = TcpStream::connect(s.proxy).await.expect("connect");
        // The lane takes a plain GET; one with an `Expect` goes to hyper's server.
        let extra = if lane == 0 {
            ""
        } else {
            "expect: 100-continue\r\n"
        };
        c.write_all(format!("GET /slow HTTP/1.1\r\nhost: a\r\n{extra}\r\n").as_bytes())
            .await
            .expect("write");
        // Gone while its answer is on the way.
        wait_in_flight(&envs[1], 1).await;
        drop(c);
    }
    for bad in [
        &b"GET /x HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n"[..],
        b"CONNECT a:443 HTTP/1.1\r\nhost: a:443\r\n\r\n",
        // Refused by the framing screen, before any parser: counted all the same.
        b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let r = common::raw::exchange(s.proxy, bad, Duration::from_secs(3)).await;
        assert!(matches!(r.status(), Some(400 | 405)), "{}", r.text());
    }
    let st = s
        .wait_status("2 clients gone and 3 bad requests counted", WAIT, |st| {
            st["client_errors"]["gone"] == 2 && st["client_errors"]["bad_request"] == 3
        })
        .await;
    envs[1].behaviour.latency_ms.store(0, SeqCst);
    let text = s.metrics().await;
    assert_eq!(
        sample(&text, "cutover_client_errors_total{kind=\"gone\"}"),
        Some(2.0)
    );
    assert_eq!(errors_of(&text, "new"), 0.0, "{text}");
    assert_eq!(errors_of(&text, "users"), 0.0);
    assert_eq!(st["envs"]["new"]["error_rate"], 0.0);
}
