//! Forwarding to an env.
pub(crate) mod attempt;
pub(crate) mod body;
pub(crate) mod body_watch;
pub(crate) mod conns;
pub(crate) mod deadlines;
pub mod h1;
pub(crate) mod pool;
pub(crate) mod rawconn;
