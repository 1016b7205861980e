//! Synthetic probes: GET a path on every upstream of every env, on a fixed interval.
//!
//! Owns: the probe task and its HTTP client. Must not touch: the router or the proxy's pools —
//! probes go straight to each upstream, so a broken env shows up even while no user is on it
//! (before a step moves anyone, and on FALLBACK before it is needed). Results go only to
//! [`Metrics::record_probe`]; gates read them as `<scope>.probe_success`.
//!
//! One round probes all upstreams concurrently, each bounded by `timeout`, so one dead upstream
//! cannot delay the others' results; rounds that overrun the interval are delayed, not stacked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use http::{header, Method, Request, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::router::Env;

/// What to probe for one env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub env: Env,
    /// `host:port` of each upstream.
    pub addrs: Vec<String>,
    /// Path (and query) to GET, e.g. `/healthz`.
    pub path: String,
    /// Probe in HTTP/2 with prior knowledge (the env's `protocol = "h2"`: it may speak
    /// nothing else).
    pub h2: bool,
}

type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

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

/// The URI of one probe; `None` (logged once) when `addr` and `path` do not make one.
fn probe_uri(env: Env, addr: &str, path: &str) -> Option<Uri> {
    let slash = if path.starts_with('/') { "" } else { "/" };
    match format!("http://{addr}{slash}{path}").parse::<Uri>() {
        Ok(uri) => Some(uri),
        Err(e) => {
            tracing::warn!(env = env.as_str(), addr, path, error = %e, "probe target is not a valid URI; it will count as failing");
            None
        }
    }
}

/// One GET; 2xx and 3xx answers within `timeout` are a success.
async fn probe_once(client: &ProbeClient, uri: Option<&Uri>, timeout: Duration) -> bool {
    let Some(uri) = uri else { return false };
    let req = match Request::builder()
        .method(Method::GET)
        .uri(uri.clone())
        .header(header::USER_AGENT, "cutover-probe")
        .body(Empty::new())
    {
        Ok(r) => r,
        Err(_) => return false,
    };
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(resp)) => {
            let s = resp.status();
            s.is_success() || s.is_redirection()
        }
        Ok(Err(e)) => {
            tracing::debug!(%uri, error = %e, "probe failed");
            false
        }
        Err(_) => {
            tracing::debug!(%uri, ?timeout, "probe timed out");
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
    let http1: ProbeClient = Client::builder(TokioExecutor::new()).build_http();
    let h2: ProbeClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let probes: Vec<(Env, Option<Uri>, &ProbeClient)> = targets
        .iter()
        .flat_map(|t| {
            let client = if t.h2 { &h2 } else { &http1 };
            t.addrs
                .iter()
                .map(move |a| (t.env, probe_uri(t.env, a, &t.path), client))
        })
        .collect();
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        let round = join_all(probes.iter().map(|(env, uri, client)| {
            let metrics = &metrics;
            async move {
                let ok = probe_once(client, uri.as_ref(), timeout).await;
                metrics.record_probe(*env, ok, Instant::now());
            }
        }));
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = round => {}
        }
    }
}
