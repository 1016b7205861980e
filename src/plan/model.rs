//! The plan model: what a validated plan says, as plain data. Parsing and validation live in
//! the sibling modules; everything downstream (state machine, analyzer) takes a [`Plan`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::MetricRef;
use crate::router::{Env, Weight};
pub use crate::vocab::OnFail;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    /// Bucket seed; defaults to `name`.
    pub salt: String,
    pub analysis: Analysis,
    pub steps: Vec<Step>,
    pub gates: Vec<Gate>,
    pub rollback: Rollback,
    /// Gates on a PromQL query (`[[gates]]` with `query`), judged with Prometheus's answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<QueryGate>,
}

/// Ranges of a plan's durations, checked by `plan check` (docs/plans.md lists them).
pub mod bounds {
    use std::time::Duration;

    /// `[analysis] interval`: how often gates are judged.
    pub const INTERVAL: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(60));
    /// `[analysis] window`: at least the interval, at most what the metric rings keep (128 s).
    pub const MAX_WINDOW: Duration = Duration::from_secs(120);
    /// `[[steps]] hold`.
    pub const MAX_HOLD: Duration = Duration::from_secs(7 * 24 * 3600);
    /// `[rollback] ramp` (and `set-weight --ramp`).
    pub const MAX_RAMP: Duration = Duration::from_secs(24 * 3600);
    /// `[[steps.checks]] timeout`.
    pub const CHECK_TIMEOUT: (Duration, Duration) =
        (Duration::from_millis(1), Duration::from_secs(600));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// How often gates are evaluated.
    pub interval: Duration,
    /// Sliding window the metrics are taken over.
    pub window: Duration,
    /// Below this many requests in the window a gate does not judge.
    pub min_requests: u64,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            interval: Duration::from_secs(1),
            window: Duration::from_secs(10),
            min_requests: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Share of users on NEW; strictly increasing over the steps, 0 < weight <= 100 %.
    pub weight: Weight,
    /// How long the step must stay healthy before the next one (zero for the last step is fine).
    pub hold: Duration,
    /// Wait for an operator's approve after the hold.
    pub approval: bool,
    /// Run before the step's weight is applied; a failure pauses the run.
    pub checks: Vec<Check>,
    /// Share of OLD's users whose requests are also copied to NEW during the step (shadow
    /// traffic, `src/proxy/mirror`); zero: none.
    #[serde(default)]
    pub mirror: Weight,
    /// Compare NEW's answers to the copies with OLD's answers.
    #[serde(default)]
    pub compare: bool,
    /// Hold before this step when a rollback from it could not be absorbed by OLD
    /// (`crate::foresight::headroom`); `headroom_check = false` for an OLD being retired.
    #[serde(default = "yes")]
    pub headroom_check: bool,
}

/// Serde default of keys that are on unless a plan says otherwise.
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Check {
    /// GET `path` on one upstream of `env`; expect `expect_status` and, optionally, the JSON
    /// value at `expect_json.pointer` (RFC 6901) to equal `expect_json.value`.
    HttpGet {
        env: Env,
        path: String,
        expect_status: u16,
        expect_json: Option<JsonExpectation>,
        timeout: Duration,
    },
    /// Run `command` with `sh -c`; it must exit 0 within `timeout`.
    Command { command: String, timeout: Duration },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonExpectation {
    pub pointer: String,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub name: String,
    pub metric: MetricRef,
    pub condition: Condition,
    /// Consecutive failing evaluations before acting (>= 1).
    pub after: u32,
    pub on_fail: OnFail,
}

/// A gate on a PromQL query's value (`query = "..."` instead of `metric`): `max` or `min`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryGate {
    pub name: String,
    /// The PromQL expression; its instant value must be one number.
    pub query: String,
    /// `Max` or `Min` (never a ratio).
    pub condition: Condition,
    pub after: u32,
    pub on_fail: OnFail,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    /// Fails when the value is above `max`.
    Max(f64),
    /// Fails when the value is below `min` (e.g. `users.probe_success`).
    Min(f64),
    /// Fails when the value is above `ratio` × the value of `of`. With `confidence` (error-rate
    /// gates only), fails only when the excess is statistically significant at that level.
    RatioOf {
        of: MetricRef,
        ratio: f64,
        confidence: Option<f64>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    /// How long a rollback takes to reach weight 0; zero returns everyone at once.
    pub ramp: Duration,
}

impl Default for Rollback {
    fn default() -> Self {
        Rollback {
            ramp: Duration::from_secs(30),
        }
    }
}
