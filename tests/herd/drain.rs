//! A thousand WebSockets, a weight change, and the drain that moves the misplaced ones.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::metrics::Scope;
use cutover::router::{Env, RoutingTable, Weight};
use futures_util::StreamExt;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{raise_fd_limit, Herd, Setup, SALT};

const N: usize = 1000;
const RATE: f64 = 50.0;

/// A drained tunnel, as its client saw it.
#[derive(Debug)]
struct Moved {
    user: usize,
    at: Instant,
    code: Option<CloseCode>,
    /// `x-cutover-served-by` of the reconnect, and its first message.
    again: String,
    hello: String,
}

async fn connect(
    addr: std::net::SocketAddr,
    user: usize,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        String,
    ),
    String,
> {
    let mut req = format!("ws://{addr}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "x-user-id",
        format!("ws-{user}").parse().map_err(|_| "header")?,
    );
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| e.to_string())?;
    let env = resp
        .headers()
        .get("x-cutover-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Ok((ws, env))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_change_drains_moved_websockets_at_the_drain_rate_and_they_reconnect_to_new() {
    let fds = raise_fd_limit();
    assert!(
        fds >= 5 * N as u64,
        "{N} tunnels need ~{} sockets here; the open-files limit is {fds}",
        4 * N
    );
    let h = Herd::start(Setup {
        extra: "[tunnels]\ndrain_rate = 50\n",
        ..Default::default()
    })
    .await;
    let addr = h.addr;
    let at20 = RoutingTable::new(Weight::from_percent(20.0), SALT);
    let moving: Vec<bool> = (0..N)
        .map(|i| at20.route(format!("ws-{i}").as_bytes()) == Env::New)
        .collect();
    let to_move = moving.iter().filter(|m| **m).count();
    assert!((150..250).contains(&to_move), "~20% of users: {to_move}");

    let ready = Arc::new(AtomicUsize::new(0));
    let connecting = Arc::new(Semaphore::new(100));
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<Moved, String>>();
    let clients: Vec<_> = (0..N)
        .map(|user| {
            let (ready, connecting, tx) = (ready.clone(), connecting.clone(), tx.clone());
            tokio::spawn(async move {
                let result = async {
                    let (mut ws, env) = {
                        let _slot = connecting.acquire().await.map_err(|e| e.to_string())?;
                        connect(addr, user).await?
                    };
                    if env != "old" {
                        return Err(format!("user {user} first served by {env:?}"));
                    }
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) if t.as_str() == "hello from old" => {}
                        other => return Err(format!("no hello: {other:?}")),
                    }
                    ready.fetch_add(1, SeqCst);
                    let (at, code) = match ws.next().await {
                        Some(Ok(Message::Close(frame))) => (Instant::now(), frame.map(|f| f.code)),
                        other => return Err(format!("user {user}: not a close: {other:?}")),
                    };
                    // Finish the closing handshake, then come back.
                    while let Some(Ok(_)) = ws.next().await {}
                    let (mut ws, again) = connect(addr, user).await?;
                    let hello = match ws.next().await {
                        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                        other => format!("{other:?}"),
                    };
                    let _ = ws.close(None).await;
                    Ok(Moved {
                        user,
                        at,
                        code,
                        again,
                        hello,
                    })
                }
                .await;
                let _ = tx.send(result);
            })
        })
        .collect();
    drop(tx);

    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(SeqCst) < N {
        if let Ok(Err(e)) = rx.try_recv() {
            panic!("a client failed while connecting: {e}");
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {N} connected",
            ready.load(SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.proxy.tunnels.open(Env::Old), N);
    assert_eq!(h.proxy.tunnels.misplaced(), 0);

    let changed = Instant::now();
    h.router.set_weight(Weight::from_percent(20.0));
    let mut moved = Vec::with_capacity(to_move);
    let mut saw_pending = 0;
    while moved.len() < to_move {
        saw_pending = saw_pending.max(h.proxy.tunnels.misplaced());
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Ok(m))) => moved.push(m),
            Ok(Some(Err(e))) => panic!("{e}"),
            Ok(None) => panic!("clients gone"),
            Err(_) => panic!(
                "no tunnel moved for 5 s; {} of {to_move} so far, {} misplaced",
                moved.len(),
                h.proxy.tunnels.misplaced()
            ),
        }
    }
    let took = changed.elapsed().as_secs_f64();

    assert!(saw_pending > 0, "status showed tunnels still to move");
    for m in &moved {
        assert!(
            moving[m.user],
            "user {} did not move but was closed",
            m.user
        );
        assert_eq!(m.code, Some(CloseCode::Restart), "1012 for user {}", m.user);
        assert_eq!(
            m.again, "new",
            "user {} reconnected to {:?}",
            m.user, m.again
        );
        assert_eq!(m.hello, "hello from new");
    }
    // No more than the drain rate in any second (a little slack for client-side scheduling).
    let mut times: Vec<Instant> = moved.iter().map(|m| m.at).collect();
    times.sort();
    let mut worst = 0;
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        worst = worst.max(in_window);
    }
    // The drain spaces closes 1/RATE apart; clients see them a little later, unevenly, on two
    // busy cores, so a second seen at the client may hold a few more.
    assert!(
        worst as f64 <= RATE * 1.1 + 2.0,
        "{worst} closes within one second"
    );
    let min_span = (to_move - 1) as f64 / RATE * 0.9;
    assert!(
        took >= min_span,
        "{to_move} moved in {took:.2}s, faster than {RATE}/s"
    );

    let what = format!("{to_move} tunnels moved off OLD and none misplaced");
    crate::common::wait_until(&what, crate::common::WAIT, || async {
        h.proxy.tunnels.misplaced() == 0 && h.proxy.tunnels.open(Env::Old) == N - to_move
    })
    .await;
    assert!(rx.try_recv().is_err(), "nobody else was closed");
    assert_eq!(
        h.new.behaviour.served.load(SeqCst),
        to_move as u64,
        "each moved user reconnected to NEW once"
    );
    eprintln!("drained {to_move} of {N} tunnels in {took:.2}s, at most {worst} in a second");
    let w = h.metrics.window(Instant::now(), Duration::from_secs(120));
    assert_eq!(w.scope(Scope::Old).tunnels_drained, to_move as u64);
    assert_eq!(w.scope(Scope::Users).tunnels_drained, to_move as u64);
    for c in clients {
        c.abort();
    }
}
