//! The orchestrator's front door: what the control API may ask of it.
//!
//! Commands travel over a channel to the single driver task, which applies them one at a time
//! (so two operators cannot race a transition). Status is a watch value the driver refreshes;
//! reading it never touches the store or the driver. Events are broadcast as they are stored.

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::api::{Event, PlanInfo, Status};
use crate::plan::Plan;
use crate::store::{Store, StoreError};
use crate::vocab::EventAction;

/// An operator's command.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Start {
        plan: Box<Plan>,
        text: String,
    },
    Pause,
    Resume,
    Approve,
    Rollback,
    Abort,
    /// Percent, already validated to lie in 0..=100.
    SetWeight(f64),
    /// Percent (validated as for `SetWeight`), reached over `over` at a constant rate.
    RampWeight {
        percent: f64,
        over: std::time::Duration,
    },
    /// Log a decision taken outside the run (a config reload) as an event; the run's state
    /// and weight do not change.
    Record {
        action: EventAction,
        reason: String,
        data: serde_json::Value,
    },
}

#[derive(Debug, Error)]
pub enum CommandError {
    /// The current state does not allow the command; nothing changed.
    #[error("{0}")]
    Rejected(String),
    /// The store could not record the decision, so it was not taken; nothing changed.
    #[error("the store could not record the decision (nothing changed): {0}")]
    Store(String),
    #[error("the orchestrator is shutting down")]
    Stopped,
    /// Fleet mode: another instance committed a decision between this instance's reading of
    /// the state and its commit, twice in a row; nothing changed.
    #[error("another instance of the fleet decided at the same moment (nothing changed): {0}")]
    Conflict(String),
}

pub(super) struct Request {
    pub cmd: Cmd,
    pub actor: String,
    pub reason: Option<String>,
    pub reply: oneshot::Sender<Result<Status, CommandError>>,
}

/// Cheap to clone; shared by every control API connection.
#[derive(Clone)]
pub struct Handle {
    pub(super) tx: mpsc::Sender<Request>,
    pub(super) status: watch::Receiver<Status>,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) store: Arc<Store>,
    pub(super) metrics_text: Arc<dyn Fn() -> String + Send + Sync>,
}

impl Handle {
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub async fn command(
        &self,
        cmd: Cmd,
        actor: &str,
        reason: Option<String>,
    ) -> Result<Status, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                cmd,
                actor: actor.to_owned(),
                reason,
                reply,
            })
            .await
            .map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)?
    }

    /// Append an event for a decision taken outside the run (e.g. `reload`), by `actor`.
    pub async fn record(
        &self,
        actor: &str,
        action: EventAction,
        reason: String,
        data: serde_json::Value,
    ) -> Result<(), CommandError> {
        let cmd = Cmd::Record {
            action,
            reason,
            data,
        };
        self.command(cmd, actor, None).await.map(|_| ())
    }

    /// New events as they are stored. Subscribe before reading the backlog to miss none.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn events_since(&self, since: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.store.events_since(since, limit)
    }

    /// Recorded analysis ticks with `from_ms <= t_ms < to_ms`, oldest first (blocking).
    pub fn ticks(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<crate::foresight::TickRecord>, StoreError> {
        self.store.ticks(from_ms, to_ms, limit)
    }

    pub fn plans(&self) -> Result<Vec<PlanInfo>, StoreError> {
        self.store.plans()
    }

    /// Prometheus text of the metrics and the run.
    pub fn metrics_text(&self) -> String {
        (self.metrics_text)()
    }
}
