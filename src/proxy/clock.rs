//! A coarse monotonic clock for bookkeeping that needs milliseconds, not nanoseconds: when a
//! connection last moved bytes, since when it has waited for a request head, when an upstream
//! request was handed over, how long a pooled connection has been idle.
//!
//! Owns the process's coarse time ([`now_ms`]) and its source. Must not be used for what needs
//! precision (latencies, rates): those take `Instant` as before. Must not decide anything by
//! itself: the sweepers that act on this time ([`super::supervise`], [`super::deadlines`],
//! [`super::connpool`]) take `now` as an argument in their pure part and wait on tokio's
//! time in their loop.
//!
//! Why coarse: reading it is one atomic load, where `Instant::now()` is a clock call. The data
//! path reads it about ten times per request; reading the precise clock there cost about 3% of
//! the proxy's CPU (docs/benchmarks.md). No `dyn` source and no `Arc` per read, for the same
//! reason.
//!
//! Sources. In a process, one background thread (started by the first reading) writes the
//! time every [`TICK`]; readings lag the real time by at most about that much. In unit tests,
//! [`follow_tokio`] switches the calling thread to tokio's clock, so that a test on paused
//! time (`#[tokio::test(start_paused = true)]`, whose tasks all run on its one thread) moves
//! the coarse time with `tokio::time::advance` or the runtime's auto-advance, and the sweepers
//! fire exactly when the test says. The switch is per thread (parallel tests do not see each
//! other's time) and exists only under `cfg(test)`: a build for use reads the atomic alone.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often the time is written; readings lag the real time by at most about this much.
pub const TICK: Duration = Duration::from_millis(10);

static ORIGIN: OnceLock<Instant> = OnceLock::new();
static NOW_MS: AtomicU64 = AtomicU64::new(0);

/// Milliseconds since the clock started (the first call in this process), never decreasing.
#[inline]
pub fn now_ms() -> u64 {
    #[cfg(test)]
    if let Some(ms) = tokio_source::now_ms() {
        return ms;
    }
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

/// From now on, [`now_ms`] on this thread reads tokio's clock (milliseconds since this call,
/// starting at 0), so a test on paused time drives it. Call it inside the test's runtime,
/// before anything takes a reading.
#[cfg(test)]
pub fn follow_tokio() {
    tokio_source::ORIGIN.with(|o| o.set(Some(tokio::time::Instant::now())));
}

#[cfg(test)]
mod tokio_source {
    use std::cell::Cell;

    thread_local! {
        pub(super) static ORIGIN: Cell<Option<tokio::time::Instant>> = const { Cell::new(None) };
    }

    pub(super) fn now_ms() -> Option<u64> {
        let origin = ORIGIN.with(Cell::get)?;
        Some(origin.elapsed().as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time_on_a_thread_that_asked() {
        follow_tokio();
        assert_eq!(now_ms(), 0);
        tokio::time::advance(Duration::from_millis(1234)).await;
        assert_eq!(now_ms(), 1234);
        const DAYS: u64 = 10 * 86_400_000;
        tokio::time::sleep(Duration::from_millis(DAYS)).await;
        assert_eq!(now_ms(), DAYS + 1234, "auto-advance moves it too");
        let other = std::thread::spawn(now_ms).join().expect("thread");
        assert!(
            other < DAYS,
            "another thread reads the process clock ({other} ms)"
        );
    }

    #[test]
    fn the_ticker_moves_the_process_clock() {
        // Waits on the event (the reading moved), with a bound far above one tick.
        let before = now_ms();
        let real = Instant::now();
        while now_ms() == before {
            assert!(
                real.elapsed() < Duration::from_secs(10),
                "the coarse clock stood still for 10 s"
            );
            std::thread::sleep(TICK);
        }
        let (read, real) = (now_ms(), ORIGIN.get().expect("started").elapsed());
        assert!(
            read <= real.as_millis() as u64,
            "the coarse clock ({read} ms) ran ahead of the real one ({real:?})"
        );
    }
}
