//! Foresight: what a plan would decide on recorded traffic, and whether a rollback is still
//! survivable before more users move.
//!
//! Owns: the recorded-tick format ([`record`]: one analysis tick's figures and weight, the line
//! format of traffic files), the rollback headroom estimate and the hold it causes
//! ([`headroom`]), and the virtual-time replay of a plan ([`simulate`]). Pure core, like the
//! analyzer and the machine it drives: no tokio, clock, store or filesystem — the driver
//! records through the store, the CLI reads and writes files (tests/layering.rs checks this).

pub mod headroom;
pub mod record;
pub mod simulate;

pub use headroom::{Capacity, Headroom};
pub use record::{ScopeRecord, TickRecord};
pub use simulate::{simulate, Approvals, Decision, Simulation};
