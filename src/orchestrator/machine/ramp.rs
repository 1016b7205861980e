//! The rollback ramp: a constant-rate walk of the weight down to 0, as plain data.
//!
//! Stores the weight it started from and the ramp time served (not instants), so a restart
//! resumes the ramp exactly where it stood.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::router::Weight;

/// Progress of a rollback ramp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ramp {
    pub(super) from: Weight,
    /// Ramp time served; does not grow while the ramp holds for a degraded OLD.
    pub(super) elapsed: Duration,
    /// Why the rollback started.
    pub(super) cause: String,
}

impl Ramp {
    pub(super) fn new(from: Weight, cause: String) -> Self {
        Ramp {
            from,
            elapsed: Duration::ZERO,
            cause,
        }
    }

    /// The weight the ramp started from.
    pub fn from(&self) -> Weight {
        self.from
    }

    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    pub fn cause(&self) -> &str {
        &self.cause
    }
}

/// The weight `elapsed` into a ramp of length `ramp` that starts at `from`:
/// `from × (1 − elapsed / ramp)`, rounded up to a basis point so it only reaches 0 at the end.
/// Non-increasing in `elapsed`; 0 for a zero ramp or once `elapsed >= ramp`.
pub fn ramp_weight(from: Weight, elapsed: Duration, ramp: Duration) -> Weight {
    if ramp.is_zero() || elapsed >= ramp {
        return Weight::ZERO;
    }
    let from_bp = u128::from(from.bp());
    // elapsed < ramp, so drop < from_bp; u128 holds 10_000 × any Duration in nanoseconds.
    let drop = from_bp * elapsed.as_nanos() / ramp.as_nanos();
    Weight::from_bp(u32::try_from(from_bp - drop).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn ramp_is_linear_and_ends_at_zero() {
        let from = Weight::from_bp(5000);
        let ramp = secs(10.0);
        assert_eq!(ramp_weight(from, secs(0.0), ramp), from);
        assert_eq!(ramp_weight(from, secs(5.0), ramp).bp(), 2500);
        assert_eq!(ramp_weight(from, secs(9.0), ramp).bp(), 500);
        assert_eq!(ramp_weight(from, secs(10.0), ramp), Weight::ZERO);
        assert_eq!(ramp_weight(from, secs(99.0), ramp), Weight::ZERO);
    }

    #[test]
    fn ramp_reaches_zero_only_at_the_end() {
        let from = Weight::from_bp(1);
        let ramp = secs(10.0);
        assert_eq!(ramp_weight(from, secs(9.999), ramp).bp(), 1);
        assert_eq!(ramp_weight(from, secs(10.0), ramp).bp(), 0);
    }

    #[test]
    fn zero_ramp_is_at_once() {
        assert_eq!(
            ramp_weight(Weight::FULL, Duration::ZERO, Duration::ZERO),
            Weight::ZERO
        );
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        let w = ramp_weight(Weight::FULL, Duration::MAX / 2, Duration::MAX);
        assert!((5000..=5001).contains(&w.bp()), "{w:?}");
    }
}
