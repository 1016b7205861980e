//! The command line: flags, sub-commands, and their dispatch to the library.
//!
//! Owns: argument parsing, turning results into exit codes and human or `--json` output.
//! Must not touch: server internals — operator commands go through [`crate::client`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cutover", version, about = "Move users from an old environment to a new one without an outage")]
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
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { .. } => ExitCode::SUCCESS,
    }
}
