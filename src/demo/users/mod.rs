//! The simulated users of the demo: a population of clients hitting the proxy over loopback.
//!
//! Owns: who the users are (sticky ids `user-N`, sent as `x-user-id`), what they do (most send
//! short requests with a think time between them; some hold a WebSocket open and chat on it),
//! how they retry ([`policy`]: naive or good clients), their shared [`UserStats`] (with the
//! [`latency`] of their requests), and the
//! [`Phase`] every user follows (online, offline for an outage, stopped).
//!
//! Must not touch: the proxy's internals or its metrics — users only see HTTP answers, like real
//! ones. Every random choice comes from a per-user RNG seeded from the demo's seed, so the same
//! seed gives the same population with the same habits.

mod http;
pub mod latency;
pub mod policy;
mod ws;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use policy::ClientKind;

/// What every user is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Online,
    /// The users' network is down: nobody sends anything and open WebSockets are dropped.
    /// When it comes back every user reconnects at once (the herd).
    Offline,
    Stopped,
}

/// How the population is made up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    pub users: usize,
    /// Share of users holding a long-lived WebSocket (the rest send short requests).
    pub websocket: f64,
    /// Share of users whose client is naive (the rest are good clients).
    pub naive: f64,
    /// Think time between two requests of a short-request user, drawn uniformly.
    pub think: (Duration, Duration),
    /// How long a WebSocket session lasts before its user reconnects (app refreshes, network
    /// changes), drawn uniformly: long-lived connections follow the weight over time.
    pub ws_session: (Duration, Duration),
    /// Requests a user sends at once when it comes back after an outage (its app resyncing).
    pub resync: usize,
    pub seed: u64,
}

/// Counters of what the users saw, shared by every user task.
#[derive(Debug, Default)]
pub struct UserStats {
    /// Attempts: every HTTP request and every WebSocket handshake, retries included.
    pub requests: AtomicU64,
    /// Attempts that failed: no answer, a 5xx/429, or a handshake that was not accepted.
    pub failures: AtomicU64,
    /// Failed attempts whose answer carried `Retry-After` (shed by admission control).
    pub shed: AtomicU64,
    /// Requests given up after the last retry.
    pub given_up: AtomicU64,
    /// WebSockets open right now.
    pub ws_open: AtomicUsize,
    /// Open WebSockets that broke (not counting ones closed for an outage).
    pub ws_dropped: AtomicU64,
    /// Each short request's time from its first attempt until it was served or given up,
    /// retries and the waits between them included (what the user waited for an answer).
    pub latency: latency::Latencies,
}

impl UserStats {
    pub fn error_rate(&self) -> f64 {
        let n = self.requests.load(SeqCst);
        if n == 0 {
            0.0
        } else {
            self.failures.load(SeqCst) as f64 / n as f64
        }
    }

    /// Record one attempt.
    fn attempt(&self, failed: bool, retry_after: bool) {
        self.requests.fetch_add(1, SeqCst);
        if failed {
            self.failures.fetch_add(1, SeqCst);
            if retry_after {
                self.shed.fetch_add(1, SeqCst);
            }
        }
    }
}

/// One user's identity and habits.
struct User {
    id: String,
    kind: ClientKind,
    rng: StdRng,
}

/// What every user task shares.
#[derive(Clone)]
struct Ctx {
    proxy: SocketAddr,
    mix: Mix,
    stats: Arc<UserStats>,
    phase: watch::Receiver<Phase>,
    http: http::HttpClient,
}

/// The running population.
pub struct Population {
    pub stats: Arc<UserStats>,
    phase: watch::Sender<Phase>,
    tasks: Vec<JoinHandle<()>>,
}

impl Population {
    /// Start `mix.users` users against the proxy at `proxy`.
    pub fn start(proxy: SocketAddr, mix: Mix) -> Population {
        let stats = Arc::new(UserStats::default());
        let (phase, phase_rx) = watch::channel(Phase::Online);
        let ctx = Ctx {
            proxy,
            mix,
            stats: stats.clone(),
            phase: phase_rx,
            http: http::client(),
        };
        let mut seeder = StdRng::seed_from_u64(mix.seed);
        let tasks = (0..mix.users)
            .map(|i| {
                let mut rng = StdRng::seed_from_u64(seeder.gen());
                let kind = if rng.gen_bool(mix.naive.clamp(0.0, 1.0)) {
                    ClientKind::Naive
                } else {
                    ClientKind::Good
                };
                let websocket = rng.gen_bool(mix.websocket.clamp(0.0, 1.0));
                let user = User {
                    id: format!("user-{i}"),
                    kind,
                    rng,
                };
                let ctx = ctx.clone();
                if websocket {
                    tokio::spawn(ws::run(user, ctx))
                } else {
                    tokio::spawn(http::run(user, ctx))
                }
            })
            .collect();
        Population {
            stats,
            phase,
            tasks,
        }
    }

    /// Take every user offline (an outage on their side) or bring them all back at once.
    pub fn set_online(&self, online: bool) {
        let _ = self.phase.send(if online {
            Phase::Online
        } else {
            Phase::Offline
        });
    }

    /// Stop every user (open WebSockets are closed) and wait for them, at most `grace`.
    pub async fn stop(self, grace: Duration) {
        let _ = self.phase.send(Phase::Stopped);
        let all = futures_util::future::join_all(self.tasks);
        let _ = tokio::time::timeout(grace, all).await;
    }
}

/// Wait until the users are online. `Some(true)` when they had been offline (so the user
/// resyncs), `Some(false)` when they were online all along, `None` when stopped.
async fn online(phase: &mut watch::Receiver<Phase>) -> Option<bool> {
    let was_offline = *phase.borrow_and_update() == Phase::Offline;
    match phase.wait_for(|p| *p != Phase::Offline).await {
        Ok(p) if *p == Phase::Online => Some(was_offline),
        _ => None,
    }
}

/// Sleep `d`, cut short by any phase change. `false` when the users were stopped.
async fn pause(d: Duration, phase: &mut watch::Receiver<Phase>) -> bool {
    if !d.is_zero() {
        if let Ok(Err(_)) = tokio::time::timeout(d, phase.changed()).await {
            return false; // the population is gone
        }
    }
    *phase.borrow() != Phase::Stopped
}
