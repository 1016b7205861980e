//! The words every layer shares: a run's states, the actions of its event log, a gate's verdict
//! and what a failing gate does.
//!
//! Owns: these enums and their one spelling on the wire (serde `snake_case`, the same text in
//! the JSON API, the event log in the store, `--json` output and Prometheus labels). Must not
//! touch: anything else of the crate — this is the bottom layer, so the pure core, the API's
//! wire types and the edges can all depend on it without depending on each other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Writes `$t::as_str` through [`fmt::Formatter::pad`], so `{:<14}` and `{:.9}` apply.
macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    )*};
}

/// The states of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    #[default]
    Idle,
    Running,
    Paused,
    AwaitingApproval,
    RollingBack,
    RolledBack,
    Completed,
    Aborted,
}

impl RunState {
    pub const ALL: [RunState; 8] = [
        RunState::Idle,
        RunState::Running,
        RunState::Paused,
        RunState::AwaitingApproval,
        RunState::RollingBack,
        RunState::RolledBack,
        RunState::Completed,
        RunState::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Idle => "idle",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::AwaitingApproval => "awaiting_approval",
            RunState::RollingBack => "rolling_back",
            RunState::RolledBack => "rolled_back",
            RunState::Completed => "completed",
            RunState::Aborted => "aborted",
        }
    }

    /// A run in this state is still active (holds the one active-run slot).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RunState::Running
                | RunState::Paused
                | RunState::AwaitingApproval
                | RunState::RollingBack
        )
    }
}

/// What an entry of the event log records: a transition of the run, or a decision taken
/// outside it (a config reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    Start,
    Pause,
    Resume,
    Approve,
    Rollback,
    Abort,
    /// A manual weight, at once or ramped.
    Weight,
    ChecksPassed,
    ChecksFailed,
    /// The next step, after a served hold.
    Advance,
    /// The last step's hold served: the run completed.
    Complete,
    AwaitApproval,
    /// One move of a ramped weight (a rollback, a resume, `set-weight --ramp`).
    Ramp,
    /// A rollback reached weight 0.
    RolledBack,
    Reload,
    ReloadRejected,
    /// Shadow traffic: NEW answered copies unlike OLD (at most one such event per tick).
    MirrorMismatch,
}

impl EventAction {
    pub const ALL: [EventAction; 17] = [
        EventAction::Start,
        EventAction::Pause,
        EventAction::Resume,
        EventAction::Approve,
        EventAction::Rollback,
        EventAction::Abort,
        EventAction::Weight,
        EventAction::ChecksPassed,
        EventAction::ChecksFailed,
        EventAction::Advance,
        EventAction::Complete,
        EventAction::AwaitApproval,
        EventAction::Ramp,
        EventAction::RolledBack,
        EventAction::Reload,
        EventAction::ReloadRejected,
        EventAction::MirrorMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Start => "start",
            EventAction::Pause => "pause",
            EventAction::Resume => "resume",
            EventAction::Approve => "approve",
            EventAction::Rollback => "rollback",
            EventAction::Abort => "abort",
            EventAction::Weight => "weight",
            EventAction::ChecksPassed => "checks_passed",
            EventAction::ChecksFailed => "checks_failed",
            EventAction::Advance => "advance",
            EventAction::Complete => "complete",
            EventAction::AwaitApproval => "await_approval",
            EventAction::Ramp => "ramp",
            EventAction::RolledBack => "rolled_back",
            EventAction::Reload => "reload",
            EventAction::ReloadRejected => "reload_rejected",
            EventAction::MirrorMismatch => "mirror_mismatch",
        }
    }
}

/// What one gate saw in its latest evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    /// Judged and within its threshold (or passing without traffic by design).
    #[default]
    Ok,
    /// Judged and beyond its threshold.
    Failing,
    /// Too little evidence to judge.
    NotEnoughTraffic,
    /// A query gate that Prometheus did not answer (unreachable, slow, an error, a wrong
    /// shape): it cannot judge either, and the run holds, then pauses.
    NoAnswer,
}

impl GateVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            GateVerdict::Ok => "ok",
            GateVerdict::Failing => "failing",
            GateVerdict::NotEnoughTraffic => "not_enough_traffic",
            GateVerdict::NoAnswer => "no_answer",
        }
    }
}

/// What a gate does once it has failed `after` consecutive evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    #[default]
    Pause,
    Rollback,
}

impl OnFail {
    pub const ALL: [OnFail; 2] = [OnFail::Pause, OnFail::Rollback];

    pub fn as_str(self) -> &'static str {
        match self {
            OnFail::Pause => "pause",
            OnFail::Rollback => "rollback",
        }
    }
}

display_as_str!(RunState, EventAction, GateVerdict, OnFail);

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire spelling is `as_str`, both ways, for every word: the store's old events and
    /// the JSON API read exactly what they read before these were enums.
    #[test]
    fn serde_spells_every_word_as_as_str() {
        fn same<T>(all: &[T], as_str: fn(&T) -> &'static str)
        where
            T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug + fmt::Display,
        {
            for w in all {
                let json = serde_json::to_string(w).unwrap();
                assert_eq!(json, format!("\"{}\"", as_str(w)));
                assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), w);
                assert_eq!(w.to_string(), as_str(w));
            }
        }
        same(&RunState::ALL, |s| s.as_str());
        same(&EventAction::ALL, |a| a.as_str());
        same(
            &[
                GateVerdict::Ok,
                GateVerdict::Failing,
                GateVerdict::NotEnoughTraffic,
                GateVerdict::NoAnswer,
            ],
            |v| v.as_str(),
        );
        same(&OnFail::ALL, |o| o.as_str());
    }

    #[test]
    fn display_pads_like_a_str() {
        assert_eq!(format!("[{:<8}]", EventAction::Ramp), "[ramp    ]");
        assert_eq!(
            format!("[{:<9.9}]", EventAction::ReloadRejected),
            "[reload_re]"
        );
    }

    /// Every action the event log has ever been written with still reads.
    #[test]
    fn every_stored_action_reads() {
        let stored = [
            "start",
            "pause",
            "resume",
            "approve",
            "rollback",
            "abort",
            "weight",
            "checks_passed",
            "checks_failed",
            "advance",
            "complete",
            "await_approval",
            "ramp",
            "rolled_back",
            "reload",
            "reload_rejected",
        ];
        for s in stored {
            let a: EventAction = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(a.as_str(), s);
        }
        assert!(serde_json::from_str::<EventAction>("\"frobnicate\"").is_err());
    }
}
