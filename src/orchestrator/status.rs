//! The `GET /v1/status` value, built from the run's state and a metrics window.
//!
//! Owns: turning the machine's state and the analyzer's [`GateReport`]s into the control API's
//! wire types (the edge where domain values become [`crate::api`] shapes). Must not touch: the
//! store or the router.

use crate::analyzer::GateReport;
use crate::api::{GateView, Status};
use crate::metrics::{
    render_prometheus, render_tunnels_to_move, GateGauge, Metrics, RunGauges, WindowSnapshot,
};

use super::machine::Control;

/// `tunnels_to_move`: open tunnels on an env their user no longer belongs to (from the proxy's
/// tunnel drain).
pub fn build(
    control: &Control,
    snap: &WindowSnapshot,
    gates: &[GateReport],
    last_event_id: u64,
    tunnels_to_move: u64,
) -> Status {
    let run = control.run();
    Status {
        state: control.state(),
        plan: run.map(|r| r.plan().name.clone()),
        plan_hash: run.map(|r| r.plan_hash().to_owned()),
        run_id: run.map(|r| r.id()),
        step: control.step(),
        steps: run.map_or(0, |r| r.plan().steps.len()),
        step_weights: run.map_or_else(Vec::new, |r| {
            r.plan().steps.iter().map(|s| s.weight.percent()).collect()
        }),
        weight: control.weight().percent(),
        reason: control.reason().map(str::to_owned),
        hold_remaining_s: control.hold_remaining().map(|d| d.as_secs_f64()),
        envs: snap.envs(),
        gates: gates.iter().map(gate_view).collect(),
        last_event_id,
        displaced: snap.displaced(),
        tunnels_to_move,
        protection: crate::api::Protection {
            tunnels_to_move,
            ..snap.protection()
        },
        client_errors: snap.client_errors(),
        fleet: None,
        mirror: super::mirror::status(control, snap),
        headroom: None,
    }
}

/// What the control API shows of one gate's latest evaluation.
pub fn gate_view(r: &GateReport) -> GateView {
    GateView {
        name: r.name.clone(),
        metric: r.reads.to_string(),
        query: matches!(r.reads, crate::analyzer::Reads::Query(_)),
        threshold: r.threshold(),
        value: r.value,
        verdict: r.verdict,
        failing_for: r.failing_for,
        after: r.after,
        on_fail: r.on_fail,
    }
}

/// `GET /metrics`: the metrics and the run, in Prometheus text format.
pub fn prometheus(metrics: &Metrics, status: &Status) -> String {
    let mut text = render_prometheus(
        metrics,
        &RunGauges {
            state: status.state,
            step: status.step,
            weight_percent: status.weight,
            gates: status.gates.iter().map(GateGauge::from_view).collect(),
        },
    );
    text.push_str(&render_tunnels_to_move(status.tunnels_to_move));
    text
}
