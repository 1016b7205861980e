//! The `GET /v1/status` value, built from the run's state and a metrics window.

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
    gates: &[GateView],
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
        gates: gates.to_vec(),
        last_event_id,
        displaced: snap.displaced(),
        tunnels_to_move,
        protection: crate::api::Protection {
            tunnels_to_move,
            ..snap.protection()
        },
        client_errors: snap.client_errors(),
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
