//! The registry of open Upgrade / WebSocket tunnels, each carried end to end to its env.
//!
//! Owns: [`Tunnels`] — the open tunnels, who they belong to, the signals that close them —
//! and each tunnel's task ([`Tunnels::carry`]), handed a pair of upgraded connections once the
//! env answered `101` (the handshake is the handler's). Must not touch: requests, admission or
//! the metrics of requests. Each open tunnel counts as `active` on its env and is registered
//! with its user key (none when a smoke test forced its env), so that
//! - the drain ([`super::drain`]) can find tunnels whose user now belongs to the other env and
//!   close them (WebSocket close `1012`, at a bounded rate) so they reconnect there;
//! - a shutdown can wait for tunnels (bounded by the drain timeout) and then close the rest
//!   (`1001`), early enough that the close frames are written within the drain timeout, and
//!   wait for them to be written before the process goes on to exit.
//!
//! The bytes themselves are copied by [`super::pipe`], which also closes a WebSocket politely.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::pipe::{self, Stop};
use super::wsframe::{GOING_AWAY, SERVICE_RESTART};
use crate::metrics::OwnedActiveGuard;
use crate::router::{Env, RoutingTable};

/// How long before the drain timeout ends a shutdown closes the tunnels still open (at most a
/// tenth of the timeout).
const CLOSE_RESERVE: Duration = Duration::from_millis(500);

/// Open tunnels: counts per env, who they belong to, and the signals that close them.
#[derive(Debug)]
pub struct Tunnels {
    open: [AtomicUsize; 3],
    /// Set on shutdown: when the close frames must be written by.
    close_all: watch::Sender<Option<Instant>>,
    entries: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    to_move: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    /// The user key the tunnel was routed by; `None` when an override forced its env (such
    /// a tunnel never moves).
    key: Option<Box<[u8]>>,
    env: Env,
    close: Option<oneshot::Sender<()>>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            open: Default::default(),
            close_all: watch::channel(None).0,
            entries: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            to_move: AtomicU64::new(0),
        }
    }
}

impl Tunnels {
    pub fn open(&self, env: Env) -> usize {
        self.open[env as usize].load(SeqCst)
    }

    pub fn total(&self) -> usize {
        Env::ALL.iter().map(|e| self.open(*e)).sum()
    }

    /// Open tunnels on an env their user no longer belongs to, still to be drained (as of
    /// the drain's last look, less those it closed since).
    pub fn misplaced(&self) -> u64 {
        self.to_move.load(Relaxed)
    }

    /// Wait until every tunnel has closed or `timeout` has nearly passed; then close the rest
    /// (WebSocket `1001`) so that their close frames are written before `timeout` ends, and
    /// wait until they are (and their clients have answered, [`pipe::CLOSE_GRACE`] at most).
    /// Returns how many had to be closed.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        // Time kept for the closing itself: waking every tunnel, writing, and a frame in
        // progress to end.
        let close_at = deadline - (timeout / 10).min(CLOSE_RESERVE);
        while self.total() > 0 && Instant::now() < close_at {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.total();
        if left == 0 {
            return 0;
        }
        self.close_all.send_if_modified(|d| {
            let first = d.is_none();
            d.get_or_insert(deadline);
            first
        });
        // Each tunnel ends within the grace after writing its close: its task must run until
        // then (a runtime dropped before would cut it without one).
        let ended = deadline + pipe::CLOSE_GRACE + Duration::from_millis(200);
        while self.total() > 0 && Instant::now() < ended {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        left
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // A panic elsewhere cannot leave a map half-updated in a way that matters here.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(
        self: &Arc<Self>,
        env: Env,
        key: Option<Box<[u8]>>,
    ) -> (Registration, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Relaxed);
        self.entries().insert(
            id,
            Entry {
                key,
                env,
                close: Some(tx),
            },
        );
        self.open[env as usize].fetch_add(1, SeqCst);
        (
            Registration {
                tunnels: self.clone(),
                id,
                env,
            },
            rx,
        )
    }

    /// Carry one upgraded connection pair (`ends`: the client's and the env's) until either
    /// side closes: registered under `env` with its user `key` (`None` when an override forced
    /// its env), closed with `1012` when the drain moves it and `1001` on shutdown. `active`
    /// (the env's active-connection gauge) is held for as long as the tunnel is open.
    pub(crate) fn carry(
        self: &Arc<Self>,
        env: Env,
        key: Option<Box<[u8]>>,
        ends: (OnUpgrade, OnUpgrade),
        websocket: bool,
        active: OwnedActiveGuard,
    ) {
        let (registration, drained) = self.register(env, key);
        let mut close_all = self.close_all.subscribe();
        let (client, upstream) = ends;
        tokio::spawn(async move {
            let _active = active;
            let _registration = registration;
            let stop = async move {
                let drained = async {
                    match drained.await {
                        Ok(()) => Stop {
                            code: SERVICE_RESTART,
                            grace: pipe::CLOSE_GRACE,
                        },
                        // Unregistered without a signal: never stops this way.
                        Err(_) => std::future::pending().await,
                    }
                };
                let shutdown = async {
                    // The value is copied out: the lock of the watch is not held across a wait.
                    let by = close_all.wait_for(Option::is_some).await.map(|by| *by);
                    let Ok(by) = by else {
                        return std::future::pending().await;
                    };
                    Stop {
                        code: GOING_AWAY,
                        grace: by.map_or(Duration::ZERO, |by| {
                            by.saturating_duration_since(Instant::now())
                        }),
                    }
                };
                tokio::select! {
                    s = drained => s,
                    s = shutdown => s,
                }
            };
            if let Err(e) = pipe::pipe(client, upstream, websocket, stop).await {
                tracing::debug!(env = %env, error = %e, "tunnel ended with an error");
            }
        });
    }

    /// The ids of tunnels `table` routes elsewhere; also sets [`Tunnels::misplaced`].
    pub(super) fn scan(&self, table: &RoutingTable) -> Vec<u64> {
        let ids: Vec<u64> = self
            .entries()
            .iter()
            .filter(|(_, e)| e.close.is_some() && e.misplaced(table))
            .map(|(id, _)| *id)
            .collect();
        self.to_move.store(ids.len() as u64, Relaxed);
        ids
    }

    /// Signal tunnel `id` to close if `table` still routes its user elsewhere; its env if so.
    pub(super) fn close_if_misplaced(&self, id: u64, table: &RoutingTable) -> Option<Env> {
        let close = {
            let mut entries = self.entries();
            let e = entries.get_mut(&id)?;
            if !e.misplaced(table) {
                return None;
            }
            (e.close.take()?, e.env)
        };
        close.0.send(()).ok().map(|_| close.1)
    }

    /// One fewer tunnel left to move (the drain handled one).
    pub(super) fn moved_one(&self) {
        let _ = self
            .to_move
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }
}

impl Entry {
    fn misplaced(&self, table: &RoutingTable) -> bool {
        self.key
            .as_deref()
            .is_some_and(|k| table.route(k) != self.env)
    }
}

/// Keeps a tunnel registered; unregisters on drop.
struct Registration {
    tunnels: Arc<Tunnels>,
    id: u64,
    env: Env,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.tunnels.entries().remove(&self.id);
        self.tunnels.open[self.env as usize].fetch_sub(1, SeqCst);
    }
}
