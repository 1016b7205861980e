//! The live loop: background tasks that poll the status and follow the event stream, the
//! operator's requests sent through the client, and the draw–wait–apply cycle.
//!
//! Owns: timing (poll period, timeouts, reconnect backoff) and all calls to [`Client`]. Must not
//! touch: the screen layout or the key rules — it only moves data between the client, the
//! keyboard and [`App`]. A lost connection never blocks the loop: every call runs in a task with
//! a deadline and reports through the same channel as successes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossterm::event::Event as TermEvent;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::app::{App, Failure, Feed};
use super::term::{self, Term};
use super::update::Request;
use super::ConsoleError;
use crate::client::{Client, ClientError};

/// Status poll period while connected ("at least twice a second").
pub const POLL_EVERY: Duration = Duration::from_millis(400);
/// A status call that takes longer than this counts as a lost connection.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff bounds (doubling).
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Events of history fetched when the console starts.
pub const BACKLOG: u64 = 200;
/// Redraw at least this often, so "lost for 12s" and the sparklines move on their own.
const REDRAW_EVERY: Duration = Duration::from_secs(1);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn backoff(d: Duration) -> Duration {
    (d * 2).min(BACKOFF_MAX)
}

/// What the banner and the flash line show for a failed call.
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Connect { cause, .. } => cause.clone(),
        other => {
            let f = Failure::from(other);
            match f.hint {
                Some(h) => format!("{} ({h})", f.error),
                None => f.error,
            }
        }
    }
}

/// The background feeds; aborted when dropped.
pub struct Feeds {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Feeds {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the status poller and the event follower, both reporting into `tx`.
pub fn spawn_feeds(client: &Client, tx: mpsc::Sender<Feed>) -> Feeds {
    Feeds {
        tasks: vec![
            tokio::spawn(poll_status(client.clone(), tx.clone())),
            tokio::spawn(follow_events(client.clone(), tx)),
        ],
    }
}

async fn poll_status(client: Client, tx: mpsc::Sender<Feed>) {
    let mut delay = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let feed = match timeout(CALL_TIMEOUT, client.status()).await {
            Ok(Ok(status)) => Feed::Status(status),
            Ok(Err(e)) => Feed::StatusFailed(describe(&e)),
            Err(_) => Feed::StatusFailed(format!("no answer within {CALL_TIMEOUT:?}")),
        };
        let ok = matches!(feed, Feed::Status(_));
        if tx.send(feed).await.is_err() {
            return;
        }
        if ok {
            delay = BACKOFF_MIN;
            tokio::time::sleep_until(started + POLL_EVERY).await;
        } else {
            sleep(delay).await;
            delay = backoff(delay);
        }
    }
}

/// Follows `/v1/events` live; when the stream drops or cannot open, catches up with a plain
/// list and reconnects after a growing delay. Duplicates across reconnects are dropped by the app.
async fn follow_events(client: Client, tx: mpsc::Sender<Feed>) {
    let mut since: Option<u64> = None;
    let mut delay = BACKOFF_MIN;
    loop {
        if since.is_none() {
            if let Ok(Ok(s)) = timeout(CALL_TIMEOUT, client.status()).await {
                since = Some(s.last_event_id.saturating_sub(BACKLOG));
            }
        }
        if let Some(from) = since {
            if let Ok(Ok(events)) = timeout(CALL_TIMEOUT, client.events(from)).await {
                since = events.last().map(|e| e.id).or(since);
                if !events.is_empty() && tx.send(Feed::Events(events)).await.is_err() {
                    return;
                }
            }
            match timeout(CALL_TIMEOUT, client.follow(since.unwrap_or(from))).await {
                Ok(Ok(mut stream)) => {
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(ev) => {
                                delay = BACKOFF_MIN;
                                since = Some(since.map_or(ev.id, |s| s.max(ev.id)));
                                if tx.send(Feed::Events(vec![ev])).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::debug!("event stream broke: {e}");
                                break;
                            }
                        }
                    }
                }
                Ok(Err(e)) => tracing::debug!("cannot follow events: {e}"),
                Err(_) => tracing::debug!("event stream did not open within {CALL_TIMEOUT:?}"),
            }
        }
        if tx.is_closed() {
            return;
        }
        sleep(delay).await;
        delay = backoff(delay);
    }
}

/// Performs one operator request and reports its answer.
pub async fn send(client: Client, request: Request, tx: mpsc::Sender<Feed>) {
    let result = match (request, request.verb()) {
        (Request::SetWeight(w), _) => client.set_weight(w, None).await,
        (_, Some(verb)) => client.action(verb, None).await,
        (other, None) => {
            tracing::warn!(?other, "no control API call for this request");
            return;
        }
    };
    let result = result.map_err(|e| Failure::from(&e));
    // The app may have quit meanwhile; nothing to report to then.
    let _ = tx.send(Feed::Reply { request, result }).await;
}

/// Draws, waits for a key, a feed or the redraw tick, applies it, until the operator quits.
pub async fn run_loop(terminal: &mut Term, client: Client) -> Result<(), ConsoleError> {
    let mut app = App::new(client.base_url(), now_ms());
    let (tx, mut feed_rx) = mpsc::channel(256);
    let _feeds = spawn_feeds(&client, tx.clone());
    let mut input = term::spawn_input()?;
    let mut redraw = tokio::time::interval(REDRAW_EVERY);
    redraw.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    while !app.should_quit {
        terminal.draw(|f| f.render_widget(&app, f.area()))?;
        tokio::select! {
            ev = input.recv() => match ev {
                Some(Ok(TermEvent::Key(key))) => {
                    if let Some(request) = app.on_key(key) {
                        tokio::spawn(send(client.clone(), request, tx.clone()));
                    }
                }
                // The next draw picks the new size up; other events (mouse, focus) are ignored.
                Some(Ok(TermEvent::Resize(..))) => terminal.autoresize()?,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ConsoleError::Terminal(e)),
                None => return Err(ConsoleError::InputClosed),
            },
            Some(feed) = feed_rx.recv() => {
                app.apply(feed, now_ms());
                // Fold whatever else is queued before drawing again.
                while let Ok(feed) = feed_rx.try_recv() {
                    app.apply(feed, now_ms());
                }
            }
            _ = redraw.tick() => app.tick(now_ms()),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
