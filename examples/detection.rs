//! Detection-speed benchmark (issue 4), driven by `bench/detection.sh`.
//!
//! For each scenario and run: start simulated old/new/fallback envs in this process, start the
//! real `cutover serve` binary in front of them, drive steady load with a rotating user key,
//! start a plan holding at one step, wait until every gate has judged the window healthy, then
//! inject one fault through the envs' [`Behaviour`] knobs and poll `GET /v1/status` until the
//! run leaves `running`. Time-to-decision is measured from the knob being set to the first
//! status answer showing `rolling_back`, `rolled_back` or `paused`.
//!
//! ```sh
//! cargo run --release --example detection -- --bin target/release/cutover --runs 5
//! ```
//!
//! Output: one line per run on stderr, and a Markdown table of min / median / max per scenario
//! on stdout (between the lines `--- table ---` and `--- end ---`).
//!
//! [`Behaviour`]: cutover::demo::upstream::Behaviour

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cutover::api::Status;
use cutover::client::Client;
use cutover::demo::upstream::SimEnv;
use cutover::vocab::{GateVerdict, RunState};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Load in requests per second (all users together), and the share of users on NEW.
const RPS: u64 = 300;
const WEIGHT: u32 = 20;
/// Every env answers after this much; the slow scenario makes NEW three times slower.
const BASE_LATENCY_MS: u64 = 10;
const TOKEN: &str = "detection-bench";

#[derive(Clone, Copy, Debug)]
enum Scenario {
    Errors,
    Refused,
    Slow,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Errors => "NEW answers 500 (rollback gate)",
            Scenario::Refused => "NEW refuses, users spill to FALLBACK (fallback.share gate)",
            Scenario::Slow => "NEW 3x slower than OLD (ratio gate)",
        }
    }

    fn inject(self, envs: &Envs) {
        match self {
            Scenario::Errors => envs.new.behaviour.error_permille.store(1000, SeqCst),
            // The port closes and open keep-alive connections are dropped: the proxy sees
            // resets, then refused connects, and replays the GETs on FALLBACK.
            Scenario::Refused => envs.new.stop(),
            Scenario::Slow => envs
                .new
                .behaviour
                .latency_ms
                .store(3 * BASE_LATENCY_MS, SeqCst),
        }
    }
}

const PLAN: &str = r#"
name = "detection-bench"

[analysis]
interval = "1s"
window = "5s"
min_requests = 20

[[steps]]
weight = WEIGHT
hold = "1h"

[[gates]]
name = "new errors"
metric = "new.error_rate"
max = 0.05
after = 2
on_fail = "rollback"

[[gates]]
name = "fallback taking traffic"
metric = "fallback.share"
max = 0.05
after = 2
on_fail = "pause"

[[gates]]
name = "new slower than old"
metric = "new.p99_ms"
max_ratio_of = "old.p99_ms"
ratio = 2.0
after = 2
on_fail = "pause"

[rollback]
ramp = "5s"
"#;

struct Envs {
    old: SimEnv,
    new: SimEnv,
    fallback: SimEnv,
}

impl Envs {
    async fn start() -> Result<Envs> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let envs = Envs {
            old: SimEnv::start("old", any).await?,
            new: SimEnv::start("new", any).await?,
            fallback: SimEnv::start("fallback", any).await?,
        };
        for e in [&envs.old, &envs.new, &envs.fallback] {
            e.behaviour.latency_ms.store(BASE_LATENCY_MS, SeqCst);
        }
        Ok(envs)
    }

    fn stop(&self) {
        self.old.stop();
        self.new.stop();
        self.fallback.stop();
    }
}

/// The `cutover serve` child and its addresses.
struct Server {
    child: Child,
    proxy: SocketAddr,
    admin: String,
}

async fn start_server(bin: &Path, dir: &Path, envs: &Envs) -> Result<Server> {
    let config = dir.join("cutover.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[store]
path = "store"
[envs.old]
upstreams = ["{}"]
[envs.new]
upstreams = ["{}"]
[envs.fallback]
upstreams = ["{}"]
# Every refused request may spill to FALLBACK (the incident: a silent spill), so the
# fallback.share gate, not the user-visible error rate, is what has to notice.
[retry_budget]
ratio = 0.5
"#,
            envs.old.addr, envs.new.addr, envs.fallback.addr
        ),
    )?;
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("CUTOVER_TOKEN", TOKEN)
        .env("CUTOVER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut proxy, mut admin) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.is_none() || admin.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.next_line())
            .await
            .map_err(|_| anyhow!("cutover did not report its addresses in 20 s"))??
            .ok_or_else(|| anyhow!("cutover exited during start"))?;
        if let Some(a) = line.strip_prefix("cutover: proxy listening on ") {
            proxy = Some(a.trim().parse()?);
        }
        if let Some(a) = line.strip_prefix("cutover: admin API on ") {
            admin = Some(a.trim().to_owned());
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Server {
        child,
        proxy: proxy.ok_or_else(|| anyhow!("no proxy address"))?,
        admin: admin.ok_or_else(|| anyhow!("no admin address"))?,
    })
}

/// Open-loop-ish load: `workers` tasks, each on its own tick, a new user key per request.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
}

impl Load {
    fn start(proxy: SocketAddr) -> Result<Load> {
        let workers = 32u64;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let gap = Duration::from_micros(1_000_000 * workers / RPS);
        for w in 0..workers {
            let (client, stop, sent) = (client.clone(), stop.clone(), sent.clone());
            let url = format!("http://{proxy}/api/items");
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(gap);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = w;
                while !stop.load(SeqCst) {
                    tick.tick().await;
                    n += workers;
                    let _ = client
                        .get(&url)
                        .header("x-user-id", format!("user-{}", n % 10_000))
                        .send()
                        .await
                        .map(|r| r.bytes());
                    sent.fetch_add(1, SeqCst);
                }
            });
        }
        Ok(Load { stop, sent })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
    }
}

/// One measured run.
struct Outcome {
    /// Fault to the first status showing the decision.
    detect: Duration,
    /// Fault to the first status showing a gate failing (the status is republished every 250 ms,
    /// so this lags the evaluation by up to that).
    first_failing: Option<Duration>,
    state: RunState,
    reason: String,
}

fn decided(s: RunState) -> bool {
    matches!(
        s,
        RunState::RollingBack | RunState::RolledBack | RunState::Paused
    )
}

async fn one_run(bin: &Path, scenario: Scenario) -> Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let envs = Envs::start().await?;
    let mut server = start_server(bin, dir.path(), &envs).await?;
    let api = Client::new(&server.admin, Some(TOKEN.to_owned()), "bench")?;
    let load = Load::start(server.proxy)?;
    let plan = PLAN.replace("WEIGHT", &WEIGHT.to_string());
    let started = Instant::now();
    api.start(plan).await?;

    // Healthy baseline: a full window at the step's weight, every gate judging and passing.
    let deadline = started + Duration::from_secs(30);
    loop {
        let s = api.status().await?;
        if s.state != RunState::Running {
            bail!(
                "run left running before the fault: {:?} {:?}",
                s.state,
                s.reason
            );
        }
        let healthy = !s.gates.is_empty() && s.gates.iter().all(|g| g.verdict == GateVerdict::Ok);
        if healthy && started.elapsed() > Duration::from_secs(6) {
            break;
        }
        if Instant::now() > deadline {
            bail!("gates not healthy after 30 s: {}", gate_text(&s));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A random phase against the analyzer's tick, so the runs sample the whole interval.
    tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 1000)).await;
    scenario.inject(&envs);
    let t0 = Instant::now();
    let mut first_failing = None;
    let outcome = loop {
        let s = api.status().await?;
        let now = t0.elapsed();
        if first_failing.is_none() && s.gates.iter().any(|g| g.failing_for > 0) {
            first_failing = Some(now);
        }
        if decided(s.state) {
            break Outcome {
                detect: now,
                first_failing,
                state: s.state,
                reason: s.reason.unwrap_or_default(),
            };
        }
        if now > Duration::from_secs(30) {
            bail!("no decision 30 s after the fault: {}", gate_text(&s));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let sent = load.sent.load(SeqCst);
    drop(load);
    let _ = server.child.start_kill();
    let _ = server.child.wait().await;
    envs.stop();
    eprintln!(
        "  {:>6.0} ms to {} (first failing gate after {} ms; {} requests sent): {}",
        outcome.detect.as_secs_f64() * 1000.0,
        outcome.state,
        outcome
            .first_failing
            .map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0)),
        sent,
        outcome.reason
    );
    Ok(outcome)
}

fn gate_text(s: &Status) -> String {
    s.gates
        .iter()
        .map(|g| format!("{}={} ({:?})", g.name, g.verdict, g.value))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (v[0], median, v[v.len() - 1])
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut bin = PathBuf::from("target/release/cutover");
    let mut runs = 5usize;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bin" => bin = args.next().ok_or_else(|| anyhow!("--bin PATH"))?.into(),
            "--runs" => runs = args.next().ok_or_else(|| anyhow!("--runs N"))?.parse()?,
            "--only" => only = args.next(),
            _ => bail!("usage: detection [--bin PATH] [--runs N] [--only errors|refused|slow]"),
        }
    }
    let mut rows = Vec::new();
    for (key, scenario) in [
        ("errors", Scenario::Errors),
        ("refused", Scenario::Refused),
        ("slow", Scenario::Slow),
    ] {
        if only.as_deref().is_some_and(|o| o != key) {
            continue;
        }
        eprintln!("{}:", scenario.name());
        let mut outcomes = Vec::new();
        for _ in 0..runs {
            outcomes.push(one_run(&bin, scenario).await?);
        }
        let (lo, med, hi) = stats(outcomes.iter().map(|o| ms(o.detect)).collect());
        let (flo, fmed, fhi) = stats(
            outcomes
                .iter()
                .map(|o| o.first_failing.map_or(f64::NAN, ms))
                .collect(),
        );
        let mut states: Vec<String> = outcomes.iter().map(|o| o.state.to_string()).collect();
        states.dedup();
        let reason = outcomes
            .first()
            .map(|o| o.reason.clone())
            .unwrap_or_default();
        rows.push(format!(
            "| {} | {runs} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} / {:.2} | {} | {} |",
            scenario.name(),
            lo / 1000.0,
            med / 1000.0,
            hi / 1000.0,
            flo / 1000.0,
            fmed / 1000.0,
            fhi / 1000.0,
            states.join(", "),
            reason.replace('|', "\\|"),
        ));
    }
    println!("--- table ---");
    println!(
        "| scenario | runs | min s | median s | max s | first failing gate s (min / median / max) | decision | reason (first run) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | --- | --- | --- |");
    for r in rows {
        println!("{r}");
    }
    println!("--- end ---");
    Ok(())
}
