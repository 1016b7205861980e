//! Herd protection (docs/protection.md).
pub(crate) mod admission;
pub(crate) mod budget;
pub(crate) mod gradient;
pub(crate) mod rate;
