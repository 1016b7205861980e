//! The client side.
pub mod conn;
pub mod framing;
pub mod h1;
pub mod lane;
pub mod live;
pub mod refuse;
pub mod rewind;
pub mod screen;
pub mod server;
pub mod settings;
pub mod supervise;
pub mod workers;
