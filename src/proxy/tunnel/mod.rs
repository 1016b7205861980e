//! Tunnels.
pub(crate) mod drain;
pub(crate) mod pipe;
pub mod registry;
pub(crate) mod wsframe;

pub use registry::Tunnels;
