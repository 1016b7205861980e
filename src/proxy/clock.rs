//! A coarse monotonic clock for bookkeeping that needs milliseconds, not nanoseconds: when a
//! connection last moved bytes, how long a pooled connection has been idle.
//!
//! Owns one background thread that writes the time every [`TICK`]; reading it is one atomic
//! load, where `Instant::now()` is a clock call. The data path used to read the precise clock
//! ten times per request, about 3% of its CPU (docs/benchmarks.md). Must not be used for what
//! needs precision (latencies, rates, deadlines): those take `Instant` as before.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often the time is written; readings lag the real time by at most about this much.
pub const TICK: Duration = Duration::from_millis(10);

static ORIGIN: OnceLock<Instant> = OnceLock::new();
static NOW_MS: AtomicU64 = AtomicU64::new(0);

/// Milliseconds since the clock started (the first call in this process), never decreasing.
pub fn now_ms() -> u64 {
    ORIGIN.get_or_init(start);
    NOW_MS.load(Relaxed)
}

fn start() -> Instant {
    let origin = Instant::now();
    let ticker = std::thread::Builder::new()
        .name("cutover-clock".into())
        .spawn(move || loop {
            std::thread::sleep(TICK);
            NOW_MS.store(origin.elapsed().as_millis() as u64, Relaxed);
        });
    if let Err(e) = ticker {
        // Without the ticker the clock stands still: idle connections are then closed only
        // by their peers. Starting a thread fails only when the process is out of resources.
        tracing::error!(error = %e, "could not start the coarse clock thread");
    }
    origin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_real_clock_within_a_few_ticks() {
        let before = now_ms();
        let real = Instant::now();
        std::thread::sleep(Duration::from_millis(200));
        let moved = now_ms() - before;
        let elapsed = real.elapsed().as_millis() as u64;
        assert!(
            moved + 3 * TICK.as_millis() as u64 >= elapsed && moved <= elapsed + 5,
            "coarse clock moved {moved} ms in {elapsed} ms"
        );
    }
}
