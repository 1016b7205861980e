//! The client side.
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
