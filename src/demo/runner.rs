//! The demo run: build the world, start the real server on it, let the users in, start the
//! plan, follow it (headless lines or the console) while the director plays the scenario, then
//! take it all down and summarise.
//!
//! Must not touch: the server's internals. The server is `crate::serve::run` with a generated
//! config; everything after that goes through its sockets and the control API client.

use std::future::Future;
use std::io::Write;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use tokio::sync::oneshot;

use super::director::{Cue, Director, Ending};
use super::headless::{event_line, note_line, progress_line};
use super::scenario::Fault;
use super::setup::Protection;
use super::summary::{self, Facts, Summary};
use super::users::Population;
use super::world::{Profile, World};
use super::{setup, DemoError, DemoOptions};
use crate::api::{EventAction, Status};
use crate::client::Client;
use crate::serve::Bound;

/// How often the runner looks at the status.
const POLL: Duration = Duration::from_millis(250);
/// Open files the demo wants: one process holds every simulated user's sockets, the proxy's
/// both sides and the simulated servers' — a herd of 200 users is ~2000 open files.
const WANTED_FILES: u64 = 8192;
/// How long the status may be unreachable before the demo gives up.
const API_PATIENCE: Duration = Duration::from_secs(5);
/// Users arrive and settle (connections opened, WebSockets up) before the plan starts, so the
/// first windows the gates judge hold steady traffic rather than the arrival.
const WARM_UP: Duration = Duration::from_millis(1500);

/// Run the demo; `interrupt` resolving stops it early (Ctrl-C). Headless lines go to `out`.
pub async fn run_with(
    opts: DemoOptions,
    interrupt: impl Future<Output = ()>,
    out: &mut (dyn Write + Send),
) -> Result<Summary, DemoError> {
    opts.validate()?;
    let files = crate::rlimit::raise_open_files(WANTED_FILES).map(|f| f.soft);
    if files.is_some_and(|f| f < 4 * opts.users as u64 + 512) {
        tracing::warn!("only {files:?} open files allowed: a herd may run out of sockets");
    }
    let scenario = opts.scenario;
    let [old, new, fallback] = scenario.profiles(opts.users);
    let world = World::start(old, new, fallback)
        .await
        .map_err(DemoError::World)?;
    let dir = tempfile::tempdir().map_err(DemoError::TempDir)?;
    let token: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    std::fs::write(dir.path().join("admin.token"), &token).map_err(DemoError::TempDir)?;
    let (cfg, protection) =
        setup::config(&world, dir.path(), scenario, opts.protection).map_err(DemoError::Config)?;

    let (ready_tx, ready_rx) = oneshot::channel::<Bound>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve::run(
        cfg,
        async {
            let _ = stop_rx.await;
        },
        move |bound, _| {
            let _ = ready_tx.send(bound);
        },
    ));
    let Ok(bound) = ready_rx.await else {
        return Err(match server.await {
            Ok(Err(e)) => DemoError::Serve(e),
            _ => DemoError::ServerGone,
        });
    };
    let admin = format!("http://{}", bound.admin);
    // The demo itself starts the run; the console (if any) acts as `console`.
    let client = Client::new(&admin, Some(token.clone()), "demo").map_err(DemoError::Client)?;
    let console_client = Client::new(&admin, Some(token), "console").map_err(DemoError::Client)?;
    if opts.headless {
        let _ = header(out, &opts, &world, &bound, protection);
    }

    let population = Population::start(bound.proxy, scenario.mix(opts.users, opts.seed));
    if opts.headless {
        let words = format!("{} users arriving; the plan starts in a moment", opts.users);
        let _ = writeln!(out, "{}", note_line(-WARM_UP.as_secs_f64(), &words));
    }
    tokio::time::sleep(WARM_UP).await;
    let started_at_ms = now_ms();
    let t0 = Instant::now();
    let first = client
        .start(setup::plan_for(scenario, opts.speed))
        .await
        .map_err(DemoError::Client)?;
    let step_weights = first.step_weights.clone();

    let mut director = Director::new(scenario, opts.speed, opts.time_limit);
    let followed = follow(
        &opts,
        (&client, &console_client),
        &world,
        &population,
        &mut director,
        t0,
        interrupt,
        out,
    )
    .await;

    let stats = population.stats.clone();
    population.stop(Duration::from_secs(3)).await;
    let last = client.status().await.ok();
    let events = client.events(0).await.unwrap_or_default();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    world.stop();
    let (ending, last_seen) = followed?;
    let last = last.unwrap_or(last_seen);

    let summary = summary::build(
        Facts {
            scenario,
            final_state: last.state,
            final_weight: last.weight,
            step_weights,
            duration_s: t0.elapsed().as_secs_f64(),
            ended_by: ending,
            speed: opts.speed,
            users: opts.users,
            seed: opts.seed,
            user_requests: stats.requests.load(SeqCst),
            user_failures: stats.failures.load(SeqCst),
            user_shed: stats.shed.load(SeqCst),
            ws_dropped: stats.ws_dropped.load(SeqCst),
            user_p50_ms: stats.latency.quantile_ms(0.5),
            user_p99_ms: stats.latency.quantile_ms(0.99),
            fault: director
                .fault_at
                .map(|t| (scenario.fault_words().to_owned(), t)),
            envs: world.report(),
            protection,
            started_at_ms,
        },
        &events,
    );
    Ok(summary)
}

/// Follow the run until the director, the operator or `interrupt` ends it. Returns how it
/// ended and the last status seen.
#[allow(clippy::too_many_arguments)]
async fn follow(
    opts: &DemoOptions,
    (client, console_client): (&Client, &Client),
    world: &World,
    population: &Population,
    director: &mut Director,
    t0: Instant,
    interrupt: impl Future<Output = ()>,
    out: &mut (dyn Write + Send),
) -> Result<(Ending, Status), DemoError> {
    tokio::pin!(interrupt);
    let console = async {
        if opts.headless {
            std::future::pending::<()>().await;
        }
        if let Err(e) = crate::console::run(console_client.clone()).await {
            tracing::error!("console: {e}");
        }
    };
    tokio::pin!(console);
    let mut last = Status::default();
    let mut last_ok = Instant::now();
    let mut last_line: Option<Instant> = None;
    let mut seen_event = 0;
    loop {
        tokio::select! {
            _ = &mut interrupt => return Ok((Ending::Interrupted, last)),
            _ = &mut console => return Ok((Ending::Quit, last)),
            _ = tokio::time::sleep(POLL) => {}
        }
        let t = t0.elapsed().as_secs_f64();
        match client.status().await {
            Ok(st) => {
                last = st;
                last_ok = Instant::now();
            }
            Err(e) if last_ok.elapsed() > API_PATIENCE => return Err(DemoError::Client(e)),
            Err(_) => continue,
        }
        if opts.headless {
            if let Ok(events) = client.events(seen_event).await {
                for e in events.iter().filter(|e| e.action != EventAction::Start) {
                    let _ = writeln!(out, "{}", event_line(t, e));
                }
                seen_event = events.last().map_or(seen_event, |e| e.id);
            }
            if last_line.is_none_or(|l| l.elapsed() >= Duration::from_secs(1)) {
                last_line = Some(Instant::now());
                let _ = writeln!(out, "{}", progress_line(t, &last));
            }
        }
        let faults = match opts.scenario.fault() {
            Fault::FirstReject(env) => world.group(env).faults(),
            Fault::Saturated(env) => u64::from(world.group(env).saturated()),
            Fault::None | Fault::Herd => 0,
        };
        for cue in director.observe(t, &last, faults) {
            let words = match cue {
                Cue::FaultStarted(words) => words.to_owned(),
                Cue::Offline => {
                    population.set_online(false);
                    "outage: every user is cut off; open WebSockets drop".to_owned()
                }
                Cue::Online => {
                    population.set_online(true);
                    continue; // announced by FaultStarted
                }
                Cue::Finish(ending) if opts.headless => return Ok((ending, last)),
                Cue::Finish(_) => continue, // the console runs until the operator quits
            };
            if opts.headless {
                let _ = writeln!(out, "{}", note_line(t, &words));
            }
        }
    }
}

fn header(
    out: &mut (dyn Write + Send),
    opts: &DemoOptions,
    world: &World,
    bound: &Bound,
    protection: Protection,
) -> std::io::Result<()> {
    let env = |name: &str, p: &Profile| {
        let limit = if p.max_connections > 0 {
            format!(", hidden limit of {} connections each", p.max_connections)
        } else {
            String::new()
        };
        format!(
            "{name}: {} × capacity {} ({} ms){limit}",
            p.instances, p.capacity, p.latency_ms
        )
    };
    writeln!(
        out,
        "cutover demo — scenario {} (speed {}×, {} users, seed {})",
        opts.scenario, opts.speed, opts.users, opts.seed
    )?;
    writeln!(out, "  {}", opts.scenario.story())?;
    writeln!(
        out,
        "  {}; {}; {}",
        env("old", &world.old.profile),
        env("new", &world.new.profile),
        env("fallback", &world.fallback.profile)
    )?;
    match protection {
        Protection::NotUsed => {}
        Protection::On => writeln!(out, "  admission control: on")?,
        Protection::Off => writeln!(
            out,
            "  admission control: OFF (--no-protection): the envs take the full herd"
        )?,
        Protection::Unsupported => writeln!(
            out,
            "  admission control: OFF (this build's proxy does not know its keys)"
        )?,
    }
    writeln!(
        out,
        "  proxy http://{}   control API http://{}",
        bound.proxy, bound.admin
    )?;
    writeln!(out)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
