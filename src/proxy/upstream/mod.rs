//! Forwarding to an env: one attempt, the connections it goes out on and the bodies it carries.
//!
//! Owns: an attempt and whose fault its failure is ([`attempt`]), each env's pool and its
//! least-in-flight balancing ([`pool`]), keep-alive connections per upstream ([`conns`]) —
//! hyper's for requests with a body, asking for trailers, and upgrades, hand-spoken HTTP/1.1
//! ([`rawconn`], [`h1`]) for the rest, and multiplexed HTTP/2 ones for an env with
//! `protocol = "h2"` ([`h2`]) — the request timeout's sweeper ([`deadlines`]), and the bodies both ways
//! ([`body`]) with the client body's deadline ([`body_watch`]).
//!
//! Must not touch: routing, the proxy's answers to the client or users' metrics (the
//! handler's); it only holds an admission slot ([`crate::proxy::protect`]) until a body ends.

pub(crate) mod attempt;
pub(crate) mod body;
pub(crate) mod body_watch;
pub(crate) mod connect;
pub(crate) mod conns;
pub(crate) mod deadlines;
pub(crate) mod direct;
pub mod h1;
pub(crate) mod h2;
pub(crate) mod pool;
pub(crate) mod rawconn;
pub(crate) mod tap;
