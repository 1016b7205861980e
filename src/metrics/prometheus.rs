//! `GET /metrics`: the since-start totals and the run's gauges in Prometheus text format 0.0.4.
//!
//! Owns: metric names, HELP/TYPE lines, label escaping. Must not touch: windows (Prometheus
//! computes its own rates from counters) or the run itself — the caller passes [`RunGauges`].
//!
//! Hand-rendered rather than through `prometheus-client`: our numbers already live in our own
//! atomics, so a registry would only mirror them (or need a custom collector whose API has
//! changed across that crate's releases), while the text format is a few lines of `writeln!`.
//! The one subtle part, label-value escaping (`\`, `"`, newline), is in [`escape_label`] and
//! tested.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::totals::{ERROR_KINDS, PROBE_FAIL, PROBE_NONE, PROM_BUCKETS};
use super::{ClientFault, Handshake, Metrics, ProxyFault, Scope};
use crate::api::GateView;
use crate::router::Env;
use crate::vocab::GateVerdict;
use crate::vocab::RunState;

/// The run's numbers for Prometheus, filled by whoever owns the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunGauges {
    pub state: RunState,
    /// Current step, 1-based; 0 before the first.
    pub step: usize,
    /// Percent of users routed to NEW.
    pub weight_percent: f64,
    pub gates: Vec<GateGauge>,
}

/// One gate's latest verdict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateGauge {
    pub name: String,
    /// False only when the gate is failing (a gate without enough traffic is not failing).
    pub ok: bool,
    /// The measured value, when there was one.
    pub value: Option<f64>,
}

impl GateGauge {
    pub fn from_view(v: &GateView) -> Self {
        GateGauge {
            name: v.name.clone(),
            ok: v.verdict != GateVerdict::Failing,
            value: v.value,
        }
    }
}

/// `\` → `\\`, `"` → `\"`, newline → `\n` (the exposition format's label-value escapes).
pub fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

pub(super) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition.
/// A family per env (`cutover_<base>{env="old"}`, ...) and the users' own
/// (`cutover_user_<base>`): what users finally got is never a series of the envs' family, so
/// `sum(rate(cutover_requests_total[1m]))` counts each request once.
fn per_scope(
    o: &mut String,
    base: &str,
    kind: &str,
    help: &str,
    mut series: impl FnMut(&mut String, &str, Scope, &[String]),
) {
    let name = format!("cutover_{base}");
    header(o, &name, kind, &format!("{help}, per env."));
    for env in Env::ALL {
        let label = format!("env=\"{}\"", env.as_str());
        series(o, &name, Scope::from(env), &[label]);
    }
    let name = format!("cutover_user_{base}");
    header(
        o,
        &name,
        kind,
        &format!("{help}, as users finally got them (after any fallback)."),
    );
    series(o, &name, Scope::Users, &[]);
}

/// `{a="1",b="2"}`, or nothing without labels.
fn labels(first: &[String], more: &[String]) -> String {
    let all: Vec<&str> = first.iter().chain(more).map(String::as_str).collect();
    if all.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", all.join(","))
    }
}

pub fn render_prometheus(metrics: &Metrics, run: &RunGauges) -> String {
    let mut o = String::with_capacity(8 * 1024);
    let t = |s: Scope| &metrics.totals[s.index()];

    per_scope(
        &mut o,
        "requests_total",
        "counter",
        "Requests (or attempts) finished",
        |o, name, s, l| {
            let _ = writeln!(o, "{name}{} {}", labels(l, &[]), t(s).requests());
        },
    );
    per_scope(
        &mut o,
        "errors_total",
        "counter",
        "Failed requests by kind (5xx, timeout, refused, reset, shed)",
        |o, name, s, l| {
            for (k, kind) in ERROR_KINDS.iter().enumerate() {
                let kind = format!("kind=\"{kind}\"");
                let _ = writeln!(o, "{name}{} {}", labels(l, &[kind]), t(s).errors(k));
            }
        },
    );
    per_scope(
        &mut o,
        "request_duration_seconds",
        "histogram",
        "Latency of served requests (shed requests are not timed)",
        |o, name, s, l| {
            let mut cumulative = 0u64;
            for i in 0..=PROM_BUCKETS.len() {
                cumulative += t(s).latency_bucket(i);
                let le = PROM_BUCKETS.get(i).map_or("+Inf".to_string(), |v| num(*v));
                let le = format!("le=\"{le}\"");
                let _ = writeln!(o, "{name}_bucket{} {cumulative}", labels(l, &[le]));
            }
            let sum = num(t(s).latency_sum_us() as f64 / 1e6);
            let _ = writeln!(o, "{name}_sum{} {sum}", labels(l, &[]));
            let _ = writeln!(o, "{name}_count{} {cumulative}", labels(l, &[]));
        },
    );
    per_scope(
        &mut o,
        "active_connections",
        "gauge",
        "Open connections and tunnels",
        |o, name, s, l| {
            let _ = writeln!(o, "{name}{} {}", labels(l, &[]), t(s).active_now());
        },
    );
    per_scope(
        &mut o,
        "shed_total",
        "counter",
        "Requests refused by admission control",
        |o, name, s, l| {
            let _ = writeln!(o, "{name}{} {}", labels(l, &[]), t(s).errors(4));
        },
    );

    header(
        &mut o,
        "cutover_displaced_total",
        "counter",
        "Requests an env could not answer, by where they went (fallback answered, or failed).",
    );
    // FALLBACK is where displaced requests go; nothing is displaced from it.
    for env in [Env::Old, Env::New] {
        let tt = t(Scope::from(env));
        let _ = writeln!(
            o,
            "cutover_displaced_total{{env=\"{}\",to=\"fallback\"}} {}",
            env.as_str(),
            tt.displaced_to_fallback.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "cutover_displaced_total{{env=\"{}\",to=\"failed\"}} {}",
            env.as_str(),
            tt.displaced_failed.load(Relaxed)
        );
    }

    header(
        &mut o,
        "cutover_fallback_retries_total",
        "counter",
        "Requests the proxy retried on FALLBACK.",
    );
    let _ = writeln!(
        o,
        "cutover_fallback_retries_total {}",
        metrics.global.retries.load(Relaxed)
    );
    header(
        &mut o,
        "cutover_retry_budget_exhausted_total",
        "counter",
        "Retries refused by the retry budget.",
    );
    let _ = writeln!(
        o,
        "cutover_retry_budget_exhausted_total {}",
        metrics.global.budget_exhausted.load(Relaxed)
    );
    header(
        &mut o,
        "cutover_client_lane_requests_total",
        "counter",
        "Requests read and answered by the client side's own HTTP/1.1 lane (counted when their connection ends).",
    );
    let _ = writeln!(
        o,
        "cutover_client_lane_requests_total {}",
        metrics.global.client_lane_requests.load(Relaxed)
    );

    render_protection(&mut o, metrics);
    render_faults(&mut o, metrics);

    header(
        &mut o,
        "cutover_probes_total",
        "counter",
        "Synthetic probes per env and result.",
    );
    for env in Env::ALL {
        let tt = t(Scope::from(env));
        let _ = writeln!(
            o,
            "cutover_probes_total{{env=\"{}\",result=\"ok\"}} {}",
            env.as_str(),
            tt.probes_ok.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "cutover_probes_total{{env=\"{}\",result=\"failed\"}} {}",
            env.as_str(),
            tt.probes_failed.load(Relaxed)
        );
    }
    header(&mut o, "cutover_probe_up", "gauge", "1 when the last synthetic probe of the env succeeded, 0 when it failed; absent before the first probe.");
    for env in Env::ALL {
        match t(Scope::from(env)).last_probe.load(Relaxed) {
            PROBE_NONE => {}
            last => {
                let up = u8::from(last != PROBE_FAIL);
                let _ = writeln!(o, "cutover_probe_up{{env=\"{}\"}} {up}", env.as_str());
            }
        }
    }

    header(
        &mut o,
        "cutover_gate_ok",
        "gauge",
        "1 unless the gate is failing (not enough traffic counts as 1).",
    );
    for g in &run.gates {
        let _ = writeln!(
            o,
            "cutover_gate_ok{{gate=\"{}\"}} {}",
            escape_label(&g.name),
            u8::from(g.ok)
        );
    }
    header(
        &mut o,
        "cutover_gate_value",
        "gauge",
        "The value each gate measured at its latest evaluation.",
    );
    for g in &run.gates {
        if let Some(v) = g.value {
            let _ = writeln!(
                o,
                "cutover_gate_value{{gate=\"{}\"}} {}",
                escape_label(&g.name),
                num(v)
            );
        }
    }

    header(
        &mut o,
        "cutover_run_state",
        "gauge",
        "1 for the run's current state, 0 for the others.",
    );
    for s in RunState::ALL {
        let _ = writeln!(
            o,
            "cutover_run_state{{state=\"{}\"}} {}",
            s.as_str(),
            u8::from(s == run.state)
        );
    }
    header(
        &mut o,
        "cutover_run_step",
        "gauge",
        "Current step of the run, 1-based; 0 before the first.",
    );
    let _ = writeln!(o, "cutover_run_step {}", run.step);
    header(
        &mut o,
        "cutover_weight_percent",
        "gauge",
        "Percent of users routed to NEW.",
    );
    let _ = writeln!(o, "cutover_weight_percent {}", num(run.weight_percent));
    super::mirror::render(&mut o, metrics);
    o
}

/// Herd protection: waiting-room answers, new-session refusals, drained tunnels, and the
/// admission limit in force.
fn render_protection(o: &mut String, metrics: &Metrics) {
    let t = |e: Env| &metrics.totals[Scope::from(e).index()];
    type Get = fn(&super::totals::ScopeTotals) -> u64;
    let counters: [(&str, &str, Get); 3] = [
        (
            "cutover_waiting_room_total",
            "Shed answers that were the waiting-room page (browsers), per env.",
            |t| t.waiting_room.load(Relaxed),
        ),
        (
            "cutover_new_sessions_limited_total",
            "New connections and tunnels refused by the env's new-session rate (also in shed).",
            |t| t.sessions_limited.load(Relaxed),
        ),
        (
            "cutover_tunnels_drained_total",
            "Tunnels closed (WebSocket 1012) so their users reconnect to their new env.",
            |t| t.tunnels_drained.load(Relaxed),
        ),
    ];
    for (name, help, get) in counters {
        header(o, name, "counter", help);
        for env in Env::ALL {
            let _ = writeln!(o, "{name}{{env=\"{}\"}} {}", env.as_str(), get(t(env)));
        }
    }
    header(
        o,
        "cutover_admission_limit",
        "gauge",
        "Requests in flight an env admits right now (fixed or adaptive); absent when unlimited.",
    );
    for env in Env::ALL {
        match t(env).admission_limit.load(Relaxed) {
            0 => {}
            v => {
                let _ = writeln!(o, "cutover_admission_limit{{env=\"{}\"}} {v}", env.as_str());
            }
        }
    }
}

/// Failed exchanges that were not an env's fault: the client's, and the proxy's own.
fn render_faults(o: &mut String, metrics: &Metrics) {
    header(
        o,
        "cutover_override_requests_total",
        "counter",
        "Requests forced to an env by the override header (smoke tests), by env and result; counted apart from the users' traffic, never in an env's scope.",
    );
    for env in Env::ALL {
        for (result, ok) in [("ok", true), ("error", false)] {
            let _ = writeln!(
                o,
                "cutover_override_requests_total{{env=\"{}\",result=\"{result}\"}} {}",
                env.as_str(),
                metrics.overrides_total(env, ok)
            );
        }
    }
    header(
        o,
        "cutover_client_errors_total",
        "counter",
        "Failed exchanges that were the client's fault (broken, aborted or too-slow body, bad request), by kind; never counted in an env's errors nor in users.",
    );
    for k in ClientFault::ALL {
        let _ = writeln!(
            o,
            "cutover_client_errors_total{{kind=\"{}\"}} {}",
            k.as_str(),
            metrics.client_errors_total(k)
        );
    }
    header(
        o,
        "cutover_proxy_errors_total",
        "counter",
        "Failed exchanges that were the proxy's own fault (out of file handles, local ports or kernel memory), by kind; never counted in an env's errors.",
    );
    for k in ProxyFault::ALL {
        let _ = writeln!(
            o,
            "cutover_proxy_errors_total{{kind=\"{}\"}} {}",
            k.as_str(),
            metrics.proxy_errors_total(k)
        );
    }
    header(
        o,
        "cutover_tls_handshakes_total",
        "counter",
        "TLS handshakes on the users' listener, by result (done, failed, timeout, plain_http: a plain-HTTP request answered 400).",
    );
    for h in Handshake::ALL {
        let _ = writeln!(
            o,
            "cutover_tls_handshakes_total{{result=\"{}\"}} {}",
            h.as_str(),
            metrics.handshakes_total(h)
        );
    }
}

/// `cutover_tunnels_to_move`: tunnels still on an env their user no longer belongs to. Kept
/// apart from [`RunGauges`] because the proxy, not the run, knows it.
pub fn render_tunnels_to_move(n: u64) -> String {
    let mut o = String::with_capacity(160);
    header(
        &mut o,
        "cutover_tunnels_to_move",
        "gauge",
        "Open tunnels whose user now belongs to the other env, still to be drained.",
    );
    let _ = writeln!(o, "cutover_tunnels_to_move {n}");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        let run = RunGauges {
            gates: vec![GateGauge {
                name: "say \"hi\"\n".into(),
                ok: false,
                value: Some(f64::INFINITY),
            }],
            ..Default::default()
        };
        let text = render_prometheus(&Metrics::new(), &run);
        assert!(
            text.contains("cutover_gate_ok{gate=\"say \\\"hi\\\"\\n\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("cutover_gate_value{gate=\"say \\\"hi\\\"\\n\"} +Inf\n"));
        assert!(text.lines().all(|l| !l.is_empty()));
    }
}
