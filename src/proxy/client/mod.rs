//! The client side: everything between an accepted socket and the handler.
//!
//! Owns: the listener and its worker threads ([`workers`]), each connection's future (the
//! own HTTP/1.1 lane in [`lane`] and [`h1`], then hyper's server in [`server`], with the bytes
//! the lane read put back by [`rewind`]), connection accounting and the cap ([`conn`]), the
//! idle close, head timeout and drain ([`supervise`]), the screen against requests framed two
//! ways ([`screen`], following the bytes with [`framing`]), the refusals before routing
//! ([`refuse`]), hyper's settings from the config's limits ([`settings`]) and the reloadable
//! state ([`live`]).
//!
//! Must not touch: what a request does (the handler's: each request is handed to
//! [`crate::proxy::Proxy::handle`]) or the upstreams.

pub(crate) mod conn;
pub mod framing;
pub mod h1;
pub(crate) mod lane;
pub(crate) mod live;
pub(crate) mod refuse;
pub(crate) mod rewind;
pub(crate) mod screen;
pub(crate) mod server;
pub(crate) mod settings;
pub(crate) mod supervise;
pub(crate) mod workers;
