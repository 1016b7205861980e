//! Tunnels.
pub mod drain;
pub mod pipe;
pub mod registry;
pub mod wsframe;

pub use registry::Tunnels;
