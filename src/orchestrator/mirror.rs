//! Which shadow traffic a run's state puts in force: the current step's `mirror` and
//! `compare`, while the run is running (its checks passed) or awaiting approval. A paused run,
//! a rollback and every state after a run copy nothing: a NEW that failed a gate is not kept
//! under load, and copies never outlive the step that asked for them.
//!
//! Owns: that rule ([`in_force`]), the status's `mirror` value ([`status`]) and the
//! rate-limited `mirror_mismatch` event ([`mismatch_event`]). Must not
//! touch: the store or the router — the driver publishes what [`in_force`] says, after the
//! commit, with the weight.

use super::machine::{Control, EventDraft, Transition};
use crate::api::MirrorStatus;
use crate::metrics::WindowSnapshot;
use crate::router::Weight;
use crate::vocab::{EventAction, RunState};

/// The share of OLD's users mirrored to NEW and whether the answers are compared.
pub fn in_force(control: &Control) -> (Weight, bool) {
    let Some(run) = control.run() else {
        return (Weight::ZERO, false);
    };
    let copying = matches!(run.state(), RunState::Running | RunState::AwaitingApproval)
        && run.checks_pending().is_none();
    match run.plan().steps.get(run.step_index()) {
        Some(step) if copying => (step.mirror, step.compare),
        _ => (Weight::ZERO, false),
    }
}

/// `GET /v1/status`'s `mirror`: what is in force and what the copies came to over the window.
pub fn status(control: &Control, snap: &WindowSnapshot) -> MirrorStatus {
    let (mirror, compare) = in_force(control);
    MirrorStatus {
        percent: mirror.percent(),
        compare,
        ..snap.mirror()
    }
}

/// The `mirror_mismatch` event for the mismatches since the last one, if any: at most one per
/// tick, so a NEW that answers every copy differently writes one event a tick, not one a copy.
pub fn mismatch_event(control: &Control, metrics: &crate::metrics::Metrics) -> Option<Transition> {
    let (count, latest) = metrics.unreported_mismatches()?;
    let new_status = latest
        .new_status
        .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
    let reason = format!(
        "new answered {count} cop{} of shadow traffic unlike old; latest: {} {} — old {}, new {} ({})",
        if count == 1 { "y" } else { "ies" },
        latest.method,
        latest.path,
        latest.old_status,
        new_status,
        latest.what
    );
    Some(Transition {
        control: control.clone(),
        event: EventDraft {
            action: EventAction::MirrorMismatch,
            reason,
            data: serde_json::json!({ "count": count, "latest": latest }),
        },
        effects: Vec::new(),
    })
}
