//! The adaptive admission limit (Gradient2, docs/protection.md) through the real binary: OLD
//! is a simulated env with a fixed number of slots, so past them its requests queue and its
//! latency rises with the load the proxy lets through. Under a herd the limit in force
//! (`cutover_admission_limit{env="old"}` on /metrics) must come down and hold OLD's in-flight
//! well under the configured ceiling; when OLD is given capacity again (latency back to its
//! base under the same load), the limit must climb back.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::load::Load;
use common::server::{write_config_envs, Server};
use common::sim_envs;

/// `max_inflight`: the adaptive limit's ceiling and starting point.
const CEILING: u64 = 40;
/// OLD's slots and the service time of one request.
const SLOTS: usize = 8;
const LATENCY_MS: u64 = 30;
/// Clients of the herd, each sending one request after the other.
const HERD: usize = 80;
/// How often the limit and OLD's in-flight are read.
const POLL: Duration = Duration::from_millis(100);

/// One reading: when, the limit in force, and the most requests OLD held since the last one.
#[derive(Clone, Copy)]
struct Reading {
    at: Duration,
    limit: u64,
    old_peak: usize,
}

/// The admission limit in force for OLD, from the Prometheus text.
async fn limit(s: &Server, http: &reqwest::Client) -> Option<u64> {
    let text = http
        .get(s.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("cutover_admission_limit{env=\"old\"} "))
        .and_then(|v| v.trim().parse().ok())
}

/// Read every `POLL` until `done` says so or `max` passes; `false` if it timed out.
async fn watch(
    s: &Server,
    http: &reqwest::Client,
    old: &cutover::demo::upstream::Behaviour,
    t0: Instant,
    log: &mut Vec<Reading>,
    max: Duration,
    done: impl Fn(&[Reading]) -> bool,
) -> bool {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let Some(limit) = limit(s, http).await else {
            continue;
        };
        log.push(Reading {
            at: t0.elapsed(),
            limit,
            old_peak: old.peak_inflight.swap(0, SeqCst),
        });
        if done(log) {
            return true;
        }
    }
    false
}

fn last_limit(log: &[Reading]) -> u64 {
    log.last().map_or(0, |r| r.limit)
}

/// The readings, one line each, for assertion messages.
fn show(log: &[Reading]) -> String {
    log.iter()
        .map(|r| {
            format!(
                "{:>5.1}s limit {:>2}, OLD held {:>2}",
                r.at.as_secs_f64(),
                r.limit,
                r.old_peak
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptive_limit_comes_down_when_the_env_slows_and_climbs_back_when_it_recovers() {
    let envs = sim_envs().await;
    let old = envs[0].behaviour.clone();
    old.latency_ms.store(LATENCY_MS, SeqCst);
    old.capacity.store(SLOTS, SeqCst);
    old.pool_timeout_ms.store(30_000, SeqCst);
    let dir = tempfile::tempdir().expect("tempdir");
    let admission =
        format!("max_inflight = {CEILING}\nadaptive_limit = true\nqueue_timeout = \"5s\"");
    let cfg = write_config_envs(
        dir.path(),
        [envs[0].addr, envs[1].addr, envs[2].addr],
        [&admission, "", ""],
        "[retry_budget]\nratio = 0.0\nmin_per_sec = 0\n",
    );
    let s = Server::start(&cfg);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = s.proxy_url("/adaptive");
    let t0 = Instant::now();
    let mut log = Vec::new();

    // A few clients, under OLD's slots: its latency is its base and the limit stays at the
    // ceiling (a window with fewer than half the permits in use does not move it), while the
    // proxy learns OLD's usual latency.
    let calm = Load::start(
        url.clone(),
        SLOTS / 2,
        50,
        Duration::ZERO,
        Duration::from_secs(40),
    );
    watch(
        &s,
        &http,
        &old,
        t0,
        &mut log,
        Duration::from_secs(3),
        |_| false,
    )
    .await;
    assert_eq!(
        last_limit(&log),
        CEILING,
        "calm traffic moved the limit:\n{}",
        show(&log)
    );

    // The herd: far more clients than OLD has slots. At the ceiling OLD holds five times its
    // slots and answers five times slower; the limit must come down.
    let herd = Load::start(
        url.clone(),
        HERD,
        500,
        Duration::ZERO,
        Duration::from_secs(40),
    );
    let herd_at = log.len();
    let lowered = watch(
        &s,
        &http,
        &old,
        t0,
        &mut log,
        Duration::from_secs(12),
        |l| last_limit(l) <= CEILING * 6 / 10,
    )
    .await;
    assert!(
        lowered,
        "the limit did not come down under the herd:\n{}",
        show(&log)
    );
    // Let it settle, then OLD's in-flight must stay under the limit and well under the ceiling.
    let settled_at = log.len();
    watch(
        &s,
        &http,
        &old,
        t0,
        &mut log,
        Duration::from_millis(1500),
        |_| false,
    )
    .await;
    let settled = &log[settled_at..];
    let highest_limit = log[settled_at - 1..]
        .iter()
        .map(|r| r.limit)
        .max()
        .unwrap_or(0);
    let old_peak = settled.iter().map(|r| r.old_peak).max().unwrap_or(0);
    assert!(
        old_peak as u64 <= highest_limit,
        "OLD held {old_peak} with a limit of at most {highest_limit}:\n{}",
        show(settled)
    );
    assert!(
        (old_peak as u64) <= CEILING * 3 / 4,
        "OLD still held {old_peak} of a ceiling of {CEILING}:\n{}",
        show(settled)
    );
    assert!(
        log[herd_at..].iter().all(|r| r.old_peak as u64 <= CEILING),
        "OLD went past the ceiling:\n{}",
        show(&log)
    );
    let low = last_limit(&log);

    // OLD recovers (scaled out: every request gets a slot again) under the same herd: its
    // latency is back to its base, and the limit must climb.
    old.capacity.store(10 * HERD, SeqCst);
    let recovered = watch(
        &s,
        &http,
        &old,
        t0,
        &mut log,
        Duration::from_secs(12),
        |l| last_limit(l) >= low + 10,
    )
    .await;
    assert!(
        recovered,
        "the limit did not climb back from {low} after OLD recovered:\n{}",
        show(&log)
    );

    let (sent, failed) = herd.stop().await;
    let (calm_sent, calm_failed) = calm.stop().await;
    // Clients waited in the proxy's queue rather than being turned away.
    assert!(
        sent > 1000 && calm_sent > 100,
        "too little traffic: {sent}, {calm_sent}"
    );
    assert!(
        failed + calm_failed <= (sent + calm_sent) / 100,
        "{failed} + {calm_failed} of {sent} + {calm_sent} failed"
    );
}
