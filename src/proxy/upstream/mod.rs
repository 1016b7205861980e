//! Forwarding to an env.
pub mod attempt;
pub mod body;
pub mod body_watch;
pub mod conns;
pub mod deadlines;
pub mod h1;
pub mod pool;
pub mod rawconn;
