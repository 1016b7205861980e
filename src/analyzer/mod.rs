//! The analyzer: judges a plan's gates over metric windows, and probes the environments.
//!
//! Owns: gate evaluation (pure, over a [`crate::metrics::WindowSnapshot`] and the gates'
//! failure streaks) and the synthetic probe task. Must not touch: the store, the router, or
//! the run's state — it only says what it saw; the orchestrator decides.
//!
//! Layout: [`judge`] judges one gate over one window (sample sizes, conditions, the words of
//! a verdict), [`stats`] holds the significance test of `confidence` ratio gates, [`gates`]
//! keeps failure streaks and turns verdicts into [`Health`], [`probe`] is the probe task,
//! [`query`] reads Prometheus's answers for query gates and judges them (the answers are
//! fetched by [`crate::prometheus`] and passed in as data).

pub mod gates;
pub mod judge;
pub mod probe;
pub mod query;
pub mod stats;

use serde::{Deserialize, Serialize};

pub use gates::{evaluate, evaluate_with, Evaluation, GateReport, GateTracker, Reads};
pub use probe::{run_probes, ProbeTarget};
pub use query::{QueryOutcome, QueryResults};

/// The analyzer's verdict on one evaluation, the state machine's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Health {
    /// Every gate judged and passed (or the plan has no gates).
    Healthy,
    /// Nothing failing, but at least one gate could not judge (e.g. too little traffic).
    NotJudged { reason: String },
    /// A gate with `on_fail = "pause"` failed `after` consecutive times.
    Pause {
        reason: String,
        data: serde_json::Value,
    },
    /// A gate with `on_fail = "rollback"` failed `after` consecutive times.
    Rollback {
        reason: String,
        data: serde_json::Value,
    },
}

/// What the state machine is told on each tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub health: Health,
    /// Set when a gate on OLD is failing right now: a rollback ramp holds instead of pushing
    /// more users onto an OLD that is already struggling.
    pub old_degraded: Option<String>,
    /// Gates that passed without traffic because the plan put none in their scope (e.g.
    /// `gate "fallback errors" passes without traffic by design: nothing was displaced to
    /// fallback (...)`), for the status and the decision's reason.
    #[serde(default)]
    pub notes: Vec<String>,
}
