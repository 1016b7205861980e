//! The orchestrator: the run's state machine and the task that drives it.
//!
//! Owns: [`machine`] (pure transitions, time passed in), [`driver`] (the one task that evaluates
//! gates each interval, runs pre-step [`checks`], and applies transitions — store first,
//! flushed; router second, with the shadow traffic [`mirror`] puts in force), the [`handle`] the control API talks to, and the [`status`] value.
//! flushed; router second), the [`handle`] the control API talks to, the [`status`] value, and
//! the [`recorder`] that keeps each analysis tick for `plan simulate`.
//! Must not touch: the request path.

pub mod checks;
pub mod driver;
pub mod handle;
pub mod machine;
pub mod mirror;
pub mod recorder;
pub mod status;

pub use crate::vocab::RunState;
pub use handle::{Cmd, CommandError, Handle};
pub use machine::{
    apply, tick, Command, Control, Effect, EventDraft, Rejection, Resume, ResumeTo, Run, Tick,
    Transition,
};
