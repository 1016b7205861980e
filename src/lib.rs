//! `cutover` moves the users of a live service from an OLD environment to a NEW one without an
//! outage: a sticky, weighted reverse proxy in front of old, new and a fallback pool, driven by a
//! scripted plan, judged by what users actually experience, and durable across restarts.
//!
//! # Layout
//!
//! From the bottom up; a part imports only from parts listed before it (except where noted),
//! and `tests/layering.rs` checks the pure core and the imports that once ran the wrong way.
//!
//! The shared words and the pure core (data and time in, decisions out; no tokio, hyper, sled,
//! wall clock or filesystem):
//!
//! - [`vocab`]: the words every layer shares — run states, event actions, gate verdicts,
//!   `on_fail` — with their one wire spelling.
//! - [`diag`]: source positions and "did you mean" helpers for config and plan errors.
//! - [`router`]: user key, stable bucket hash, the routing table; the shared snapshot cell
//!   (`router::publish`, the one part that uses tokio, for its change signal).
//! - [`plan`]: plan model, TOML parsing and validation with `file:line:col` diagnostics (it
//!   reads metric names from [`metrics`]).
//! - [`analyzer`]: pure gate evaluation over window snapshots from [`metrics`], returning
//!   domain reports; plus the synthetic probe task.
//! - `orchestrator::machine`: the run's pure state machine.
//! - [`foresight`]: recorded ticks, rollback headroom, and `plan simulate`'s replay of a plan
//!   through the analyzer and the machine in virtual time.
//!
//! Above the core:
//!
//! - [`shard`]: per-worker copies of the counters every request bumps (metrics, retry budget,
//!   in-flight counts), so two cores never write the same cache line.
//! - [`api`]: JSON shapes of the control API, shared by server, CLI and console (plain data).
//! - [`metrics`]: lock-free counters and latency histograms per scope (old, new, fallback, users,
//!   and mirror: shadow traffic) in one-second ring buckets; window snapshots for the analyzer,
//!   Prometheus text.
//! - [`store`]: the sled-backed plan store: plans, runs, current state, event log.
//! - [`config`]: `cutover.toml` parsing and validation, one file per section (it still
//!   re-exports the proxy's `Limits` until that type moves under config).
//! - [`orchestrator`]: the machine, the task that drives it (store first, router second) and
//!   the status built from it at the edge.
//! - [`proxy`]: the data path — listeners, forwarding, upstream pools, fallback and retry budget,
//!   WebSocket tunnels, graceful drain. Reads one routing snapshot per request.
//! - [`reload`]: applies a changed config whole or not at all, and records it as an event.
//! - [`control`]: the admin HTTP API (token auth, routes, event stream).
//! - [`prometheus`]: the client query gates ask, from a task of its own once per interval.
//! - [`rlimit`]: the process's open-file limit, raised at start.
//! - [`resolve`]: upstream addresses as written (`https://host:port`), host names resolved
//!   again every interval.
//! - [`tls`]: certificates for the listeners and trust for `https://` envs (rustls).
//!
//! At the top:
//!
//! - [`serve`]: `cutover serve` — wires the parts into one process, runs it until a signal.
//! - [`client`]: the control API client used by the CLI and the console.
//! - [`console`]: the ratatui operator dashboard (talks only to the control API).
//! - [`demo`]: simulated environments and users for `cutover demo`.
//! - [`cli`]: the command line — flags, sub-commands, `plan check`, human and `--json` output.

pub mod analyzer;
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod console;
pub mod control;
pub mod demo;
pub mod diag;
pub mod fleet;
pub mod foresight;
pub mod metrics;
pub mod orchestrator;
pub mod plan;
pub mod prometheus;
pub mod proxy;
pub mod reload;
pub mod resolve;
pub mod rlimit;
pub mod router;
pub mod serve;
pub mod shard;
pub mod store;
pub mod tls;
pub mod vocab;
