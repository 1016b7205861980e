//! Issue 19 §5 through the real binary: a config reload is a decision too. SIGHUP and
//! `POST /v1/reload` each append an event naming who asked and what changed (admission,
//! `[tunnels]` and `[waiting_room]` keys included); a rejected reload is an event as well.

mod common;

use std::time::Duration;

use common::server::{write_config_envs, Server};
use common::{wait_until, WAIT};
use serde_json::Value;

async fn reload_events(s: &Server) -> Vec<Value> {
    s.events()
        .await
        .into_iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("reload"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_post_reload_are_events_with_who_and_what_changed() {
    let envs = common::sim_envs().await;
    let addrs = [envs[0].addr, envs[1].addr, envs[2].addr];
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config_envs(dir.path(), addrs, ["", "", ""], "");
    let s = Server::start(&cfg);
    assert!(reload_events(&s).await.is_empty());

    // SIGHUP after adding admission control to NEW and a tunnel drain rate.
    write_config_envs(
        dir.path(),
        addrs,
        ["", "max_inflight = 8\nqueue_timeout = \"20ms\"", ""],
        "[tunnels]\ndrain_rate = 5\n[waiting_room]\nretry_after = 7\n",
    );
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status();
    wait_until("a reload event after SIGHUP", WAIT, || async {
        !reload_events(&s).await.is_empty()
    })
    .await;
    let e = &reload_events(&s).await[0];
    assert_eq!(e["action"], "reload", "{e:#}");
    assert_eq!(e["actor"], "SIGHUP", "{e:#}");
    let changed: Vec<&str> = e["data"]["changed"]
        .as_array()
        .expect("changed")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        changed,
        [
            "envs.new.max_inflight",
            "envs.new.queue_timeout",
            "tunnels.drain_rate",
            "waiting_room.retry_after"
        ],
        "{e:#}"
    );
    assert!(
        e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("reloaded by SIGHUP: changed envs.new.max_inflight")),
        "{e:#}"
    );

    // POST /v1/reload with nothing changed, then with a broken file: both logged, by the actor.
    let r = s
        .api()
        .post(s.url("/v1/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    std::fs::write(&cfg, "[listen]\naddr = 5\n").expect("write");
    let r = s
        .api()
        .post(s.url("/v1/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 400);
    let events = reload_events(&s).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(events[1]["actor"], "admin-token (note: test)");
    assert!(
        events[1]["reason"]
            .as_str()
            .is_some_and(|r| r.ends_with("reloaded by admin-token (note: test): nothing changed")),
        "{:#}",
        events[1]
    );
    assert_eq!(events[2]["action"], "reload_rejected");
    assert!(
        events[2]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("nothing changed")),
        "{:#}",
        events[2]
    );
    // The run's state and weight did not move.
    assert_eq!(events[2]["state"], "idle");
    assert_eq!(events[2]["weight"], 0.0);
}

/// A removed `max_inflight` no longer leaves `cutover_admission_limit` exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_limit_is_no_longer_exported_after_a_reload() {
    let envs = common::sim_envs().await;
    let addrs = [envs[0].addr, envs[1].addr, envs[2].addr];
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config_envs(dir.path(), addrs, ["", "max_inflight = 8", ""], "");
    let s = Server::start(&cfg);
    let limit = "cutover_admission_limit{env=\"new\"} 8";
    assert!(s.metrics().await.contains(limit));
    write_config_envs(dir.path(), addrs, ["", "", ""], "");
    let r = s
        .api()
        .post(s.url("/v1/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    let text = s.metrics().await;
    assert!(
        !text.contains("cutover_admission_limit{env=\"new\"}"),
        "{text}"
    );
    let e = reload_events(&s).await;
    assert_eq!(
        e[0]["data"]["changed"][0], "envs.new.max_inflight",
        "{e:#?}"
    );
}

/// `[tunnels] drain_rate` changed by a reload applies to the next drain (it was captured when
/// the drain task started): at 2 per second, six misplaced tunnels take over two seconds to
/// close, where the start-up rate (50/s) closes them in a tenth of that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_drain_rate_paces_the_next_drain() {
    use futures_util::StreamExt;
    let envs = common::sim_envs().await;
    let addrs = [envs[0].addr, envs[1].addr, envs[2].addr];
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config_envs(
        dir.path(),
        addrs,
        ["", "", ""],
        "[tunnels]\ndrain_rate = 50\n",
    );
    let s = Server::start(&cfg);
    write_config_envs(
        dir.path(),
        addrs,
        ["", "", ""],
        "[tunnels]\ndrain_rate = 2\n",
    );
    let r = s
        .api()
        .post(s.url("/v1/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    // Six tunnels on OLD (weight 0), each a different user.
    let mut socks = Vec::new();
    for i in 0..6 {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://{}/ws", s.proxy),
            )
            .expect("request");
        req.headers_mut().insert(
            "x-user-id",
            format!("tunnel-user-{i}").parse().expect("header"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket");
        ws.next().await.expect("hello").expect("message");
        socks.push(ws);
    }
    let started = std::time::Instant::now();
    s.set_weight(100.0).await;
    // Each tunnel is closed by the drain (1012); wait for all six.
    let closes = socks.into_iter().map(|mut ws| async move {
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            if m.is_close() {
                break;
            }
        }
    });
    futures_util::future::join_all(closes).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2000),
        "six tunnels drained in {took:?}: the reloaded rate (2/s) was not applied"
    );
}
