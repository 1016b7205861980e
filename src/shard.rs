//! Per-worker copies of the counters that every request bumps, so that two data-plane threads
//! never write the same cache line.
//!
//! Owns: which shard the current thread writes ([`set_worker`], called once by each data-plane
//! worker; every other thread shares shard 0) and [`Sharded`], one cache-line-aligned copy of a
//! value per shard. Must not touch: what the values mean — a reader combines the shards itself
//! (sums counts, takes the least of gauges, ...).
//!
//! Why: an atomic add to a line the other core wrote last has to fetch the line from that core
//! first. With a dozen such adds per request (metrics, retry budget, in-flight counts) both
//! cores spent about a microsecond of every request waiting for each other's lines
//! (docs/benchmarks.md, "Fourth round").

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Mark the current thread as data-plane worker `worker` (counted from 0): it writes shard
/// `worker + 1` from now on.
pub fn set_worker(worker: usize) {
    INDEX.with(|i| i.set(worker + 1));
}

/// The shard the current thread writes, before wrapping to a [`Sharded`]'s length.
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// Shards kept: one per core for the workers, plus one for every other thread. Asked of the
/// system once (every metrics scope, upstream and pool makes a [`Sharded`]).
pub fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()) + 1)
}

/// A value on a cache line of its own (two lines: adjacent-line prefetch pairs them).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// One copy of `T` per shard.
#[derive(Debug)]
pub struct Sharded<T> {
    shards: Box<[Padded<T>]>,
}

impl<T> Sharded<T> {
    /// [`count`] copies made by `make`.
    pub fn new(mut make: impl FnMut() -> T) -> Self {
        Sharded {
            shards: (0..count()).map(|_| Padded(make())).collect(),
        }
    }

    /// The current thread's copy.
    pub fn local(&self) -> &T {
        self.get(index())
    }

    /// The copy of shard `i` (wrapped to the length: with more workers than cores, some share).
    pub fn get(&self, i: usize) -> &T {
        &self.shards[i % self.shards.len()].0
    }

    /// Every copy, for readers.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|p| &p.0)
    }
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Sharded::new(T::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    #[test]
    fn each_worker_writes_its_own_copy_and_readers_see_all() {
        let counts: std::sync::Arc<Sharded<AtomicU64>> = std::sync::Arc::default();
        counts.local().fetch_add(1, Relaxed);
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    set_worker(w);
                    for _ in 0..10 {
                        counts.local().fetch_add(1, Relaxed);
                    }
                    index()
                })
            })
            .collect();
        let shards: Vec<usize> = handles
            .into_iter()
            .map(|h| h.join().expect("worker thread"))
            .collect();
        assert_eq!(shards, vec![1, 2]);
        assert_eq!(counts.iter().map(|c| c.load(Relaxed)).sum::<u64>(), 21);
        assert_eq!(
            counts.get(0).load(Relaxed),
            1,
            "other threads share shard 0"
        );
        assert!(std::mem::align_of::<Padded<AtomicU64>>() >= 64);
    }
}
