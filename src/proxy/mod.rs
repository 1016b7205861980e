//! The data path: every user request of a migration passes through here.
//!
//! Owns: the client listener ([`server`]), per-request routing and forwarding ([`handler`]),
//! single attempts and their failure classes ([`attempt`]), upstream pools ([`upstream`],
//! [`connpool`], request timeouts in [`deadlines`]),
//! streamed bodies ([`body`]), header rules ([`headers`]), a coarse clock for bookkeeping
//! ([`clock`]), the retry budget ([`budget`]) and WebSocket/Upgrade tunnels ([`tunnel`]);
//! client limits ([`limits`], [`guard`], [`conn`]) with the idle close and the drain of
//! client connections ([`supervise`]), the refusal of requests framed two ways ([`screen`],
//! following the bytes with [`framing`]) and the reloadable state ([`live`]); and herd
//! protection (docs/protection.md): admission control per env ([`admission`], adaptive limit
//! in [`gradient`]), new-session rates ([`rate`]), the 503 / waiting-room answer ([`shed`])
//! and the tunnel drain that moves long-lived connections after a weight change ([`drain`],
//! closing in [`pipe`], framing in [`wsframe`]).
//!
//! Must not touch: the store, the analyzer or the orchestrator. A request reads one routing
//! snapshot (an atomic load), records into lock-free metrics, and never waits on anything but
//! its own upstream. Upstream addresses come only from the config, never from the request, so
//! no Host header or absolute URI can steer a request to the control listener or anywhere else.

pub mod client;
pub mod clock;
pub(crate) mod handler;
pub(crate) mod headers;
pub(crate) mod protect;
pub(crate) mod tunnel;
pub mod upstream;

pub use client::live::Live;
pub use client::server::{bind, serve, serve_live};
pub use client::workers::Workers;
pub use handler::Proxy;
