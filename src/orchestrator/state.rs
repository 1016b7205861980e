//! The run's states (DESIGN.md contract names).

use serde::{Deserialize, Serialize};

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

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
