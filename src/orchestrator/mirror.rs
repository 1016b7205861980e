//! Which shadow traffic a run's state puts in force: the current step's `mirror` and
//! `compare`, while the run is running (its checks passed) or awaiting approval. A paused run,
//! a rollback and every state after a run copy nothing: a NEW that failed a gate is not kept
//! under load, and copies never outlive the step that asked for them.
//!
//! Owns: that rule ([`in_force`]) and the status's `mirror` value ([`status`]). Must not
//! touch: the store or the router — the driver publishes what [`in_force`] says, after the
//! commit, with the weight.

use super::machine::Control;
use crate::api::MirrorStatus;
use crate::metrics::WindowSnapshot;
use crate::router::Weight;
use crate::vocab::RunState;

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
