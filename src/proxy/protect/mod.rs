//! Herd protection (docs/protection.md).
pub mod admission;
pub mod budget;
pub mod gradient;
pub mod rate;
