//! Plans as code: the model, TOML parsing, and validation with `file:line:col` diagnostics.
//!
//! Owns: turning plan text into a validated [`Plan`] or a list of positioned errors. Pure: no
//! I/O beyond what the caller hands in (text and a file name for messages).

pub mod model;

pub use model::*;
