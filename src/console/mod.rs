//! The operator's terminal dashboard (`cutover console`), built model–update–view.
//!
//! Owns: the console only. It talks to the server exclusively through [`crate::client::Client`]
//! (status polls, the event stream, actions), never to the store or the orchestrator, so it works
//! against any `cutover serve` it can reach and shows exactly what the API says.
//!
//! # Layout
//!
//! - [`app`]: the model — one plain [`App`] value (last status or lost link, sparkline history,
//!   events, mode, flash) and how background results ([`Feed`]) fold into it.
//! - [`history`]: per-scope error rate and p99 kept from successive statuses, for sparklines.
//! - [`mod@update`]: the pure update step, [`update()`]: an [`Action`] changes the app and may return
//!   the [`Request`] (API call) to make.
//! - [`keys`]: key presses to actions, per mode.
//! - [`view`]: `impl Widget for &App` — the whole screen drawn from the value, one file per panel.
//! - `live`: the background poller/follower, request sending and the draw loop.
//! - `term`: raw mode and the alternate screen, restored on exit, error and panic.
//!
//! Why this shape: every screen and every key sequence can be tested from a plain value (see
//! `tests/console_snapshots.rs`), and the only code that waits on the network runs in tasks
//! that report through a channel, so a dead server never freezes the screen.

pub mod app;
pub mod history;
pub mod keys;
mod live;
mod term;
pub mod update;
pub mod view;

use thiserror::Error;

pub use app::{App, Confirm, Conn, EnvRow, Failure, Feed, Flash, FlashLevel, Mode};
pub use keys::action_for;
pub use update::{update, Action, Request};

use crate::client::Client;

#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error(
        "the console needs an interactive terminal (stdin and stdout are not one); \
         use `cutover status` for scripts"
    )]
    NotATerminal,
    #[error("terminal error: {0}")]
    Terminal(#[from] std::io::Error),
    #[error("keyboard input stopped unexpectedly")]
    InputClosed,
}

/// Runs the dashboard until the operator quits. `client` should carry the actor `console`.
///
/// Takes over the terminal (raw mode, alternate screen) and gives it back on return, on error and
/// on panic. Must run inside a tokio runtime (multi-threaded or current-thread).
pub async fn run(client: Client) -> Result<(), ConsoleError> {
    if !term::is_interactive() {
        return Err(ConsoleError::NotATerminal);
    }
    let mut guard = term::enter()?;
    let result = live::run_loop(&mut guard.terminal, client).await;
    drop(guard);
    result
}

#[cfg(test)]
mod tests;
