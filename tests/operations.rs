//! Operations (issue 9): SIGTERM drains tunnels within the drain timeout; a config reload
//! (API or SIGHUP) is applied whole without dropping anything open, or rejected whole.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::server::Server;
use common::{any_port, wait_in_flight, wait_until, WAIT};
use cutover::demo::upstream::SimEnv;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn config(old: &[SocketAddr], new: SocketAddr, fallback: SocketAddr, extra: &str) -> String {
    let old: Vec<String> = old.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[store]\npath = \"store\"\n\
         [envs.old]\nupstreams = [{}]\n{extra}\n[envs.new]\nupstreams = [\"{new}\"]\n\
         [envs.fallback]\nupstreams = [\"{fallback}\"]\n[proxy]\ndrain_timeout = \"1s\"\n",
        old.join(", ")
    )
}

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Which env (by SimEnv name) answered a GET.
async fn answered_by(c: &reqwest::Client, s: &Server) -> (u16, String) {
    let r = c.get(s.proxy_url("/who")).send().await.expect("answer");
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (status, body["env"].as_str().unwrap_or("").to_owned())
}

async fn ws_echo(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
              + SinkExt<Message>
              + Unpin),
    text: &str,
) -> bool {
    if ws.send(Message::text(text)).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(3), ws.next()).await,
        Ok(Some(Ok(m))) if m == Message::text(text)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_open_tunnels_within_the_drain_timeout_and_exits_zero() {
    let old = SimEnv::start("old", any_port()).await.expect("old");
    let new = SimEnv::start("new", any_port()).await.expect("new");
    let fallback = SimEnv::start("fallback", any_port()).await.expect("fb");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start(&write(
        dir.path(),
        &config(&[old.addr], new.addr, fallback.addr, ""),
    ));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", s.proxy))
        .await
        .expect("websocket");
    let hello = ws.next().await.expect("frame").expect("message");
    assert_eq!(hello, Message::text("hello from old"));
    assert!(ws_echo(&mut ws, "before").await);
    let start = Instant::now();
    let exit = tokio::task::spawn_blocking(move || s.sigterm(Duration::from_secs(10)));
    // The tunnel stays usable during the drain, then is closed when it ends.
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => break start.elapsed(),
            Ok(Some(Ok(_))) => continue,
            Err(_) => panic!("the tunnel was still open 5 s after SIGTERM"),
        }
    };
    assert!(
        closed >= Duration::from_millis(800) && closed < Duration::from_millis(2500),
        "tunnel closed {closed:?} after SIGTERM; drain_timeout is 1s"
    );
    assert_eq!(
        exit.await.expect("join"),
        Some(0),
        "exit code after SIGTERM"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_whole_without_dropping_anything_or_is_rejected_whole() {
    let old_a = SimEnv::start("old-a", any_port()).await.expect("a");
    let old_b = SimEnv::start("old-b", any_port()).await.expect("b");
    let new = SimEnv::start("new", any_port()).await.expect("new");
    let fallback = SimEnv::start("fallback", any_port()).await.expect("fb");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        &config(&[old_a.addr], new.addr, fallback.addr, ""),
    );
    let s = Server::start(&cfg);
    let api = s.api();
    let c = reqwest::Client::new();
    assert_eq!(answered_by(&c, &s).await, (200, "old-a".into()));

    // Open things that must survive: a tunnel, a keep-alive connection, a request in flight.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", s.proxy))
        .await
        .expect("websocket");
    ws.next().await.expect("hello").expect("message");
    old_a.behaviour.latency_ms.store(1500, SeqCst);
    let slow = {
        let url = s.proxy_url("/slow");
        tokio::spawn(async move {
            let r = reqwest::get(url).await.expect("in-flight answered");
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.expect("json");
            (status, body["env"].as_str().unwrap_or("").to_owned())
        })
    };
    wait_in_flight(&old_a, 1).await;

    // A valid config: OLD is now B, with a shorter request timeout.
    write(
        dir.path(),
        &config(
            &[old_b.addr],
            new.addr,
            fallback.addr,
            "request_timeout = \"300ms\"",
        ),
    );
    let r = api.post(s.url("/v1/reload")).send().await.expect("reload");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    let changed = body["changed"].to_string();
    assert!(changed.contains("envs.old.upstreams"), "{body}");
    assert!(changed.contains("envs.old.request_timeout"), "{body}");
    assert_eq!(answered_by(&c, &s).await, (200, "old-b".into()));
    assert_eq!(
        slow.await.expect("join"),
        (200, "old-a".into()),
        "the in-flight request was cut or moved by the reload"
    );
    assert!(
        ws_echo(&mut ws, "after reload").await,
        "the tunnel was dropped"
    );
    // The env would answer after 3 s: a 504 well before then is the new 300 ms timeout.
    old_b.behaviour.latency_ms.store(3000, SeqCst);
    let start = Instant::now();
    assert_eq!(
        answered_by(&c, &s).await.0,
        504,
        "the new request timeout is not in effect"
    );
    assert!(start.elapsed() < Duration::from_millis(2500));
    old_b.behaviour.latency_ms.store(0, SeqCst);

    // Invalid: rejected whole, with file:line:col; nothing changes.
    write(
        dir.path(),
        &config(
            &[old_a.addr],
            new.addr,
            fallback.addr,
            "connect_timeout = \"soon\"",
        ),
    );
    let r = api.post(s.url("/v1/reload")).send().await.expect("reload");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    let error = body["error"].as_str().unwrap_or("");
    assert!(error.contains("cutover.toml:9:19"), "{body}");
    assert!(error.contains("envs.old.connect_timeout"), "{body}");
    assert_eq!(body["details"][0]["line"], 9);
    assert_eq!(answered_by(&c, &s).await, (200, "old-b".into()));

    // A key a running process cannot change: rejected whole, naming it.
    let moved = config(&[old_a.addr], new.addr, fallback.addr, "")
        .replace("[store]\npath = \"store\"", "[store]\npath = \"elsewhere\"");
    write(dir.path(), &moved);
    let r = api.post(s.url("/v1/reload")).send().await.expect("reload");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("store.path cannot change"),
        "{body}"
    );
    assert_eq!(answered_by(&c, &s).await, (200, "old-b".into()));

    // The route needs the token.
    let r = c.post(s.url("/v1/reload")).send().await.expect("reload");
    assert_eq!(r.status(), 401);

    // SIGHUP: the same reload, reported in the log.
    write(
        dir.path(),
        &config(&[old_a.addr], new.addr, fallback.addr, ""),
    );
    let hup = |pid: u32| {
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP")
    };
    hup(s.child.id());
    wait_until("SIGHUP to reload (old-a answering)", WAIT, || async {
        answered_by(&c, &s).await == (200, "old-a".into())
    })
    .await;
    write(dir.path(), "[listen\n");
    hup(s.child.id());
    wait_until("the rejected SIGHUP reload in the log", WAIT, || async {
        s.stderr_lines
            .try_iter()
            .any(|l| l.contains("config reload rejected") && l.contains("cutover.toml:1:"))
    })
    .await;
    assert_eq!(answered_by(&c, &s).await, (200, "old-a".into()));
    assert!(ws_echo(&mut ws, "still here").await);
}
