//! `cutover demo` and the simulated environments it (and the tests) run against: the incidents
//! `cutover` answers, replayed and survived on one machine.
//!
//! Owns: [`upstream`], a real HTTP/WebSocket server that plays an environment with tunable
//! faults, and [`capacity`], its load model (latency rising with concurrency, a pool that times
//! out, a per-instance connection limit); [`world`], OLD/NEW/FALLBACK built from those;
//! [`users`], a seeded population of naive and good clients, short requests and WebSockets;
//! [`scenario`], the incidents; [`setup`], the plan and config text handed to the server;
//! [`director`], the scenario's timeline and end rule (pure); [`runner`], the run itself;
//! [`summary`] and [`headless`], what is printed (the open-file limit it needs is raised by
//! [`crate::rlimit`]).
//!
//! Must not touch: the proxy's internals — simulated environments and users talk to cutover
//! only over loopback sockets, and the demo reads the run only through the control API client,
//! like real ones would. The server is the real one (`crate::serve::run`).

pub mod capacity;
pub mod director;
pub mod headless;
pub mod runner;
pub mod scenario;
pub mod setup;
pub mod summary;
pub mod upstream;
pub mod users;
pub mod world;

use std::time::Duration;

use thiserror::Error;

pub use director::Ending;
pub use scenario::Scenario;
pub use setup::Protection;
pub use summary::Summary;

use crate::client::ClientError;
use crate::config::ConfigError;
use crate::serve::ServeError;

/// What `cutover demo` was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    pub scenario: Scenario,
    /// Progress lines and a summary instead of the console.
    pub headless: bool,
    pub users: usize,
    /// Time compression of the plan's holds, the rollback ramp and the scenario's timeline.
    pub speed: f64,
    /// Seed of every random choice the users make.
    pub seed: u64,
    /// A headless run ends by this time whatever the state.
    pub time_limit: Duration,
    /// Run the scenario's herd protection (admission control, new-session rates, waiting
    /// room); `false` (`--no-protection`) runs the very same scenario without it.
    pub protection: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            scenario: Scenario::ConnectionLimit,
            headless: false,
            users: 200,
            speed: 1.0,
            seed: 7,
            time_limit: Duration::from_secs(85),
            protection: true,
        }
    }
}

pub const MAX_USERS: usize = 2000;
pub const SPEEDS: std::ops::RangeInclusive<f64> = 0.25..=10.0;

impl DemoOptions {
    fn validate(&self) -> Result<(), DemoError> {
        if self.users == 0 || self.users > MAX_USERS {
            return Err(DemoError::Users(self.users));
        }
        if !SPEEDS.contains(&self.speed) {
            return Err(DemoError::Speed(self.speed));
        }
        if !self.protection && !self.scenario.wants_admission() {
            return Err(DemoError::NoProtection(self.scenario));
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum DemoError {
    #[error("--users must be between 1 and {MAX_USERS}, got {0}")]
    Users(usize),
    #[error("--speed must be between 0.25 and 10, got {0}")]
    Speed(f64),
    #[error(
        "--no-protection only applies to --scenario herd: scenario {0} runs without herd \
         protection anyway"
    )]
    NoProtection(Scenario),
    #[error("cannot start the simulated environments: {0}")]
    World(std::io::Error),
    #[error("cannot prepare the demo's temporary directory: {0}")]
    TempDir(std::io::Error),
    #[error("the generated config was refused:\n{0}")]
    Config(ConfigError),
    #[error("cutover did not start: {0}")]
    Serve(ServeError),
    #[error("cutover stopped before it was ready")]
    ServerGone,
    #[error("control API: {0}")]
    Client(ClientError),
}

/// Run the demo with its output on stdout until it ends by itself or on Ctrl-C.
pub async fn run(opts: DemoOptions) -> Result<Summary, DemoError> {
    let mut out = std::io::stdout();
    runner::run_with(opts, crate::serve::signal(), &mut out).await
}
