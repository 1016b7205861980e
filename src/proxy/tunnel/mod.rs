//! Open WebSocket/Upgrade tunnels: after the env's `101`, until either side closes.
//!
//! Owns: the registry of open tunnels and their users ([`registry`], [`Tunnels`]), the bytes
//! both ways and the polite close ([`pipe`], with just enough of RFC 6455 in [`wsframe`]),
//! and the drain that moves tunnels whose user now belongs to the other env ([`drain`]).
//!
//! Must not touch: the handshake (the handler's `upgrade` layer), admission or anything of a
//! request; it reads the router only as a request does.

pub(crate) mod drain;
pub(crate) mod pipe;
pub(crate) mod registry;
pub(crate) mod wsframe;

pub use registry::Tunnels;
