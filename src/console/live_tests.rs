//! The live feeds against a small fake control API on a real 127.0.0.1 socket: status polling,
//! the event stream with reconnects, requests and their errors, and a dead server.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{send, spawn_feeds};
use crate::api::{ApiError, Event, EventAction, RunState, Status};
use crate::client::Client;
use crate::console::app::{App, Conn, Feed};
use crate::console::update::Request;

const DEADLINE: Duration = Duration::from_secs(10);

fn event(id: u64) -> Event {
    Event {
        id,
        at_ms: 1_000 * id,
        actor: "orchestrator".into(),
        action: EventAction::Advance,
        reason: format!("event {id}"),
        run_id: Some(1),
        state: RunState::Running,
        weight: 5.0,
        data: serde_json::Value::Null,
    }
}

fn status() -> Status {
    Status {
        state: RunState::Running,
        plan: Some("p".into()),
        weight: 5.0,
        last_event_id: 2,
        ..Status::default()
    }
}

/// Reads one HTTP/1.1 request (head and body); returns "METHOD PATH".
async fn read_request(sock: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let first = head.lines().next()?;
    let mut parts = first.split(' ');
    Some(format!("{} {}", parts.next()?, parts.next()?))
}

async fn respond(sock: &mut TcpStream, code: &str, body: &str) {
    let msg = format!(
        "HTTP/1.1 {code}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(msg.as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// A fake control API: status, a log of events 1 and 2, a live stream that sends event 3 and
/// then drops (so the console must reconnect), `pause` refused with 409, `weight` accepted.
async fn fake_api() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Some(req) = read_request(&mut sock).await else {
                    return;
                };
                if req.starts_with("GET /v1/status") {
                    respond(&mut sock, "200 OK", &json(&status())).await;
                } else if req.starts_with("GET /v1/events") && req.contains("follow=1") {
                    let frame = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n\
                         : keep-alive\n\nid: 3\ndata: {}\n\n",
                        serde_json::to_string(&event(3)).unwrap()
                    );
                    let _ = sock.write_all(frame.as_bytes()).await;
                    let _ = sock.shutdown().await;
                } else if let Some(q) = req.strip_prefix("GET /v1/events?since=") {
                    let since: u64 = q.parse().unwrap_or(0);
                    let evs: Vec<Event> = (1..=2).filter(|i| *i > since).map(event).collect();
                    respond(&mut sock, "200 OK", &json(&evs)).await;
                } else if req == "POST /v1/pause" {
                    let err = ApiError {
                        error: "pause is not allowed in state completed".into(),
                        hint: "start a run first".into(),
                        details: Vec::new(),
                    };
                    respond(&mut sock, "409 Conflict", &json(&err)).await;
                } else if req == "POST /v1/weight" {
                    let s = Status {
                        weight: 30.0,
                        ..status()
                    };
                    respond(&mut sock, "200 OK", &json(&s)).await;
                } else {
                    respond(&mut sock, "404 Not Found", "{}").await;
                }
            });
        }
    });
    format!("http://{addr}")
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

/// Applies feeds to `app` until `done` holds, or panics at the deadline.
async fn feed_until(app: &mut App, rx: &mut mpsc::Receiver<Feed>, done: impl Fn(&App) -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done(app) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(feed)) => app.apply(feed, 0),
            Ok(None) => panic!("feeds stopped"),
            Err(_) => panic!("deadline passed; app is {app:#?}"),
        }
    }
}

#[tokio::test]
async fn feeds_bring_status_and_events_across_stream_reconnects() {
    let url = fake_api().await;
    let client = Client::new(&url, None, "console").unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let _feeds = spawn_feeds(&client, tx);
    let mut app = App::new(url, 0);
    // Until the stream has delivered event 3 twice (it drops after each, so the console
    // reconnected) and the status was polled five times.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut event3 = 0;
    let mut polls = Vec::new();
    while event3 < 2 || polls.len() < 5 {
        let feed = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(feed)) => feed,
            other => panic!(
                "feeds stalled ({other:?}); event 3 seen {event3}x, {} polls",
                polls.len()
            ),
        };
        match &feed {
            Feed::Events(evs) => event3 += evs.iter().filter(|e| e.id == 3).count(),
            Feed::Status(_) => polls.push(tokio::time::Instant::now()),
            _ => {}
        }
        app.apply(feed, 0);
    }
    assert_eq!(app.status.as_ref().unwrap().plan.as_deref(), Some("p"));
    let ids: Vec<u64> = app.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![3, 2, 1], "the repeated event 3 shows once");
    // At least twice a second: four intervals in under two seconds.
    let span = polls[4] - polls[0];
    assert!(span < Duration::from_secs(2), "5 polls took {span:?}");
}

#[tokio::test]
async fn requests_report_success_and_api_errors() {
    let url = fake_api().await;
    let client = Client::new(&url, None, "console").unwrap();
    let (tx, mut rx) = mpsc::channel(4);
    send(client.clone(), Request::Pause, tx.clone()).await;
    match rx.recv().await {
        Some(Feed::Reply {
            request: Request::Pause,
            result: Err(f),
        }) => {
            assert_eq!(f.error, "409: pause is not allowed in state completed");
            assert_eq!(f.hint.as_deref(), Some("start a run first"));
        }
        other => panic!("{other:?}"),
    }
    send(client, Request::SetWeight(30.0), tx).await;
    match rx.recv().await {
        Some(Feed::Reply {
            request: Request::SetWeight(w),
            result: Ok(s),
        }) => {
            assert_eq!(w, 30.0);
            assert_eq!(s.weight, 30.0);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_dead_server_is_reported_not_waited_on() {
    // A port that was just free: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}");
    let client = Client::new(&url, None, "console").unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let _feeds = spawn_feeds(&client, tx);
    let mut app = App::new(url, 0);
    feed_until(&mut app, &mut rx, |a| matches!(a.conn, Conn::Lost { .. })).await;
    let Conn::Lost { error, .. } = &app.conn else {
        unreachable!()
    };
    assert!(!error.is_empty());
}
