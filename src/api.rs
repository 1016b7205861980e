//! JSON shapes of the control API, shared by the server, the CLI and the console.
//!
//! Owns: the wire types of every request and answer (docs/api.md documents them). Must not
//! touch: the parts that fill them — plain data only, no behaviour, no I/O; the words it shares
//! with the rest of the crate come from [`crate::vocab`], so the core never depends on it.

use serde::{Deserialize, Serialize};

pub use crate::vocab::{EventAction, GateVerdict, OnFail, RunState};

/// `GET /v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: RunState,
    /// Name of the active (or last) run's plan.
    pub plan: Option<String>,
    /// Content hash of that plan's text in the store.
    pub plan_hash: Option<String>,
    pub run_id: Option<u64>,
    /// Current step, 1-based; 0 before the first step.
    pub step: usize,
    /// Number of steps in the plan.
    pub steps: usize,
    /// Each step's weight (percent), for the console's gauge markers.
    #[serde(default)]
    pub step_weights: Vec<f64>,
    /// Percent of users routed to NEW right now.
    pub weight: f64,
    /// Why the last automatic (or manual) decision was taken.
    pub reason: Option<String>,
    /// Seconds of the current step's hold still to serve, when holding.
    pub hold_remaining_s: Option<f64>,
    pub envs: Envs,
    #[serde(default)]
    pub gates: Vec<GateView>,
    /// Id of the newest event in the log.
    pub last_event_id: u64,
    /// Requests NEW or OLD could not answer that were answered by FALLBACK or failed, over the
    /// analysis window (the "displaced load" of the connection-limit incident).
    #[serde(default)]
    pub displaced: Displaced,
    /// Open long-lived connections (tunnels) still on an env their user no longer belongs to.
    #[serde(default)]
    pub tunnels_to_move: u64,
    /// What herd protection did over the analysis window (docs/protection.md).
    #[serde(default)]
    pub protection: Protection,
    /// Failed exchanges that were the client's own fault over the analysis window; never
    /// counted in an env's `error_rate` nor in `users`.
    #[serde(default)]
    pub client_errors: ClientErrors,
    /// Fleet mode (`[store] backend = "etcd"`): the instances sharing this migration. The
    /// figures above are then the fleet's sums. `None` for a single instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetView>,
    /// Shadow traffic: copies of OLD's users' requests sent to NEW (docs/plans.md).
    #[serde(default)]
    pub mirror: MirrorStatus,
    /// Could OLD take every user back now (rollback headroom, docs/analyzer.md)? Absent when
    /// `[envs.old] capacity_rps` is not declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom: Option<Headroom>,
}

/// The fleet as one instance sees it (docs/fleet.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    /// This instance's name.
    pub instance: String,
    /// The instance that decides (ticks the plan, judges gates), when one does.
    pub leader: Option<String>,
    /// Whether this instance reaches etcd; while it does not it serves at the last committed
    /// weight and decides nothing.
    pub etcd_ok: bool,
    /// The last etcd error while unreachable.
    #[serde(default)]
    pub etcd_error: Option<String>,
    /// Since when (ms since the epoch) etcd has been unreachable.
    #[serde(default)]
    pub etcd_down_since_ms: Option<u64>,
    /// Every live instance (its lease not expired), this one included, by name.
    pub instances: Vec<InstanceView>,
}

/// One instance of the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    pub id: String,
    /// Its control API and users' listener addresses.
    pub admin: String,
    pub proxy: String,
    /// When it last published its figures (ms since the epoch).
    pub last_seen_ms: u64,
    pub leader: bool,
    /// Users' requests per second it served over the window.
    pub rps: f64,
}

/// `GET /v1/ticks`: recorded analysis ticks, oldest first; ask again from `next` (a tick
/// time in ms) for the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TicksPage {
    pub ticks: Vec<crate::foresight::TickRecord>,
    pub next: Option<u64>,
}

/// Rollback headroom over the analysis window: what OLD would need after a rollback (the
/// users' whole demand) against what it has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Headroom {
    pub need_rps: f64,
    pub old_capacity_rps: f64,
    /// What FALLBACK could still take (0 without its declared capacity).
    pub fallback_spare_rps: f64,
    /// Capacity plus FALLBACK's spare less the need: below 0 a rollback would overload OLD.
    pub headroom_rps: f64,
    /// `OLD would need 1,840 rps, it has 1,200`.
    pub text: String,
}

/// Failed exchanges that were the client's fault, over the analysis window, by kind (the
/// `kind` label of `cutover_client_errors_total`). The client got `400` or `408` (or nothing,
/// when it had hung up).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientErrors {
    /// All kinds together.
    pub total: u64,
    /// A request body that broke its own framing (a malformed chunk): `400`.
    pub body_malformed: u64,
    /// A client that hung up or reset before its body was all sent: `400`.
    pub body_aborted: u64,
    /// A body paused longer than `[limits] body_read_timeout`: `408`.
    pub body_timeout: u64,
    /// A body slower on average than `[limits] min_body_rate`: `408`.
    pub body_too_slow: u64,
    /// An upgrade request that declares a body, refused before it reached an env: `400`.
    pub upgrade_with_body: u64,
    /// A request refused before routing (`CONNECT`, an over-long target, the `Host` rules).
    pub bad_request: u64,
    /// A client that closed its connection before its answer came (no answer to give).
    pub gone: u64,
}

/// Herd protection over the analysis window, all envs together (per-env shedding is in
/// [`EnvStats::shed_rate`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Protection {
    /// Requests shed (admission control or new-session rate) that users got as a 503.
    pub shed: u64,
    /// Of those, answers that were the waiting-room page.
    pub waiting_room: u64,
    /// New connections and tunnels refused by a new-session rate.
    pub sessions_limited: u64,
    /// Tunnels closed so their users reconnect to their new env.
    pub tunnels_drained: u64,
    /// Retries the proxy sent to FALLBACK, and retries the retry budget refused.
    pub retries: u64,
    pub budget_exhausted: u64,
    /// Same as [`Status::tunnels_to_move`].
    pub tunnels_to_move: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Envs {
    pub old: EnvStats,
    pub new: EnvStats,
    pub fallback: EnvStats,
    pub users: EnvStats,
}

/// What one scope looks like over the analysis window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvStats {
    pub rps: f64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub active: u64,
    #[serde(default)]
    pub share: f64,
    /// Fraction of recent synthetic probes that succeeded; `None` when not probed.
    #[serde(default)]
    pub probe_success: Option<f64>,
    /// Requests in the window.
    #[serde(default)]
    pub requests: u64,
    /// Requests shed by admission control in the window, per second.
    #[serde(default)]
    pub shed_rate: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Displaced {
    /// Requests whose env failed to answer and that FALLBACK answered.
    pub to_fallback: u64,
    /// Requests whose env failed to answer and that ended in an error for the user.
    pub failed: u64,
    /// Displaced requests over all requests in the window.
    pub rate: f64,
}

/// A gate's latest evaluation, for status and the console.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateView {
    pub name: String,
    /// `<scope>.<metric>`, or a query gate's PromQL text.
    pub metric: String,
    /// Whether `metric` is a PromQL query judged on Prometheus's answers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub query: bool,
    /// Human form of the threshold, e.g. `<= 0.02` or `<= 2.0 x old.p99_ms`.
    pub threshold: String,
    pub value: Option<f64>,
    pub verdict: GateVerdict,
    /// Consecutive failing evaluations so far, and how many make it act.
    pub failing_for: u32,
    pub after: u32,
    pub on_fail: OnFail,
}

/// One entry of the append-only event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic id, starting at 1.
    pub id: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who: `analyzer`, `orchestrator`, `cli`, `console`, a token's name, ...
    pub actor: String,
    /// What: `start`, `advance`, `pause`, `resume`, `approve`, `rollback`, `abort`, `weight`, ...
    pub action: EventAction,
    /// Why, in words.
    pub reason: String,
    pub run_id: Option<u64>,
    /// The state and weight after the event.
    pub state: RunState,
    pub weight: f64,
    /// The numbers behind an automatic decision (gate, values, threshold, window), or null.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// An event about to be appended (the store assigns the id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub at_ms: u64,
    pub actor: String,
    pub action: EventAction,
    pub reason: String,
    pub run_id: Option<u64>,
    pub state: RunState,
    pub weight: f64,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl NewEvent {
    pub fn with_id(self, id: u64) -> Event {
        Event {
            id,
            at_ms: self.at_ms,
            actor: self.actor,
            action: self.action,
            reason: self.reason,
            run_id: self.run_id,
            state: self.state,
            weight: self.weight,
            data: self.data,
        }
    }
}

/// Error body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub hint: String,
    /// Positioned problems (plan errors), when there are any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: String,
}

/// `POST /v1/weight`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightRequest {
    pub weight: f64,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The operator's commands that take no argument: `POST /v1/{verb}` with an [`ActionRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Pause,
    Resume,
    Approve,
    Rollback,
    Abort,
}

impl Verb {
    pub const ALL: [Verb; 5] = [
        Verb::Pause,
        Verb::Resume,
        Verb::Approve,
        Verb::Rollback,
        Verb::Abort,
    ];

    /// The route's last part: `/v1/{route}`.
    pub fn route(self) -> &'static str {
        match self {
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Approve => "approve",
            Verb::Rollback => "rollback",
            Verb::Abort => "abort",
        }
    }

    /// The verb of a request path (`/v1/pause` → `Pause`).
    pub fn from_path(path: &str) -> Option<Verb> {
        let route = path.strip_prefix("/v1/")?;
        Verb::ALL.into_iter().find(|v| v.route() == route)
    }
}

/// `POST /v1/{pause,resume,approve,rollback,abort}` (body optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /v1/plans` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanInfo {
    pub hash: String,
    pub name: String,
    pub stored_at_ms: u64,
}

/// Header by which a client names itself as the actor (`cli`, `console`, ...).
pub const ACTOR_HEADER: &str = "x-cutover-actor";

/// Shadow traffic in `GET /v1/status`: the copies sent to NEW over the analysis window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MirrorStatus {
    /// Percent of OLD's users whose requests are copied to NEW right now.
    pub percent: f64,
    /// Whether the copies' answers are compared with OLD's.
    pub compare: bool,
    /// NEW's answers to the copies (`mirror.*` in gates).
    pub stats: EnvStats,
    /// Copies dropped because a worker's bound on copies in flight was full.
    pub dropped: u64,
    /// Requests of mirrored users not copied: a method not allowed, or a body over
    /// `[mirror] max_body`, broken off or never read by OLD.
    pub skipped: u64,
    pub compared: u64,
    pub mismatches: u64,
    pub mismatch_rate: f64,
    /// The latest copies whose answer differed from OLD's, newest last.
    #[serde(default)]
    pub samples: Vec<MismatchSample>,
}

impl MirrorStatus {
    /// Whether shadow traffic is, or was in the window, part of the picture: users are being
    /// copied, or copies were sent, dropped or skipped.
    pub fn in_play(&self) -> bool {
        self.percent > 0.0 || self.stats.requests + self.dropped + self.skipped > 0
    }
}

/// One copy whose answer differed from OLD's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MismatchSample {
    pub method: String,
    /// Path and query, cut to 200 bytes.
    pub path: String,
    pub old_status: u16,
    /// NEW's status; `None` when NEW gave no answer (refused, reset, timed out).
    pub new_status: Option<u16>,
    /// What differed: `status`, `header <name>` or `body`.
    pub what: String,
}
