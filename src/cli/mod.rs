//! The command line: flags, sub-commands, and their dispatch to the library.
//!
//! Owns: argument parsing, finding the control API and its token, turning results into exit
//! codes and human or `--json` output. Must not touch: server internals — operator commands go
//! through [`crate::client`] like any other client.

pub mod config_check;
pub mod foresight;
mod ops;
pub mod plan_check;
mod render;
pub mod store_migrate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Move the users of a live service from an old environment to a new one without an outage"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the control API.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// Control API URL, http:// or https:// [default: the config's admin.addr (https:// when
    /// it has admin.tls_cert), else http://127.0.0.1:9900]
    #[arg(long, env = "CUTOVER_ADMIN", global = true)]
    pub admin: Option<String>,
    /// File holding the bearer token (else CUTOVER_TOKEN, else the config's token)
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Server config to find the admin address and token from
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// PEM file of the CA that signed an https:// admin URL's certificate (added to the
    /// system's roots)
    #[arg(long, env = "CUTOVER_CA_FILE", global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Machine-readable JSON output
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy, the orchestrator and the control API.
    Serve {
        #[arg(long, default_value = "cutover.toml")]
        config: PathBuf,
    },
    /// Check server config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Work with the plan store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Work with plan files.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Start a run of PLAN_FILE.
    Start {
        plan_file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show the state of the run and the environments.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Pause the run where it is.
    Pause(ActionArgs),
    /// Resume a paused run.
    Resume(ActionArgs),
    /// Approve the step that awaits approval.
    Approve(ActionArgs),
    /// Roll back to OLD (ramped as the plan says).
    Rollback(ActionArgs),
    /// Stop the run; the weight stays where it is.
    Abort(ActionArgs),
    /// Set the share of users on NEW (percent); during a run this also pauses it.
    SetWeight {
        pct: f64,
        /// Reach the weight over this long at a constant rate (e.g. `2m`) instead of at once
        #[arg(long)]
        ramp: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the event log (or follow it live).
    Events {
        /// Only events after this id
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Keep printing new events as they happen
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the plans in the store.
    Plans {
        #[command(flatten)]
        conn: Conn,
    },
    /// Recorded metrics: `metrics export` for `plan simulate`.
    Metrics {
        #[command(subcommand)]
        command: MetricsCommand,
    },
    /// The terminal dashboard.
    Console {
        #[command(flatten)]
        conn: Conn,
    },
    /// The whole system on this machine: simulated environments and users, the real proxy and
    /// control API, the demo plan, and an incident replayed (see docs/demo.md).
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// clean, connection-limit, half-capacity, herd or shadow
    #[arg(long, default_value = "connection-limit")]
    pub scenario: crate::demo::Scenario,
    /// Print a progress line per second and a summary instead of the console
    #[arg(long)]
    pub headless: bool,
    /// Also write the summary as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Simulated users
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Time compression of the plan's holds, the rollback ramp and the scenario's timeline
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Seed of the users' random choices
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Run the herd scenario without the proxy's herd protection (admission control,
    /// new-session rates, waiting room), so the envs take the full herd; for comparison
    #[arg(long)]
    pub no_protection: bool,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    /// Why (recorded in the event log)
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Validate plans: exit 0, or non-zero with `file:line:col:` errors.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replay PLAN on a recorded (or written) traffic file through the real analyzer and
    /// state machine, in virtual time, and print each decision.
    Simulate {
        plan: PathBuf,
        /// The traffic: one JSON tick a line (`cutover metrics export` writes it)
        #[arg(long)]
        traffic: PathBuf,
        /// Approvals given at once (all) or never (none)
        #[arg(long, value_enum, default_value = "all")]
        approvals: ApprovalsArg,
        /// OLD's capacity in requests per second, for the headroom check ([envs.old]
        /// capacity_rps)
        #[arg(long, value_name = "RPS")]
        old_capacity: Option<f64>,
        /// FALLBACK's capacity in requests per second ([envs.fallback] capacity_rps)
        #[arg(long, value_name = "RPS")]
        fallback_capacity: Option<f64>,
        /// Machine-readable JSON output
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Write the recorded analysis ticks as JSON lines (a traffic file for `plan simulate`).
    Export {
        /// Only the ticks of run N (from its start to its end)
        #[arg(long, conflicts_with = "since")]
        run: Option<u64>,
        /// Only ticks since T: a duration back from now (`2h`), a time
        /// (`2026-12-05T14:00:00Z`) or ms since the epoch
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `--approvals`: what `plan simulate` does when a step asks for an approval.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ApprovalsArg {
    /// Approve at once, as an operator would
    All,
    /// Never approve: the simulation stops at the first approval
    None,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a single instance's sled store (stopped) into a new etcd prefix, for a fleet
    /// (docs/fleet.md).
    Migrate {
        /// `sled:PATH`: the `[store] path` of the instance
        #[arg(long, value_name = "sled:PATH")]
        from: String,
        /// `etcd:ENDPOINT[,ENDPOINT...]/PREFIX`, e.g. etcd:http://10.0.0.7:2379/cutover/shop
        #[arg(long, value_name = "etcd:ENDPOINTS/PREFIX")]
        to: Option<String>,
        /// Take the target (with its TLS and auth keys) from this config's [store] instead
        #[arg(long, value_name = "FILE", conflicts_with = "to")]
        to_config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate configs as `serve` reads them: exit 0, or non-zero with every problem of each
    /// file as `file:line:col:` lines.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(
        cli.command,
        Command::Console { .. } | Command::Demo(_)
    ));
    match cli.command {
        Command::Plan {
            command: PlanCommand::Check { files },
        } => {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            if plan_check::check_files(&files, &mut out, &mut err) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Config {
            command: ConfigCommand::Check { files },
        } => {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            if config_check::check_files(&files, &mut out, &mut err) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Store {
            command:
                StoreCommand::Migrate {
                    from,
                    to,
                    to_config,
                },
        } => runtime(async move {
            let run = async {
                let from = store_migrate::parse_from(&from)?;
                let target = store_migrate::target(to.as_deref(), to_config.as_deref())?;
                store_migrate::migrate(&from, &target).await
            };
            match run.await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
        Command::Plan {
            command:
                PlanCommand::Simulate {
                    plan,
                    traffic,
                    approvals,
                    old_capacity,
                    fallback_capacity,
                    json,
                },
        } => foresight::simulate_files(&foresight::SimulateArgs {
            plan: &plan,
            traffic: &traffic,
            approvals: match approvals {
                ApprovalsArg::All => crate::foresight::Approvals::All,
                ApprovalsArg::None => crate::foresight::Approvals::None,
            },
            capacity: crate::foresight::Capacity {
                old: old_capacity,
                fallback: fallback_capacity,
            },
            json,
        }),
        Command::Metrics {
            command: MetricsCommand::Export { run, since, conn },
        } => runtime(async move { foresight::export(&conn, run, since.as_deref()).await }),
        Command::Serve { config } => runtime(ops::serve(config)),
        Command::Demo(args) => runtime(ops::demo(args)),
        other => runtime(ops::operator(other)),
    }
}

fn runtime(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "off" } else { "info" };
    let filter = EnvFilter::try_from_env("CUTOVER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
