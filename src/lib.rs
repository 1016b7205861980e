//! `cutover` moves the users of a live service from an OLD environment to a NEW one without an
//! outage: a sticky, weighted reverse proxy in front of old, new and a fallback pool, driven by a
//! scripted plan, judged by what users actually experience, and durable across restarts.
//!
//! # Layout
//!
//! - [`router`]: the pure routing core — user key, stable bucket hash, the atomically swapped
//!   routing snapshot. No I/O.
//! - [`proxy`]: the data path — listeners, forwarding, upstream pools, fallback and retry budget,
//!   WebSocket tunnels, graceful drain. Reads one routing snapshot per request.
//! - [`metrics`]: lock-free counters and latency histograms per scope (old, new, fallback, users)
//!   in one-second ring buckets; window snapshots for the analyzer, Prometheus text.
//! - [`analyzer`]: pure gate evaluation over window snapshots, plus the synthetic probes.
//! - [`plan`]: plan model, TOML parsing and validation with `file:line:col` diagnostics.
//! - [`orchestrator`]: the run's pure state machine and the task that drives it (store first,
//!   router second).
//! - [`store`]: the sled-backed plan store: plans, runs, current state, event log.
//! - [`control`]: the admin HTTP API (token auth, routes, event stream).
//! - [`client`]: the control API client used by the CLI and the console.
//! - [`console`]: the ratatui operator dashboard (talks only to the control API).
//! - [`demo`]: simulated environments and users for `cutover demo`.
//! - [`config`]: `cutover.toml` parsing and validation; [`reload`] applies a changed one.
//! - [`api`]: JSON shapes of the control API, shared by server, CLI and console.
//! - [`diag`]: source positions and "did you mean" helpers for config and plan errors.
//! - [`rlimit`]: the process's open-file limit, raised at start.
//! - [`shard`]: per-worker copies of the counters every request bumps (metrics, retry budget,
//!   in-flight counts), so two cores never write the same cache line.

pub mod analyzer;
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod console;
pub mod control;
pub mod demo;
pub mod diag;
pub mod metrics;
pub mod orchestrator;
pub mod plan;
pub mod proxy;
pub mod reload;
pub mod rlimit;
pub mod router;
pub mod serve;
pub mod shard;
pub mod store;
pub mod vocab;
