//! The command line: flags, sub-commands, and their dispatch to the library.
//!
//! Owns: argument parsing, turning results into exit codes and human or `--json` output.
//! Must not touch: server internals — operator commands go through [`crate::client`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Move users from an old environment to a new one without an outage"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy, the orchestrator and the control API.
    Serve {
        #[arg(long, default_value = "cutover.toml")]
        config: std::path::PathBuf,
    },
    /// Work with plan files.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Validate plans: exit 0, or non-zero with `file:line:col:` errors.
    Check {
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { .. } => ExitCode::SUCCESS,
        Command::Plan {
            command: PlanCommand::Check { files },
        } => {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            if crate::plan::check_files(&files, &mut out, &mut err) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
