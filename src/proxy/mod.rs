//! The data path: every user request of a migration passes through here.
//!
//! Five rooms, each owning one responsibility, over a floor every room may use:
//!
//! - [`client`]: the client side — the listener and its worker threads, cutover's own
//!   HTTP/1.1 lane in front of hyper's server, connection accounting and the connection cap,
//!   the idle close, head timeout and drain ([`client::supervise`]), the refusal of requests
//!   framed two ways ([`client::framing`], following the bytes), the refusals before routing,
//!   and the reloadable state ([`Live`]). Must not touch: what a request does (it hands each
//!   one to the handler) or upstreams.
//! - `handler`: one request in layers — route (the override header, the user key), admit
//!   (new-session rate, admission), attempt, fall back, record — plus forced requests (smoke
//!   tests), the upgrade handshake, the shed answer and the proxy's own answers; it owns
//!   [`Proxy`], what every request shares. Must not touch: sockets or connections.
//! - [`upstream`]: forwarding to an env — one attempt and whose fault its failure is, pools
//!   and their balancing, keep-alive connections (hyper's and the hand-spoken HTTP/1.1 ones),
//!   the request timeout's sweeper, and the bodies streamed both ways with the client body's
//!   deadline. Must not touch: routing, answers to the client or users' metrics.
//! - `protect`: herd protection (docs/protection.md) — admission per env with its adaptive
//!   limit, new-session rates and the retry budget. Decisions only: must not touch requests,
//!   answers or metrics of requests.
//! - `tunnel`: open WebSocket/Upgrade tunnels — their registry, the bytes both ways, the
//!   polite close and the drain that moves them after a weight change. Must not touch: the
//!   handshake (the handler's) or anything of a request.
//!
//! The floor: [`clock`] (a coarse clock for bookkeeping) and `headers` (hop-by-hop and
//! forwarding header rules).
//!
//! Imports run one way: `client` → `handler` → `tunnel` and `upstream` → `protect`, each
//! room also using the floor; never back up. Items are `pub(crate)` unless something outside
//! the crate (serve's binary, tests, examples, fuzz targets) needs them.
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
