//! The driver task: the only writer of the run's state.
//!
//! Each analysis interval it takes a metrics window, asks the analyzer for an observation,
//! and lets the pure machine decide; operator commands arrive over the handle's channel and
//! are applied one at a time. Every transition is committed to the store (one transaction,
//! flushed) BEFORE its weight is published to the router; if the store fails, the transition
//! is not taken and the command answers an error. Pre-step checks run as separate tasks and
//! come back as commands.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio::sync::{broadcast, mpsc, watch};
// Tokio's clock, so that a test on paused time drives the holds, the interval and the saves.
use tokio::time::Instant;

use super::checks::{self, EnvAddrs};
use super::handle::{Cmd, CommandError, Handle, Request};
use super::machine::{self, Command, Control, Effect, Tick, Transition};
use super::status;
use crate::analyzer::{self, GateReport, GateTracker};
use crate::api::{NewEvent, Status};
use crate::fleet::{Fleet, Notice};
use crate::foresight::headroom::{self, estimate};
use crate::metrics::{Metrics, WindowSnapshot};
use crate::plan::Analysis;
use crate::router::{Router, RoutingTable, Weight};
use crate::store::{Store, StoreError};

/// How often a command is decided when other instances keep committing first (fleet mode);
/// past it the command answers 409 with nothing changed.
const COMMAND_ATTEMPTS: usize = 3;

#[derive(Debug, Error)]
pub enum DriverError {
    #[error("cannot load the run state from the store: {0}")]
    Load(#[from] StoreError),
}

/// What the driver needs from the rest of the process.
pub struct Parts {
    pub store: Arc<Store>,
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    /// Open tunnels on an env their user no longer belongs to (the proxy's tunnel drain
    /// counts them), for the status; a function so the orchestrator never touches the proxy.
    pub tunnels_to_move: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Where pre-step checks go; swapped by a config reload.
    pub env_addrs: Arc<arc_swap::ArcSwap<EnvAddrs>>,
    /// Salt used while no run has set one.
    pub default_salt: String,
    /// Fleet mode: the other instances, and the notices of what they committed. Without it
    /// this instance decides alone.
    pub fleet: Option<(Fleet, mpsc::Receiver<Notice>)>,
    /// Tick recording and rollback headroom (`super::recorder`).
    pub foresight: Arc<super::recorder::Foresight>,
    /// Where query gates ask (`[prometheus]`); a plan with query gates needs it to start.
    pub prometheus: Option<Arc<crate::prometheus::Prometheus>>,
}

struct CheckResult {
    run_id: u64,
    step: usize,
    result: Result<String, String>,
}

struct Driver {
    parts: Parts,
    /// Query gates' answers, asked off this loop (`crate::prometheus::poll`).
    queries: Option<crate::prometheus::poll::Poller>,
    fleet: Option<Fleet>,
    control: Control,
    tracker: GateTracker,
    gates: Vec<GateReport>,
    last_event_id: u64,
    last_eval: Instant,
    last_saved: Instant,
    status_tx: watch::Sender<Status>,
    events_tx: broadcast::Sender<crate::api::Event>,
    checks_tx: mpsc::Sender<CheckResult>,
}

/// Load the persisted state, publish its routing table, and start the driver.
///
/// The routing table is published before this returns, so a proxy started afterwards
/// serves the resumed weight from its first request (never 0 or 100 by accident).
pub fn start(
    mut parts: Parts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(Handle, tokio::task::JoinHandle<()>), DriverError> {
    let (fleet, notices) = parts.fleet.take().unzip();
    let control: Control = parts.store.load_state()?.unwrap_or_default();
    let last_event_id = parts.store.last_event_id()?;
    let salt = control
        .run()
        .map_or(parts.default_salt.clone(), |r| r.plan().salt.clone());
    let (mirror, compare) = super::mirror::in_force(&control);
    parts
        .router
        .publish(RoutingTable::new(control.weight(), &salt).with_mirror(mirror, compare));
    let (tx, rx) = mpsc::channel(64);
    let (status_tx, status_rx) = watch::channel(Status::default());
    let (events_tx, _) = broadcast::channel(1024);
    let (checks_tx, checks_rx) = mpsc::channel(16);
    let metrics = parts.metrics.clone();
    let status_for_metrics = status_rx.clone();
    let foresight = parts.foresight.clone();
    let handle = Handle {
        tx,
        status: status_rx,
        events: events_tx.clone(),
        store: parts.store.clone(),
        metrics_text: Arc::new(move || {
            status::prometheus(&metrics, &status_for_metrics.borrow()) + &foresight.prometheus()
        }),
    };
    let queries = parts
        .prometheus
        .clone()
        .map(crate::prometheus::poll::Poller::start);
    let driver = Driver {
        queries,
        parts,
        fleet,
        control,
        tracker: GateTracker::default(),
        gates: Vec::new(),
        last_event_id,
        last_eval: Instant::now(),
        last_saved: Instant::now(),
        status_tx,
        events_tx,
        checks_tx,
    };
    if let Some(run) = driver.control.run() {
        tracing::info!(
            run = run.id(),
            state = %driver.control.state(),
            step = driver.control.step(),
            weight = driver.control.weight().percent(),
            "resumed the run from the store"
        );
        if let Some(step) = run.checks_pending() {
            driver.spawn_checks(step);
        }
    }
    driver.publish_status();
    let task = tokio::spawn(driver.run(rx, checks_rx, notices, shutdown));
    Ok((handle, task))
}

impl Driver {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut checks_rx: mpsc::Receiver<CheckResult>,
        mut notices: Option<mpsc::Receiver<Notice>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut status_tick = tokio::time::interval(Duration::from_millis(250));
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut eval_at = Instant::now() + eval_interval(&self.analysis());
        loop {
            tokio::select! {
                Some(req) = rx.recv() => {
                    let mut answer = self.command(req.cmd.clone(), &req.actor, req.reason.clone()).await;
                    // Another instance committed first: decide again on what it committed, a
                    // few times (each attempt judged afresh by the machine), then say so.
                    for _ in 1..COMMAND_ATTEMPTS {
                        if !matches!(answer, Err(CommandError::Conflict(_))) {
                            break;
                        }
                        self.adopt().await;
                        answer = self.command(req.cmd.clone(), &req.actor, req.reason.clone()).await;
                    }
                    let _ = req.reply.send(answer);
                }
                Some(notice) = next_notice(&mut notices) => self.notice(notice).await,
                Some(done) = checks_rx.recv() => self.checks_done(done).await,
                _ = tokio::time::sleep_until(eval_at) => {
                    self.evaluate().await;
                    eval_at = Instant::now() + eval_interval(&self.analysis());
                }
                _ = status_tick.tick() => self.publish_status(),
                _ = &mut shutdown => break,
            }
        }
        // Keep the hold progress of the last interval.
        if self.control.is_active() {
            let _ = self.save().await;
        }
    }

    fn analysis(&self) -> Analysis {
        self.control
            .run()
            .map(|r| r.plan().analysis.clone())
            .unwrap_or_default()
    }

    async fn command(
        &mut self,
        cmd: Cmd,
        actor: &str,
        reason: Option<String>,
    ) -> Result<Status, CommandError> {
        let command = match cmd {
            Cmd::Start { plan, text } => {
                // Refuse early (nothing stored) when a run is active.
                if self.control.is_active() {
                    return Err(CommandError::Rejected(format!(
                        "a run is already {}: finish, roll back or abort it before starting another",
                        self.control.state()
                    )));
                }
                if !plan.queries.is_empty() && self.parts.prometheus.is_none() {
                    return Err(CommandError::Rejected(
                        "the plan has query gates but this server has no [prometheus] url in its config: add one and restart".into(),
                    ));
                }
                let store = self.parts.store.clone();
                let name = plan.name.clone();
                let now = now_ms();
                let (hash, run_id) = tokio::task::spawn_blocking(move || {
                    let hash = store.put_plan(&name, &text, now)?;
                    Ok::<_, StoreError>((hash, store.next_run_id()?))
                })
                .await
                .map_err(|e| CommandError::Store(e.to_string()))?
                .map_err(|e| CommandError::Store(e.to_string()))?;
                Command::Start {
                    plan: *plan,
                    plan_hash: hash,
                    run_id,
                }
            }
            Cmd::Record {
                action,
                reason,
                data,
            } => {
                let t = Transition {
                    control: self.control.clone(),
                    event: machine::EventDraft {
                        action,
                        reason,
                        data,
                    },
                    effects: Vec::new(),
                };
                self.commit(t, actor).await?;
                return Ok(self.status_tx.borrow().clone());
            }
            Cmd::Pause => Command::Pause,
            Cmd::Resume => Command::Resume,
            Cmd::Approve => Command::Approve,
            Cmd::Rollback => Command::Rollback,
            Cmd::Abort => Command::Abort,
            Cmd::SetWeight(pct) => Command::SetWeight(Weight::from_percent(pct)),
            Cmd::RampWeight { percent, over } => Command::RampWeight {
                weight: Weight::from_percent(percent),
                over,
            },
        };
        let starting = matches!(command, Command::Start { .. });
        let transition = machine::apply(&self.control, command, actor, reason.as_deref())
            .map_err(|r| CommandError::Rejected(r.reason))?;
        if starting {
            self.tracker = GateTracker::default();
            self.gates.clear();
        }
        self.commit(transition, actor).await?;
        Ok(self.status_tx.borrow().clone())
    }

    async fn checks_done(&mut self, done: CheckResult) {
        if self.control.run().map(|r| r.id()) != Some(done.run_id) {
            return;
        }
        let cmd = match done.result {
            Ok(_) => Command::ChecksPassed { step: done.step },
            Err(output) => Command::ChecksFailed {
                step: done.step,
                output,
            },
        };
        // A stale result (the run moved on meanwhile) is rejected by the machine: ignore it.
        if let Ok(t) = machine::apply(&self.control, cmd, "orchestrator", None) {
            if let Err(e) = self.commit(t, "orchestrator").await {
                tracing::error!(error = %e, "could not record a check result");
            }
        }
    }

    async fn evaluate(&mut self) {
        let now = Instant::now();
        let analysis = self.analysis();
        let every = eval_interval(&analysis);
        let dt = now
            .duration_since(self.last_eval)
            .min(every.saturating_mul(3));
        self.last_eval = now;
        // What the analyzer judges (or would), recorded every tick for `plan simulate`.
        let snap = self.window(now, analysis.window);
        let weight = self.control.weight();
        self.parts
            .foresight
            .record(&self.parts.store, now_ms(), weight, dt, &snap);
        let deciding =
            self.control.needs_ticks() && self.fleet.as_ref().is_none_or(|f| f.is_leader());
        // Prometheus is asked, off this loop, only while this instance judges a run.
        if let Some(poller) = &self.queries {
            match self
                .control
                .run()
                .filter(|_| deciding && self.control.is_active())
            {
                Some(run) => poller.want(&run.plan().queries, every),
                None => poller.want(&[], Duration::ZERO),
            }
        }
        if !deciding {
            return;
        }
        // Gates judge an active run; a weight move after the run ended only needs time.
        let observation = match self.control.run().filter(|_| self.control.is_active()) {
            Some(run) => {
                let plan = run.plan().clone();
                // The latest answers, asked by the poller: the tick never waits on Prometheus.
                let queries = match &self.queries {
                    Some(q) if !plan.queries.is_empty() => q.latest(&plan.queries, every, now),
                    _ => analyzer::QueryResults::default(),
                };
                let evaluation = analyzer::evaluate_with(
                    &plan,
                    &snap,
                    self.control.weight(),
                    &mut self.tracker,
                    &queries,
                );
                self.gates = evaluation.gates;
                evaluation.observation
            }
            None => analyzer::Observation {
                health: analyzer::Health::Healthy,
                old_degraded: None,
                notes: Vec::new(),
            },
        };
        let headroom = estimate(&snap, &self.parts.foresight.capacity());
        let observation = headroom::guard(&self.control, dt, headroom.as_ref(), observation);
        match machine::tick(&self.control, dt, &observation) {
            Tick::Nothing => {}
            Tick::Progress(control) => {
                self.control = control;
                if self.last_saved.elapsed() >= Duration::from_secs(1) {
                    if let Err(e) = self.save().await {
                        tracing::error!(error = %e, "could not save the hold progress");
                    }
                }
            }
            Tick::Transition(t) => {
                if let Err(e) = self.commit_as(t, "analyzer", true).await {
                    tracing::error!(error = %e, "could not record an automatic decision; it was not taken");
                }
            }
        }
        if let Some(t) = super::mirror::mismatch_event(&self.control, &self.parts.metrics) {
            if let Err(e) = self.commit(t, "analyzer").await {
                tracing::error!(error = %e, "could not record shadow traffic's mismatches");
            }
        }
    }

    /// Save progress (no event), e.g. the hold served so far.
    async fn save(&mut self) -> Result<(), String> {
        let store = self.parts.store.clone();
        let control = self.control.clone();
        let run_id = control.run().map(|r| r.id());
        let result =
            // Fenced: in a fleet only the leader saves its progress.
            match tokio::task::spawn_blocking(move || store.save_state_fenced(&control, run_id))
                .await
            {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
        self.last_saved = Instant::now();
        result
    }

    async fn commit(&mut self, t: Transition, actor: &str) -> Result<(), CommandError> {
        self.commit_as(t, actor, false).await
    }

    /// Persist (flushed), then publish the weight, then tell the world. `fenced`: a decision
    /// of the leader's analyzer, which a fleet commits only while this instance still leads.
    async fn commit_as(
        &mut self,
        t: Transition,
        actor: &str,
        fenced: bool,
    ) -> Result<(), CommandError> {
        let Transition {
            control,
            event,
            effects,
        } = t;
        let run_id = control.run().map(|r| r.id());
        // Every event records the weight users were on before it and after it.
        let mut data = match event.data {
            serde_json::Value::Object(m) => m,
            serde_json::Value::Null => serde_json::Map::new(),
            other => {
                let mut m = serde_json::Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        data.insert(
            "weight_before".into(),
            serde_json::json!(self.control.weight().percent()),
        );
        data.insert(
            "weight_after".into(),
            serde_json::json!(control.weight().percent()),
        );
        let new_event = NewEvent {
            at_ms: now_ms(),
            actor: actor.to_owned(),
            action: event.action,
            reason: event.reason,
            run_id,
            state: control.state(),
            weight: control.weight().percent(),
            data: serde_json::Value::Object(data),
        };
        let store = self.parts.store.clone();
        let to_store = control.clone();
        let stored = tokio::task::spawn_blocking(move || {
            store.commit_as(&to_store, run_id, new_event, fenced)
        })
        .await
        .map_err(|e| CommandError::Store(e.to_string()))?
        .map_err(|e| match e {
            StoreError::Conflict { .. } => CommandError::Conflict(e.to_string()),
            e => CommandError::Store(e.to_string()),
        })?;
        // Durable: now it may take effect.
        self.route_by(&control);
        self.control = control;
        self.last_saved = Instant::now();
        tracing::info!(
            id = stored.id,
            actor = %stored.actor,
            action = %stored.action,
            state = %stored.state,
            weight = stored.weight,
            reason = %stored.reason,
            "event"
        );
        self.last_event_id = stored.id;
        let _ = self.events_tx.send(stored);
        for effect in effects {
            match effect {
                Effect::RunChecks { step } => self.spawn_checks(step),
            }
        }
        self.publish_status();
        Ok(())
    }

    /// Fleet mode: what another instance committed, or a change of leadership.
    async fn notice(&mut self, notice: Notice) {
        match notice {
            // Our own write: the state in memory is it (or newer, by hold progress).
            Notice::State { revision }
                if revision > 0 && self.parts.store.state_revision() >= Some(revision) => {}
            Notice::State { .. } => self.adopt().await,
            Notice::Leading(true) => {
                // Decide on the latest committed state, with fresh gate streaks.
                self.adopt().await;
                self.tracker = GateTracker::default();
                self.gates.clear();
                self.last_eval = Instant::now();
                if let Some(step) = self.control.run().and_then(|r| r.checks_pending()) {
                    self.spawn_checks(step);
                }
            }
            Notice::Leading(false) => {
                self.gates.clear();
                self.publish_status();
            }
        }
    }

    /// Load the committed state (and the events this instance has not seen) from the store,
    /// and route by it.
    async fn adopt(&mut self) {
        let store = self.parts.store.clone();
        let since = self.last_event_id;
        let loaded = tokio::task::spawn_blocking(move || {
            let events = store.events_since(since, 10_000)?;
            let control: Option<Control> = store.load_state()?;
            Ok::<_, StoreError>((events, control))
        })
        .await;
        let (events, control) = match loaded {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not load the fleet's state; keeping the last one");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not load the fleet's state; keeping the last one");
                return;
            }
        };
        for event in events {
            self.last_event_id = self.last_event_id.max(event.id);
            let _ = self.events_tx.send(event);
        }
        if let Some(control) = control {
            if control.run().map(|r| r.id()) != self.control.run().map(|r| r.id()) {
                self.tracker = GateTracker::default();
                self.gates.clear();
            }
            self.route_by(&control);
            self.control = control;
        }
        self.publish_status();
    }

    fn spawn_checks(&self, step: usize) {
        let Some(run) = self.control.run() else {
            return;
        };
        let run_id = run.id();
        let list = run
            .plan()
            .steps
            .get(step)
            .map(|s| s.checks.clone())
            .unwrap_or_default();
        let addrs: EnvAddrs = (**self.parts.env_addrs.load()).clone();
        let tx = self.checks_tx.clone();
        tokio::spawn(async move {
            let result = checks::run_all(&list, &addrs).await;
            let _ = tx
                .send(CheckResult {
                    run_id,
                    step,
                    result,
                })
                .await;
        });
    }

    /// Route users by `control`'s weight and salt (once it is durable).
    fn route_by(&self, control: &Control) {
        let table = self.parts.router.snapshot();
        let salt = control
            .run()
            .map_or(table.salt().to_owned(), |r| r.plan().salt.clone());
        let (mirror, compare) = super::mirror::in_force(control);
        if table.weight() != control.weight()
            || table.salt() != salt
            || (table.mirror(), table.compare()) != (mirror, compare)
        {
            self.parts.router.publish(
                table
                    .with_salt(&salt)
                    .with_weight(control.weight())
                    .with_mirror(mirror, compare),
            );
        }
    }

    /// The window the analyzer and the status read: this instance's, or the fleet's sum.
    fn window(&self, now: Instant, window: Duration) -> WindowSnapshot {
        match &self.fleet {
            Some(f) => f.window_snapshot(now.into_std(), window, now_ms()),
            None => self.parts.metrics.window(now.into_std(), window),
        }
    }

    fn publish_status(&self) {
        let window = self.analysis().window;
        let now = Instant::now();
        let snap = self.window(now, window);
        let mut s = status::build(
            &self.control,
            &snap,
            &self.gates,
            self.last_event_id,
            (self.parts.tunnels_to_move)(),
        );
        if let Some(f) = &self.fleet {
            f.set_window(window);
            s.fleet = Some(f.view(now.into_std(), now_ms()));
        }
        s.headroom = self.parts.foresight.status_view(&snap);
        self.status_tx.send_replace(s);
    }
}

/// The next fleet notice; never, for a single instance.
async fn next_notice(rx: &mut Option<mpsc::Receiver<Notice>>) -> Option<Notice> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How long the driver waits between evaluations: the plan's `interval`, kept within the plan
/// bounds (`plan check` refuses anything outside them, but a run restored from an older store
/// may hold any value), so `Instant + interval` can never overflow and panic the task.
pub fn eval_interval(a: &Analysis) -> Duration {
    let (lo, hi) = crate::plan::model::bounds::INTERVAL;
    a.interval.clamp(lo, hi)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
