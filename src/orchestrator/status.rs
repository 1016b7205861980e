//! The `GET /v1/status` value, built from the run's state and a metrics window.

use crate::api::{Displaced, EnvStats, Envs, GateView, Status};
use crate::metrics::{Metrics, Scope, ScopeWindow, WindowSnapshot};

use super::machine::Control;

pub fn build(control: &Control, snap: &WindowSnapshot, gates: &[GateView], last_event_id: u64) -> Status {
    let run = control.run();
    let steps = run.map_or(0, |r| r.plan().steps.len());
    let displaced_to_fallback: u64 = [Scope::Old, Scope::New]
        .iter()
        .map(|s| snap.scope(*s).displaced_to_fallback)
        .sum();
    let displaced_failed: u64 = [Scope::Old, Scope::New]
        .iter()
        .map(|s| snap.scope(*s).displaced_failed)
        .sum();
    let users = snap.scope(Scope::Users).requests;
    Status {
        state: control.state(),
        plan: run.map(|r| r.plan().name.clone()),
        plan_hash: run.map(|r| r.plan_hash().to_owned()),
        run_id: run.map(|r| r.id()),
        step: control.step(),
        steps,
        step_weights: run.map_or_else(Vec::new, |r| r.plan().steps.iter().map(|s| s.weight.percent()).collect()),
        weight: control.weight().percent(),
        reason: control.reason().map(str::to_owned),
        hold_remaining_s: control.hold_remaining().map(|d| d.as_secs_f64()),
        envs: Envs {
            old: env_stats(snap.scope(Scope::Old)),
            new: env_stats(snap.scope(Scope::New)),
            fallback: env_stats(snap.scope(Scope::Fallback)),
            users: env_stats(snap.scope(Scope::Users)),
        },
        gates: gates.to_vec(),
        last_event_id,
        displaced: Displaced {
            to_fallback: displaced_to_fallback,
            failed: displaced_failed,
            rate: if users == 0 {
                0.0
            } else {
                (displaced_to_fallback + displaced_failed) as f64 / users as f64
            },
        },
        // Counted by the tunnel drain of a step change; nothing drains tunnels yet.
        tunnels_to_move: 0,
    }
}

fn env_stats(w: &ScopeWindow) -> EnvStats {
    EnvStats {
        rps: w.rps,
        error_rate: w.error_rate,
        p50_ms: w.p50_ms,
        p99_ms: w.p99_ms,
        active: w.active,
        share: w.share,
        probe_success: w.probe_success,
        requests: w.requests,
        shed_rate: w.shed_rate,
    }
}

/// `GET /metrics`: the metrics and the run, in Prometheus text format.
pub fn prometheus(metrics: &Metrics, status: &Status) -> String {
    let _ = metrics;
    format!("cutover_weight_percent {}\n", status.weight)
}
