//! The data plane on one single-threaded runtime per core.
//!
//! Owns: the worker threads and how connections are spread over them. One acceptor (on the
//! caller's runtime) takes each connection, applies `max_connections`, and hands it to the
//! worker with the fewest open connections; the connection then lives on that worker for good:
//! its requests, its upstream connections ([`crate::proxy::upstream::conns`] keeps them per
//! worker) and its tunnels. Nothing of a request crosses a thread, so the hot path has no work stealing,
//! no cross-core wake-ups and no contended pool lock — measured in docs/benchmarks.md.
//!
//! Must not touch: what a connection does (that is [`super::server`]); shared state (router,
//! metrics, admission) stays behind the same atomics and swaps as on a single runtime.

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::conn::{Open, OpenGuard};
use super::live::Live;
use super::server::{
    drain_all, next_conn, spawn_conn, spawn_sweeper, spawn_tunnel_drain, Accepted,
};
use super::supervise::Supervisor;

/// A connection on its way to a worker (deregistered from the acceptor's runtime).
struct WorkerHandoff {
    accepted: Accepted<std::net::TcpStream>,
    /// Counts the connection on its worker until it ends.
    on_worker: OpenGuard,
}

struct Worker {
    tx: mpsc::UnboundedSender<WorkerHandoff>,
    open: Arc<Open>,
    done: oneshot::Receiver<()>,
}

/// The data-plane threads, started and waiting for connections.
pub struct Workers {
    pool: Vec<Worker>,
    live: Arc<Live>,
}

impl Workers {
    /// Start `n` (at least one) worker threads for `live`.
    pub fn start(n: usize, live: Arc<Live>) -> std::io::Result<Workers> {
        let pool = (0..n.max(1))
            .map(|i| start(i, live.clone()))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Workers { pool, live })
    }

    /// Serve clients on `listener` until `shutdown` resolves; then stop accepting, drain (as
    /// [`super::server::serve_live`] does) and return once every worker has finished.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let Workers { pool, live } = self;
        let open = Arc::new(Open::default());
        let drain = spawn_tunnel_drain(&live);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = next_conn(&listener, &live, &open) => hand_off(&pool, accepted),
                _ = &mut shutdown => break,
            }
        }
        drop(listener);
        let mut done = Vec::with_capacity(pool.len());
        for w in pool {
            // Closing the channel tells the worker to drain and stop.
            drop(w.tx);
            done.push(w.done);
        }
        for d in done {
            let _ = d.await;
        }
        drain.abort();
    }
}

/// Give `accepted` to the worker with the fewest open connections.
fn hand_off(pool: &[Worker], accepted: Accepted<TcpStream>) {
    let Some(w) = pool.iter().min_by_key(|w| w.open.count()) else {
        return;
    };
    let client = accepted.client;
    let accepted = match accepted.try_map(TcpStream::into_std) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(%client, error = %e, "cannot hand a connection to a worker");
            return;
        }
    };
    let Some(on_worker) = w.open.try_claim(usize::MAX) else {
        return;
    };
    let handoff = WorkerHandoff {
        accepted,
        on_worker,
    };
    if w.tx.send(handoff).is_err() {
        tracing::warn!(%client, "a data-plane worker has stopped; connection dropped");
    }
}

/// Start worker `i`: a thread running a single-threaded runtime that serves what it is handed
/// until the channel closes, then drains.
fn start(i: usize, live: Arc<Live>) -> std::io::Result<Worker> {
    let (tx, mut rx) = mpsc::unbounded_channel::<WorkerHandoff>();
    let (done_tx, done) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("cutover-proxy-{i}"))
        .spawn(move || {
            // Shard 0 of every per-worker counter and pool belongs to the other threads.
            crate::shard::set_worker(i);
            runtime.block_on(async move {
                let supervisor = Supervisor::new();
                let sweeper = spawn_sweeper(&supervisor, &live);
                while let Some(h) = rx.recv().await {
                    let client = h.accepted.client;
                    match h.accepted.try_map(TcpStream::from_std) {
                        Ok(accepted) => spawn_conn(accepted, &live, &supervisor, h.on_worker),
                        Err(e) => {
                            tracing::warn!(%client, error = %e, "worker cannot take a connection")
                        }
                    }
                }
                sweeper.abort();
                drain_all(&supervisor, &live).await;
            });
            let _ = done_tx.send(());
        })?;
    Ok(Worker {
        tx,
        open: Arc::new(Open::default()),
        done,
    })
}
