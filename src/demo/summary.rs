//! The demo's summary: what happened, from the event log and the users' own counters.
//!
//! Owns: the [`Summary`] (its JSON form is what `--summary-json` writes and the tests read),
//! building it from the run's events, and its text form. Must not touch: the server — the
//! events come from the control API through the client, like any operator would read them.

use std::fmt;

use serde::Serialize;

use super::director::Ending;
use super::headless::weight;
use super::scenario::Scenario;
use super::setup::Protection;
use super::world::WorldReport;
use crate::analyzer::judge::pct;
use crate::api::{Event, EventAction};
use crate::orchestrator::RunState;

/// Event actions that are not decisions: the run's start and each tick of a rollback ramp.
const NOT_DECISIONS: &[EventAction] = &[EventAction::Start, EventAction::Ramp];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub scenario: Scenario,
    pub story: String,
    pub final_state: RunState,
    pub final_weight: f64,
    pub max_weight: f64,
    /// Steps of the plan whose weight was reached.
    pub steps_reached: usize,
    pub steps_total: usize,
    pub duration_s: f64,
    pub ended_by: Ending,
    pub speed: f64,
    pub users: usize,
    pub seed: u64,
    /// Every HTTP request and WebSocket handshake the users made, retries included.
    pub user_requests: u64,
    pub user_failures: u64,
    /// `user_failures / user_requests`.
    pub user_error_rate: f64,
    /// Failed attempts that were shed with `Retry-After`.
    pub user_shed: u64,
    /// Median and 99th percentile of the users' short requests, from the first attempt until
    /// served or given up (retries and their waits included), in milliseconds.
    pub user_p50_ms: f64,
    pub user_p99_ms: f64,
    pub ws_dropped: u64,
    pub fault: Option<FaultReport>,
    /// Automatic and operator decisions, oldest first.
    pub decisions: Vec<Decision>,
    /// Each env's peak in-flight, its limit, and what it refused or failed.
    pub envs: WorldReport,
    /// Whether the proxy ran with admission control (the herd's protection).
    pub admission_control: bool,
    /// The herd protection: `not_used` by the scenario, `on`, `off` (`--no-protection`), or
    /// `unsupported` by this build.
    pub protection: Protection,
    /// No env ever had more requests in flight than its limit.
    pub peaks_within_limits: bool,
    /// Final states in which the scenario did what it shows; empty: no expectation.
    pub expected: Vec<RunState>,
    pub as_expected: Option<bool>,
    /// The gate of the first automatic pause or rollback, if any.
    pub stopped_by: Option<String>,
    /// The gates the scenario's story expects to stop the run (empty: any).
    pub deciding_gates: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultReport {
    pub what: String,
    /// Seconds from the start of the run.
    pub at_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Seconds from the start of the run.
    pub at_s: f64,
    /// Seconds from the fault's start (negative: before it); `None` without a fault.
    pub after_fault_s: Option<f64>,
    pub actor: String,
    pub action: EventAction,
    pub state: RunState,
    pub weight: f64,
    pub reason: String,
}

/// What the runner knows at the end, besides the events.
pub struct Facts {
    pub scenario: Scenario,
    pub final_state: RunState,
    pub final_weight: f64,
    pub step_weights: Vec<f64>,
    pub duration_s: f64,
    pub ended_by: Ending,
    pub speed: f64,
    pub users: usize,
    pub seed: u64,
    pub user_requests: u64,
    pub user_failures: u64,
    pub user_shed: u64,
    pub ws_dropped: u64,
    pub user_p50_ms: f64,
    pub user_p99_ms: f64,
    /// The fault's words and its start, in seconds from the start of the run.
    pub fault: Option<(String, f64)>,
    pub envs: WorldReport,
    pub protection: Protection,
    /// When the run started, milliseconds since the Unix epoch (events carry wall-clock time).
    pub started_at_ms: u64,
}

/// Build the summary from the facts and the run's events.
pub fn build(f: Facts, events: &[Event]) -> Summary {
    let at = |e: &Event| e.at_ms.saturating_sub(f.started_at_ms) as f64 / 1000.0;
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let fault_at = f.fault.as_ref().map(|(_, t)| *t);
    let decisions: Vec<Decision> = events
        .iter()
        .filter(|e| !NOT_DECISIONS.contains(&e.action))
        .map(|e| Decision {
            at_s: round(at(e)),
            after_fault_s: fault_at.map(|t| round(at(e) - t)),
            actor: e.actor.clone(),
            action: e.action,
            state: e.state,
            weight: e.weight,
            reason: e.reason.clone(),
        })
        .collect();
    let max_weight = events
        .iter()
        .map(|e| e.weight)
        .fold(f.final_weight, f64::max);
    let steps_reached = f
        .step_weights
        .iter()
        .filter(|w| **w <= max_weight + 1e-9)
        .count();
    let expected = f.scenario.expected();
    let peaks_within_limits = [&f.envs.old, &f.envs.new, &f.envs.fallback]
        .iter()
        .all(|e| e.peak_inflight <= e.limit);
    // The first automatic stop, and the gate behind it: the story is told by who stopped it.
    let stop = events.iter().find(|e| {
        e.actor == "analyzer" && matches!(e.action, EventAction::Pause | EventAction::Rollback)
    });
    let stopped_by = stop.and_then(|e| e.data["gate"].as_str().map(str::to_owned));
    let deciding = f.scenario.deciding_gates();
    let right_gate =
        deciding.is_empty() || stopped_by.as_deref().is_some_and(|g| deciding.contains(&g));
    let rolled_back = events.iter().any(|e| e.action == EventAction::Rollback);
    let as_expected = match f.scenario {
        // Cut short by a person: nothing to judge.
        _ if matches!(f.ended_by, Ending::Interrupted | Ending::Quit) => None,
        // The herd is survived when no env went past its limit, which needs the protection,
        // and it is demand, not a fault of NEW: no rollback.
        Scenario::Herd => f
            .protection
            .is_on()
            .then_some(peaks_within_limits && !rolled_back),
        _ => Some(expected.contains(&f.final_state) && right_gate),
    };
    Summary {
        scenario: f.scenario,
        story: f.scenario.story().to_owned(),
        final_state: f.final_state,
        final_weight: f.final_weight,
        max_weight,
        steps_reached,
        steps_total: f.step_weights.len(),
        duration_s: round(f.duration_s),
        ended_by: f.ended_by,
        speed: f.speed,
        users: f.users,
        seed: f.seed,
        user_requests: f.user_requests,
        user_failures: f.user_failures,
        user_error_rate: if f.user_requests == 0 {
            0.0
        } else {
            f.user_failures as f64 / f.user_requests as f64
        },
        user_shed: f.user_shed,
        user_p50_ms: (f.user_p50_ms * 10.0).round() / 10.0,
        user_p99_ms: (f.user_p99_ms * 10.0).round() / 10.0,
        ws_dropped: f.ws_dropped,
        fault: f.fault.map(|(what, at_s)| FaultReport {
            what,
            at_s: round(at_s),
        }),
        decisions,
        envs: f.envs,
        admission_control: f.protection.is_on(),
        protection: f.protection,
        peaks_within_limits,
        expected,
        as_expected,
        stopped_by,
        deciding_gates: deciding.iter().map(|g| (*g).to_owned()).collect(),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        writeln!(
            f,
            "── summary: {} ─ {} after {:.1}s ({})",
            self.scenario,
            self.final_state,
            self.duration_s,
            match self.ended_by {
                Ending::Settled => "settled",
                Ending::TimeLimit => "time limit",
                Ending::Interrupted => "interrupted",
                Ending::Quit => "quit",
            }
        )?;
        writeln!(
            f,
            "  steps     {} of {} reached, max weight {}%, now {}%",
            self.steps_reached,
            self.steps_total,
            weight(self.max_weight),
            weight(self.final_weight)
        )?;
        writeln!(
            f,
            "  users     {} users, {} requests, {} failed ({}%){}",
            self.users,
            self.user_requests,
            self.user_failures,
            pct(self.user_error_rate),
            if self.user_shed > 0 {
                format!(", {} shed with Retry-After", self.user_shed)
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "            waited p50 {:.0} ms, p99 {:.0} ms for an answer (retries included)",
            self.user_p50_ms, self.user_p99_ms
        )?;
        match &self.fault {
            Some(fr) => writeln!(f, "  fault     at {:.1}s: {}", fr.at_s, fr.what)?,
            None => writeln!(f, "  fault     none")?,
        }
        writeln!(f, "  decisions")?;
        if self.decisions.is_empty() {
            writeln!(f, "    (none)")?;
        }
        for d in &self.decisions {
            let after = d
                .after_fault_s
                .map(|s| format!(" ({s:+.1}s from the fault)"))
                .unwrap_or_default();
            writeln!(
                f,
                "    {:>5.1}s  {:<10} {:>5}%  by {}{after}",
                d.at_s,
                d.action,
                weight(d.weight),
                d.actor
            )?;
            writeln!(f, "            {}", d.reason)?;
        }
        writeln!(
            f,
            "  envs      peak in-flight / limit: old {}/{}, new {}/{}, fallback {}/{}",
            self.envs.old.peak_inflight,
            self.envs.old.limit,
            self.envs.new.peak_inflight,
            self.envs.new.limit,
            self.envs.fallback.peak_inflight,
            self.envs.fallback.limit
        )?;
        let refused = |r: &super::world::EnvReport| r.rejected + r.pool_timeouts;
        writeln!(
            f,
            "            refused or timed out: old {}, new {}, fallback {}",
            refused(&self.envs.old),
            refused(&self.envs.new),
            refused(&self.envs.fallback)
        )?;
        match self.protection {
            Protection::NotUsed => {}
            Protection::On => writeln!(
                f,
                "  admission on (max_inflight, queue, new sessions per second)"
            )?,
            Protection::Off => writeln!(
                f,
                "  admission OFF (--no-protection): the envs took the full herd"
            )?,
            Protection::Unsupported => writeln!(
                f,
                "  admission OFF: this build's proxy does not know the admission-control keys"
            )?,
        }
        match self.as_expected {
            Some(true) => writeln!(f, "  outcome   as the scenario expects"),
            Some(false) if self.scenario == Scenario::Herd && !self.peaks_within_limits => {
                writeln!(f, "  outcome   NOT as expected: an env went past its limit")
            }
            Some(false) if self.scenario == Scenario::Herd => writeln!(
                f,
                "  outcome   NOT as expected: the herd rolled the run back (demand is not a fault of NEW)"
            ),
            Some(false)
                if !self.deciding_gates.is_empty()
                    && self
                        .stopped_by
                        .as_ref()
                        .is_none_or(|g| !self.deciding_gates.contains(g)) =>
            {
                writeln!(
                    f,
                    "  outcome   NOT as expected: stopped by {}, the story expects {}",
                    self.stopped_by
                        .as_deref()
                        .map_or("no gate".to_owned(), |g| format!("gate \"{g}\"")),
                    self.deciding_gates.join(" or ")
                )
            }
            Some(false) => writeln!(
                f,
                "  outcome   NOT as expected: wanted {}",
                self.expected
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            None if self.protection == Protection::Off => writeln!(
                f,
                "  outcome   not judged: the herd ran without protection, for comparison"
            ),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, at_ms: u64, action: EventAction, weight: f64, state: RunState) -> Event {
        Event {
            id,
            at_ms,
            actor: "analyzer".into(),
            action,
            reason: format!("{action} because"),
            run_id: Some(1),
            state,
            weight,
            data: serde_json::Value::Null,
        }
    }

    fn facts() -> Facts {
        Facts {
            scenario: Scenario::ConnectionLimit,
            final_state: RunState::Paused,
            final_weight: 50.0,
            step_weights: vec![10.0, 25.0, 50.0, 100.0],
            duration_s: 20.0,
            ended_by: Ending::Settled,
            speed: 1.0,
            users: 200,
            seed: 1,
            user_requests: 1000,
            user_failures: 10,
            user_shed: 0,
            ws_dropped: 0,
            user_p50_ms: 12.34,
            user_p99_ms: 456.78,
            fault: Some(("first reject".into(), 12.0)),
            envs: WorldReport::default(),
            protection: Protection::NotUsed,
            started_at_ms: 1_000_000,
        }
    }

    #[test]
    fn decisions_are_timed_from_the_start_and_the_fault() {
        let events = vec![
            event(1, 1_000_000, EventAction::Start, 0.0, RunState::Running),
            event(2, 1_005_000, EventAction::Advance, 10.0, RunState::Running),
            event(3, 1_010_000, EventAction::Advance, 50.0, RunState::Running),
            Event {
                data: serde_json::json!({ "gate": "fallback taking traffic" }),
                ..event(4, 1_014_500, EventAction::Pause, 50.0, RunState::Paused)
            },
        ];
        let s = build(facts(), &events);
        let actions: Vec<&str> = s.decisions.iter().map(|d| d.action.as_str()).collect();
        assert_eq!(actions, ["advance", "advance", "pause"]);
        assert_eq!(s.decisions[2].at_s, 14.5);
        assert_eq!(s.decisions[2].after_fault_s, Some(2.5));
        assert_eq!(s.decisions[0].after_fault_s, Some(-7.0));
        assert_eq!((s.max_weight, s.steps_reached, s.steps_total), (50.0, 3, 4));
        assert!((s.user_error_rate - 0.01).abs() < 1e-12);
        assert_eq!(s.as_expected, Some(true));
        let text = s.to_string();
        assert!(text.contains("pause"), "{text}");
        assert!(text.contains("+2.5s from the fault"), "{text}");
    }

    /// Issue 19 §2: the summary tells the story as it happened — a connection limit stopped
    /// by NEW's own error gate is not the story, whatever the end state.
    #[test]
    fn a_stop_by_the_wrong_gate_is_not_as_expected() {
        let stop = |gate: &str| {
            vec![Event {
                data: serde_json::json!({ "gate": gate }),
                ..event(
                    1,
                    1_010_000,
                    EventAction::Rollback,
                    50.0,
                    RunState::RollingBack,
                )
            }]
        };
        let facts_at = |state| Facts {
            final_state: state,
            ..facts()
        };
        let s = build(facts_at(RunState::RolledBack), &stop("new errors"));
        assert_eq!(s.as_expected, Some(false));
        assert_eq!(s.stopped_by.as_deref(), Some("new errors"));
        let text = s.to_string();
        assert!(
            text.contains("NOT as expected: stopped by gate \"new errors\", the story expects"),
            "{text}"
        );
        let s = build(facts_at(RunState::Paused), &stop("new turning users away"));
        assert_eq!(s.as_expected, Some(true));
        // The herd: a rollback is never the story, even with every env within its limit.
        let herd = Facts {
            scenario: Scenario::Herd,
            protection: Protection::On,
            ..facts_at(RunState::RolledBack)
        };
        let s = build(herd, &stop("users errors"));
        assert_eq!(s.as_expected, Some(false));
        assert!(
            s.to_string().contains("the herd rolled the run back"),
            "{s}"
        );
    }

    #[test]
    fn the_json_names_the_contract_fields() {
        let s = build(facts(), &[]);
        let v = serde_json::to_value(&s).expect("json");
        for key in [
            "scenario",
            "final_state",
            "max_weight",
            "steps_reached",
            "user_error_rate",
            "decisions",
            "envs",
            "admission_control",
            "protection",
            "user_p50_ms",
            "user_p99_ms",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert_eq!(v["scenario"], "connection-limit");
        assert_eq!(v["final_state"], "paused");
        assert!(v["envs"]["new"]["peak_inflight"].is_u64());
        assert_eq!(v["protection"], "not_used");
        assert_eq!(v["user_p99_ms"], 456.8);
    }

    #[test]
    fn a_herd_without_protection_is_reported_not_judged() {
        let mut f = facts();
        f.scenario = Scenario::Herd;
        f.protection = Protection::Off;
        f.envs.old.peak_inflight = 300;
        f.envs.old.limit = 40;
        let s = build(f, &[]);
        assert_eq!((s.admission_control, s.peaks_within_limits), (false, false));
        assert_eq!(s.as_expected, None);
        let text = s.to_string();
        assert!(text.contains("--no-protection"), "{text}");
        assert!(text.contains("not judged"), "{text}");
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["protection"], "off");

        let mut f = facts();
        f.scenario = Scenario::Herd;
        f.protection = Protection::On;
        assert_eq!(build(f, &[]).as_expected, Some(true));
    }
}
