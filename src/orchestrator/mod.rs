//! The orchestrator: the run's state machine and the task that drives it.
//!
//! Owns: [`machine`] (pure transitions, time passed in) and the driver task that evaluates
//! gates each interval, runs pre-step checks, and applies transitions — store first (flushed),
//! router second. Must not touch: the request path.

pub mod machine;
pub mod state;

pub use machine::{
    apply, tick, Command, Control, Effect, EventDraft, Rejection, Resume, ResumeTo, Run, Tick,
    Transition,
};
pub use state::RunState;
pub mod checks;
pub mod handle;

pub use handle::{Cmd, CommandError, Handle};
pub mod driver;
pub mod status;
