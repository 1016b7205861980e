//! The proxy's own limits are the proxy's fault, and users are told the truth (issue 18): the
//! open-file limit raised at start (and a warning naming `LimitNOFILE` when even the hard limit
//! is too low), accept failures logged at most once a second, open WebSockets closed with
//! `1001` on SIGTERM before the process exits, and a shed form `POST` told it was not sent
//! instead of a page that reloads itself with a `GET`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::raw;
use common::server::{bin, write_config, write_config_envs, Server};
use common::{sim_envs, wait_in_flight};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// `cutover serve --config CONFIG` under `ulimit -Sn SOFT; ulimit -Hn HARD`, started as
/// [`Server::start`] does (it waits for the addresses the binary prints).
fn start_limited(config: &Path, soft: u64, hard: u64) -> Server {
    let script =
        format!("ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" serve --config \"$1\"");
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(bin())
        .arg(config)
        .env("CUTOVER_LOG", "info")
        .env_remove("CUTOVER_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    Server::adopt(child, config)
}

/// The soft and hard "Max open files" of a running process.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// `line` without terminal colour codes (the log colours its field names).
fn plain(line: String) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Stderr lines until one contains `what` (that one included), for at most `wait`.
fn lines_until(s: &Server, what: &str, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    while let Ok(line) = s
        .stderr_lines
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        let line = plain(line);
        let done = line.contains(what);
        seen.push(line);
        if done {
            break;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_raises_its_open_file_soft_limit_to_the_hard_one() {
    let [old, new, fallback] = sim_envs().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // 1,000 connections need ~2,300 descriptors: within the hard limit of 4,096, so no warning.
    let cfg = write_config(
        dir.path(),
        old.addr,
        new.addr,
        fallback.addr,
        "[limits]\nmax_connections = 1000\n",
    );
    let s = start_limited(&cfg, 256, 4096);
    assert_eq!(
        open_file_limits(s.child.id()),
        (4096, 4096),
        "the soft limit is raised to the hard one"
    );
    let seen = lines_until(&s, "raised the open-file limit", Duration::from_secs(10));
    let raised = seen.last().expect("a line");
    assert!(
        raised.contains("raised the open-file limit")
            && raised.contains("256")
            && raised.contains("4096"),
        "{seen:#?}"
    );
    // The warning would be the very next line (the same function writes both).
    if let Ok(next) = s.stderr_lines.recv_timeout(Duration::from_millis(500)) {
        let next = plain(next);
        assert!(!next.contains("LimitNOFILE"), "no warning needed: {next}");
    }
    // And the proxy serves.
    let r = reqwest::get(s.proxy_url("/x")).await.expect("answer");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_limit_below_max_connections_is_warned_of_and_accept_failures_are_logged_once_a_second(
) {
    const CLIENTS: usize = 300;
    let mine = cutover::rlimit::raise_open_files(u64::MAX).expect("own limit");
    assert!(
        mine.soft > CLIENTS as u64 + 200,
        "the test itself needs ~{CLIENTS} sockets"
    );
    let [old, new, fallback] = sim_envs().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The default max_connections (10,000) needs ~20,000 descriptors; the hard limit is 128.
    let cfg = write_config(dir.path(), old.addr, new.addr, fallback.addr, "");
    let s = start_limited(&cfg, 64, 128);
    assert_eq!(open_file_limits(s.child.id()), (128, 128));
    let seen = lines_until(&s, "LimitNOFILE", Duration::from_secs(10));
    let warning = seen.last().expect("a line");
    assert!(
        warning.contains("WARN")
            && warning.contains("LimitNOFILE")
            && warning.contains("max_connections = 10000"),
        "a warning naming LimitNOFILE: {seen:#?}"
    );

    // More connections than descriptors: the acceptor fails until some close.
    let mut held = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        match tokio::net::TcpStream::connect(s.proxy).await {
            Ok(c) => held.push(c),
            Err(e) => panic!("connect: {e} (the accept queue is 4096 long)"),
        }
    }
    // Three seconds of failures, ~20 a second (one per 50 ms back-off).
    let watch_for = Duration::from_secs(3);
    let start = Instant::now();
    let mut failed_lines = Vec::new();
    while start.elapsed() < watch_for {
        if let Ok(line) = s.stderr_lines.recv_timeout(Duration::from_millis(100)) {
            let line = plain(line);
            if line.contains("accept failed") {
                failed_lines.push(line);
            }
        }
    }
    eprintln!(
        "{} 'accept failed' lines in {watch_for:?}: {failed_lines:#?}",
        failed_lines.len()
    );
    assert!(!failed_lines.is_empty(), "accept did fail");
    assert!(
        failed_lines.len() <= 5,
        "{} 'accept failed' lines in {watch_for:?}: {failed_lines:#?}",
        failed_lines.len()
    );
    // The lines after the first count the failures they stand for.
    let counted: u64 = failed_lines
        .iter()
        .skip(1)
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("failed="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum();
    assert!(
        failed_lines.len() < 2 || counted >= 5,
        "the later lines count the failures between them: {failed_lines:#?}"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_open_websocket_with_1001_before_the_process_exits() {
    const SOCKETS: usize = 20;
    let [old, new, fallback] = sim_envs().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), old.addr, new.addr, fallback.addr, "");
    let text = std::fs::read_to_string(&cfg).expect("config");
    let text = text.replace("drain_timeout = \"5s\"", "drain_timeout = \"2s\"");
    assert!(text.contains("drain_timeout = \"2s\""));
    std::fs::write(&cfg, text).expect("config");
    let mut s = Server::start(&cfg);
    let mut sockets = Vec::with_capacity(SOCKETS);
    for i in 0..SOCKETS {
        let mut req = format!("ws://{}/ws", s.proxy)
            .into_client_request()
            .expect("request");
        req.headers_mut()
            .insert("x-user-id", format!("u{i}").parse().expect("header"));
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket");
        let hello = ws.next().await.expect("frame").expect("message");
        assert_eq!(hello, Message::text("hello from old"));
        sockets.push(ws);
    }
    assert_eq!(old.behaviour.tunnels.load(SeqCst), SOCKETS);

    let sigterm = Instant::now();
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let got = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Close(frame)))) => {
                        Ok((frame.map(|f| f.code), Instant::now()))
                    }
                    other => Err(format!("{other:?}")),
                };
                // Finish the closing handshake (the reply is sent on the next read).
                while let Ok(Some(Ok(_))) =
                    tokio::time::timeout(Duration::from_secs(5), ws.next()).await
                {}
                got
            })
        })
        .collect();
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let code = s.sigterm(Duration::from_secs(15));
        let _ = exit_tx.send((code, Instant::now()));
    });
    let mut closes = Vec::new();
    for r in readers {
        closes.push(r.await.expect("join"));
    }
    let (code, exited) = exit_rx.await.expect("exit");
    let times: Vec<_> = closes
        .iter()
        .filter_map(|c| c.as_ref().ok().map(|(_, at)| at.duration_since(sigterm)))
        .collect();
    eprintln!(
        "closes after SIGTERM: {:?} .. {:?}; exit after {:?}",
        times.iter().min(),
        times.iter().max(),
        exited.duration_since(sigterm)
    );
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    for c in &closes {
        let (code, at) = c
            .as_ref()
            .unwrap_or_else(|e| panic!("no close frame: {e}; all: {closes:?}"));
        assert_eq!(*code, Some(CloseCode::Away), "1001 Going Away: {closes:?}");
        assert!(*at <= exited, "the close came before the process exited");
        let after = at.duration_since(sigterm);
        // Due within the 2 s drain timeout; the margin is for a loaded machine.
        assert!(
            after < Duration::from_millis(2000 + 1500),
            "closed {after:?} after SIGTERM; drain_timeout is 2s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_form_post_is_told_it_was_not_sent_and_a_shed_get_still_refreshes() {
    let [old, new, fallback] = sim_envs().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config_envs(
        dir.path(),
        [old.addr, new.addr, fallback.addr],
        ["max_inflight = 1\nqueue_timeout = \"0s\"", "", ""],
        // No retry on FALLBACK: the shed answer itself reaches the client.
        "[retry_budget]\nratio = 0.0\nmin_per_sec = 0\n",
    );
    let s = Server::start(&cfg);
    old.behaviour.latency_ms.store(4000, SeqCst);
    let holder = tokio::spawn(reqwest::get(s.proxy_url("/slow")));
    wait_in_flight(&old, 1).await;
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let form = "name=Ada&comment=hello";
    let post = format!(
        "POST /comments HTTP/1.1\r\nHost: shop.test\r\nAccept: {browser}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
    );
    let a = raw::exchange(s.proxy, post.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(a.status(), Some(503), "{}", a.text());
    assert_eq!(a.header("x-cutover-error").as_deref(), Some("shed"));
    let retry: u64 = a
        .header("retry-after")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("a numeric Retry-After: {}", a.text()));
    assert!(
        a.header("refresh").is_none(),
        "no Refresh header: {}",
        a.text()
    );
    assert!(a
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    let body = a.body();
    assert!(
        !body.to_ascii_lowercase().contains("http-equiv"),
        "no meta refresh: {body}"
    );
    assert!(!body.contains("<form"), "nothing that resubmits: {body}");
    assert!(body.contains("Your form was not sent"), "{body}");
    assert!(body.contains(&format!("about {retry} seconds")), "{body}");
    assert!(!body.contains("has been lost"), "{body}");
    assert_eq!(
        old.behaviour.served.load(SeqCst),
        0,
        "the form never reached OLD"
    );

    let get = format!(
        "GET /comments HTTP/1.1\r\nHost: shop.test\r\nAccept: {browser}\r\nConnection: close\r\n\r\n"
    );
    let a = raw::exchange(s.proxy, get.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(a.status(), Some(503), "{}", a.text());
    let retry = a.header("retry-after").expect("Retry-After");
    assert_eq!(a.header("refresh").as_deref(), Some(retry.as_str()));
    let meta = format!("<meta http-equiv=\"refresh\" content=\"{retry}\">");
    assert!(a.body().contains(&meta), "{}", a.body());

    let held = holder.await.expect("join").expect("holder answered");
    assert_eq!(
        held.status(),
        200,
        "the request in flight was not disturbed"
    );
}
