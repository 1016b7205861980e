//! How a simulated user's client retries: the naive way, or the good way.
//!
//! Owns: the retry and reconnect delays, as pure functions of the attempt number, the server's
//! `Retry-After` and a seeded random source. Must not touch: sockets or clocks — the callers
//! sleep. Naive clients are the herd of the incident: they retry at once, a few times in a row.
//! Good clients back off exponentially with jitter and never come back before `Retry-After`.

use std::time::Duration;

use rand::Rng;
use serde::Serialize;

/// Which way a user's client retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// Retries at once, up to [`NAIVE_RETRIES`] times, and ignores `Retry-After`.
    Naive,
    /// Jittered exponential backoff honouring `Retry-After`, up to [`GOOD_RETRIES`] times.
    Good,
}

pub const NAIVE_RETRIES: u32 = 3;
pub const GOOD_RETRIES: u32 = 5;
/// First backoff of a good client, doubled per failure up to [`BACKOFF_CAP`].
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
pub const BACKOFF_CAP: Duration = Duration::from_secs(4);
/// How long a naive client that gave up waits before it reconnects a dropped WebSocket.
pub const NAIVE_COOL_OFF: Duration = Duration::from_secs(2);

/// The delay before retry number `failures` (1 after the first failure) of one request, or
/// `None` when the client gives up on it.
pub fn retry_delay(
    kind: ClientKind,
    failures: u32,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Option<Duration> {
    match kind {
        ClientKind::Naive => (failures <= NAIVE_RETRIES).then_some(Duration::ZERO),
        ClientKind::Good => (failures <= GOOD_RETRIES).then(|| backoff(failures, retry_after, rng)),
    }
}

/// The delay before reconnect number `failures` of a long-lived connection: clients never give
/// up on it, they only pause longer.
pub fn reconnect_delay(
    kind: ClientKind,
    failures: u32,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    match kind {
        ClientKind::Naive if failures <= NAIVE_RETRIES => Duration::ZERO,
        ClientKind::Naive => NAIVE_COOL_OFF,
        ClientKind::Good => backoff(failures, retry_after, rng),
    }
}

/// "Equal jitter": half the exponential step plus a random part of the other half, and never
/// before the server's `Retry-After` (itself spread by up to a half, so a shed crowd does not
/// come back in one instant).
fn backoff(failures: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
    let step = BACKOFF_BASE
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let half = step / 2;
    let delay = half + half.mul_f64(rng.gen::<f64>());
    match retry_after {
        Some(ra) => delay.max(ra + (ra / 2).mul_f64(rng.gen::<f64>())),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn naive_clients_retry_at_once_then_give_up() {
        let mut rng = StdRng::seed_from_u64(1);
        for n in 1..=NAIVE_RETRIES {
            assert_eq!(
                retry_delay(ClientKind::Naive, n, Some(Duration::from_secs(5)), &mut rng),
                Some(Duration::ZERO)
            );
        }
        assert_eq!(
            retry_delay(ClientKind::Naive, NAIVE_RETRIES + 1, None, &mut rng),
            None
        );
        assert_eq!(
            reconnect_delay(ClientKind::Naive, NAIVE_RETRIES + 1, None, &mut rng),
            NAIVE_COOL_OFF
        );
    }

    #[test]
    fn good_clients_back_off_with_jitter_within_bounds() {
        let mut rng = StdRng::seed_from_u64(2);
        for n in 1..=GOOD_RETRIES {
            let step = BACKOFF_BASE.saturating_mul(1 << (n - 1)).min(BACKOFF_CAP);
            for _ in 0..100 {
                let d = retry_delay(ClientKind::Good, n, None, &mut rng).expect("retries");
                assert!(
                    d >= step / 2 && d <= step,
                    "attempt {n}: {d:?} vs step {step:?}"
                );
            }
        }
        assert_eq!(
            retry_delay(ClientKind::Good, GOOD_RETRIES + 1, None, &mut rng),
            None
        );
        let d = reconnect_delay(ClientKind::Good, 30, None, &mut rng);
        assert!(d <= BACKOFF_CAP, "{d:?}");
    }

    #[test]
    fn good_clients_never_come_back_before_retry_after() {
        let mut rng = StdRng::seed_from_u64(3);
        let ra = Duration::from_secs(2);
        let delays: Vec<Duration> = (0..200)
            .map(|_| retry_delay(ClientKind::Good, 1, Some(ra), &mut rng).expect("retries"))
            .collect();
        assert!(delays.iter().all(|d| *d >= ra && *d <= ra + ra / 2));
        // Spread out, not one instant.
        let (min, max) = (delays.iter().min(), delays.iter().max());
        assert!(max.zip(min).is_some_and(|(a, b)| *a - *b > ra / 4));
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (1..=GOOD_RETRIES)
                .map(|n| retry_delay(ClientKind::Good, n, None, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
    }
}
