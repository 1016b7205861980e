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

/// A weight move in progress at a bounded pace: anything the machine moves by itself or on a
/// command other than a plan's own step (resuming to the step's weight, starting from a weight
/// the plan did not set, `set-weight --ramp`) walks from the weight users were on to `to` over
/// `over`, one tick at a time, instead of moving everyone at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub(super) from: Weight,
    pub(super) to: Weight,
    /// Move time served; does not grow while a move towards OLD holds for a degraded OLD.
    pub(super) elapsed: Duration,
    pub(super) over: Duration,
    /// What the move is for, e.g. `resume to step 1's 10%`.
    pub(super) why: String,
}

impl Move {
    pub(super) fn new(from: Weight, to: Weight, over: Duration, why: String) -> Self {
        Move {
            from,
            to,
            elapsed: Duration::ZERO,
            over,
            why,
        }
    }

    pub fn from(&self) -> Weight {
        self.from
    }

    pub fn to(&self) -> Weight {
        self.to
    }

    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    pub fn over(&self) -> Duration {
        self.over
    }

    pub fn why(&self) -> &str {
        &self.why
    }

    /// The weight after `elapsed` of the move.
    pub fn weight(&self) -> Weight {
        move_weight(self.from, self.to, self.elapsed, self.over)
    }
}

/// The weight `elapsed` into a move of length `over` from `from` to `to`, at a constant rate,
/// rounded towards `from` so it reaches `to` only at the end. `to` for a zero `over` or once
/// `elapsed >= over`.
pub fn move_weight(from: Weight, to: Weight, elapsed: Duration, over: Duration) -> Weight {
    if over.is_zero() || elapsed >= over || from == to {
        return to;
    }
    let (a, b) = (u128::from(from.bp()), u128::from(to.bp()));
    let dist = a.abs_diff(b);
    // elapsed < over, so moved < dist; u128 holds 10_000 × any Duration in nanoseconds.
    let moved = dist * elapsed.as_nanos() / over.as_nanos();
    let bp = if b < a { a - moved } else { a + moved };
    Weight::from_bp(u32::try_from(bp).unwrap_or(from.bp()))
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

#[cfg(test)]
mod move_tests {
    use super::*;

    #[test]
    fn a_move_is_linear_both_ways_and_ends_at_its_target() {
        let (a, b) = (Weight::from_bp(2000), Weight::from_bp(1000));
        let over = Duration::from_secs(10);
        assert_eq!(move_weight(a, b, Duration::ZERO, over), a);
        assert_eq!(move_weight(a, b, Duration::from_secs(5), over).bp(), 1500);
        assert_eq!(move_weight(b, a, Duration::from_secs(5), over).bp(), 1500);
        assert_eq!(move_weight(a, b, over, over), b);
        assert_eq!(move_weight(a, b, Duration::MAX, over), b);
        assert_eq!(move_weight(a, b, Duration::ZERO, Duration::ZERO), b);
        let w = move_weight(Weight::ZERO, Weight::FULL, Duration::MAX / 2, Duration::MAX);
        assert!((4999..=5000).contains(&w.bp()), "{w:?}");
    }
}
