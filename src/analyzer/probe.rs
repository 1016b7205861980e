//! Synthetic probes: GET a path on every upstream of every env, on a fixed interval.
//!
//! Owns: the probe task and its requests. Must not touch: the router or the proxy's pools —
//! probes go straight to each upstream, so a broken env shows up even while no user is on it
//! (before a step moves anyone, and on FALLBACK before it is needed). Results go only to
//! [`Metrics::record_probe`]; gates read them as `<scope>.probe_success`.
//!
//! One round probes all upstreams concurrently, each bounded by `timeout`, so one dead upstream
//! cannot delay the others' results; rounds that overrun the interval are delayed, not stacked.
//! Each probe is a new connection made as the proxy makes them
//! ([`crate::proxy::upstream::connect`]: TLS with the env's trust and SNI for `https://`), and
//! carries the env's `host_header` (else the upstream's own host). A host name is looked up
//! every round, so every current address is probed; a failed lookup probes the last addresses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::watch;

use crate::config::EnvConfig;
use crate::metrics::Metrics;
use crate::proxy::upstream::direct::Direct;
use crate::router::Env;

/// What to probe for one env.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTarget {
    pub env: Env,
    /// The env's settings: its upstreams, TLS, `host_header` and connect timeout.
    pub config: EnvConfig,
    /// Path (and query) to GET, e.g. `/healthz`.
    pub path: String,
    /// `[resolve] hosts_file`, read again every round.
    pub hosts_file: Option<PathBuf>,
}

/// One configured upstream as the probes see it.
struct Probed {
    env: Env,
    direct: Direct,
    /// The path probed (with its leading `/`).
    path: String,
    /// The addresses probed last round (kept when a lookup fails).
    addrs: Vec<SocketAddr>,
}

/// Resolves when `shutdown` says true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// One GET on a new connection; 2xx and 3xx answers within `timeout` are a success.
async fn probe_once(p: &Probed, addr: SocketAddr, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, p.direct.get(addr, &p.path)).await {
        Ok(Ok(resp)) => {
            let s = resp.status();
            s.is_success() || s.is_redirection()
        }
        Ok(Err(error)) => {
            tracing::debug!(upstream = %p.direct.target(), %addr, error, "probe failed");
            false
        }
        Err(_) => {
            tracing::debug!(upstream = %p.direct.target(), %addr, ?timeout, "probe timed out");
            false
        }
    }
}

/// Probes every target every `interval` until `shutdown` turns true (or its sender drops).
pub async fn run_probes(
    targets: Vec<ProbeTarget>,
    interval: Duration,
    timeout: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut probed: Vec<Probed> = targets
        .iter()
        .flat_map(|t| {
            let slash = if t.path.starts_with('/') { "" } else { "/" };
            let path = format!("{slash}{}", t.path);
            Direct::of(&t.config, t.hosts_file.as_deref())
                .into_iter()
                .map(move |direct| Probed {
                    env: t.env,
                    addrs: direct.first_addrs().to_vec(),
                    direct,
                    path: path.clone(),
                })
        })
        .collect();
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        for p in &mut probed {
            if let Some(addrs) = p.direct.lookup().await {
                p.addrs = addrs;
            }
        }
        let metrics = &metrics;
        let round = join_all(probed.iter().flat_map(|p| {
            p.addrs.iter().map(move |addr| async move {
                let ok = probe_once(p, *addr, timeout).await;
                metrics.record_probe(p.env, ok, Instant::now());
            })
        }));
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = round => {}
        }
    }
}
