//! The tunnel drain: long-lived connections follow the plan.
//!
//! When the routing table changes (a step, a rollback, a manual weight), tunnels whose user now
//! belongs to the other env are closed — WebSocket close `1012 Service Restart`, so clients
//! reconnect, and their new handshake is routed to their new env — at no more than
//! `drain_rate` per second, so the reconnects arrive as a trickle rather than a stampede.
//!
//! Owns: the pacing and the rescans. Must not touch: the request path (it only reads the
//! router, like any request) or the tunnels' bytes ([`super::registry`] closes them).
//!
//! It wakes on a router change (or every second), lists the misplaced tunnels, and closes them
//! one per tick of a fixed-period interval. Before each close it checks the tunnel against the
//! newest table, so a rollback mid-drain stops closing tunnels that belong where they are; a
//! newer table also restarts the scan.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use super::registry::Tunnels;
use crate::metrics::Metrics;
use crate::router::Router;

/// How often the drain looks even without a router change (tunnels that raced a change).
const RESCAN: Duration = Duration::from_secs(1);

/// Run the drain until the task is dropped or aborted. `rate()`: closes per second (> 0),
/// read again before each drain, so a config reload's `[tunnels] drain_rate` applies to the
/// next one.
pub(crate) async fn run(
    tunnels: Arc<Tunnels>,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    rate: impl Fn() -> f64,
) {
    let mut changes = router.watch();
    loop {
        changes.borrow_and_update();
        let queue = tunnels.scan(&router.snapshot());
        if queue.is_empty() {
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RESCAN) => {}
            }
            continue;
        }
        let rate = rate();
        let period = Duration::from_secs_f64(1.0 / rate.clamp(1e-3, 1e6));
        let mut pace = tokio::time::interval(period);
        pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tracing::info!(
            tunnels = queue.len(),
            rate,
            "draining tunnels to their new env"
        );
        for id in queue {
            pace.tick().await;
            if changes.has_changed().unwrap_or(true) {
                break;
            }
            if let Some(env) = tunnels.close_if_misplaced(id, &router.load()) {
                metrics.record_tunnel_drained(env, Instant::now());
            }
            tunnels.moved_one();
        }
    }
}
