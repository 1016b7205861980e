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

use bytes::Bytes;
use futures_util::future::join_all;
use http::{header, HeaderValue, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::config::{EnvConfig, UpstreamConfig};
use crate::metrics::Metrics;
use crate::proxy::upstream::connect::Link;
use crate::resolve::{lookup, Hosts};
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
    upstream: UpstreamConfig,
    link: Arc<Link>,
    host: Option<HeaderValue>,
    path: Option<http::uri::PathAndQuery>,
    /// The addresses probed last round (kept when a lookup fails).
    addrs: Vec<SocketAddr>,
}

impl Probed {
    fn new(t: &ProbeTarget, upstream: &UpstreamConfig) -> Probed {
        let slash = if t.path.starts_with('/') { "" } else { "/" };
        let path = format!("{slash}{}", t.path).parse().ok();
        if path.is_none() {
            tracing::warn!(
                env = t.env.as_str(),
                path = t.path,
                "probe path is not a valid path; it will count as failing"
            );
        }
        let host = t.config.host_header.clone().or_else(|| {
            let target = &upstream.target;
            let default = if target.tls { 443 } else { 80 };
            let text = match target.port == default {
                true => target.host.to_string(),
                false => format!("{}:{}", target.host, target.port),
            };
            HeaderValue::from_str(&text).ok()
        });
        Probed {
            env: t.env,
            upstream: upstream.clone(),
            link: Link::new(&t.config, upstream),
            host,
            path,
            addrs: upstream.addrs.to_vec(),
        }
    }
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
    let Some(path) = &p.path else { return false };
    let get = async {
        let io = p.link.connect(addr).await.map_err(|e| e.to_string())?;
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::get(path.as_str())
            .header(header::USER_AGENT, "cutover-probe")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        if let Some(host) = &p.host {
            req.headers_mut().insert(header::HOST, host.clone());
        }
        tx.send_request(req).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(timeout, get).await {
        Ok(Ok(resp)) => {
            let s = resp.status();
            s.is_success() || s.is_redirection()
        }
        Ok(Err(error)) => {
            tracing::debug!(upstream = %p.upstream.target, %addr, error, "probe failed");
            false
        }
        Err(_) => {
            tracing::debug!(upstream = %p.upstream.target, %addr, ?timeout, "probe timed out");
            false
        }
    }
}

/// Look every probed upstream up again (IP addresses stay as they are).
async fn refresh(probed: &mut [Probed], hosts_file: Option<&PathBuf>) {
    let hosts = match hosts_file.map(|f| Hosts::load(f)) {
        Some(Ok(h)) => Some(h),
        // The proxy's own refresh logs a broken hosts file; keep the last addresses.
        Some(Err(_)) => return,
        None => None,
    };
    for p in probed {
        if let Ok(addrs) = lookup(&p.upstream.target, hosts.as_ref()).await {
            p.addrs = addrs;
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
        .flat_map(|t| t.config.upstreams.iter().map(move |u| Probed::new(t, u)))
        .collect();
    let hosts_file = targets.iter().find_map(|t| t.hosts_file.clone());
    let named = probed
        .iter()
        .any(|p| matches!(p.upstream.target.host, crate::resolve::Host::Name(_)));
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        if named {
            refresh(&mut probed, hosts_file.as_ref()).await;
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
