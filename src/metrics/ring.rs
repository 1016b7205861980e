//! The ring of one-second buckets behind every window and history.
//!
//! Owns: the per-second slots of one scope and the rule for reusing them. Must not touch:
//! cumulative totals, gauges or percentiles — it only counts.
//!
//! A slot is reused when its second comes round again (every [`RING_SECONDS`]). Rather than one
//! stamp per slot plus a reset pass (which loses or misplaces samples that race the reset), every
//! counter is a [`Cell`]: one `AtomicU64` holding the second it counts (high 32 bits, second + 1)
//! and the count (low 32 bits). A writer CASes "same second: +n, older second: start at n";
//! a reader takes a count only when its stamp is the second it asks for. So nothing is lost, no
//! stale count is ever read as current, and a sample more than a lap late is dropped instead of
//! being counted into a newer second.
//!
//! Each data-plane worker writes slots of its own ([`Sharded`]); a read adds the shards up, so
//! two cores never bump the same counter.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::faults::{ClientFault, ProxyFault};
use super::histogram::BUCKETS;
use crate::shard::Sharded;

/// Seconds of history kept; windows and histories are capped just below it.
pub const RING_SECONDS: u64 = 128;
/// Longest window that can be read.
pub const MAX_WINDOW_SECONDS: u64 = RING_SECONDS - 2;

/// A count stamped with the second it belongs to.
struct Cell(AtomicU64);

impl Cell {
    fn new() -> Self {
        Cell(AtomicU64::new(0))
    }

    fn add(&self, stamp: u64, n: u32) {
        let mut cur = self.0.load(Relaxed);
        loop {
            let next = match (cur >> 32).cmp(&stamp) {
                std::cmp::Ordering::Equal => {
                    (stamp << 32) | u64::from((cur as u32).saturating_add(n))
                }
                std::cmp::Ordering::Less => (stamp << 32) | u64::from(n),
                std::cmp::Ordering::Greater => return,
            };
            match self.0.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    fn get(&self, stamp: u64) -> u64 {
        let v = self.0.load(Relaxed);
        if v >> 32 == stamp {
            v & u64::from(u32::MAX)
        } else {
            0
        }
    }
}

/// Counters of one slot, by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    Requests,
    Errors,
    Shed,
    DisplacedToFallback,
    DisplacedFailed,
    ProbeOk,
    ProbeFail,
    Retries,
    BudgetExhausted,
    /// Shed answers that were the waiting-room page (browsers).
    WaitingRoom,
    /// Requests refused by the env's new-session rate (also counted as shed).
    SessionsLimited,
    /// Tunnels closed by the drain because their user belongs to the other env now.
    TunnelsDrained,
    /// Failed exchanges that were the client's fault, by [`ClientFault`] (kept in `users`'
    /// ring, outside its requests and errors).
    ClientBodyMalformed,
    ClientBodyAborted,
    ClientBodyTimeout,
    ClientBodyTooSlow,
    ClientUpgradeWithBody,
    ClientBadRequest,
    ClientGone,
    /// Failed exchanges that were the proxy's own fault, by [`ProxyFault`] (`users`' ring).
    ProxyResources,
    /// Copies not sent because the worker's bound on copies in flight was full (`mirror`).
    MirrorDropped,
    /// Requests of mirrored users not copied: a method not allowed, or a body (`mirror`).
    MirrorSkipped,
    /// Copies whose answer was compared with OLD's, and those that differed (`mirror`).
    MirrorCompared,
    MirrorMismatches,
}

const COUNTERS: usize = 24;

impl Counter {
    pub fn client(kind: ClientFault) -> Counter {
        match kind {
            ClientFault::BodyMalformed => Counter::ClientBodyMalformed,
            ClientFault::BodyAborted => Counter::ClientBodyAborted,
            ClientFault::BodyTimeout => Counter::ClientBodyTimeout,
            ClientFault::BodyTooSlow => Counter::ClientBodyTooSlow,
            ClientFault::UpgradeWithBody => Counter::ClientUpgradeWithBody,
            ClientFault::BadRequest => Counter::ClientBadRequest,
            ClientFault::Gone => Counter::ClientGone,
        }
    }

    pub fn proxy(kind: ProxyFault) -> Counter {
        match kind {
            ProxyFault::Resources => Counter::ProxyResources,
        }
    }
}

/// One second of one scope.
struct Slot {
    counters: [Cell; COUNTERS],
    latency: Box<[Cell]>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            counters: std::array::from_fn(|_| Cell::new()),
            latency: (0..BUCKETS).map(|_| Cell::new()).collect(),
        }
    }
}

/// What a set of seconds added up to.
#[derive(Debug, Clone, PartialEq)]
pub struct Sum {
    pub counters: [u64; COUNTERS],
    pub latency: Vec<u64>,
}

impl Sum {
    pub fn new() -> Self {
        Sum {
            counters: [0; COUNTERS],
            latency: vec![0; BUCKETS],
        }
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize]
    }

    pub fn clear(&mut self) {
        self.counters = [0; COUNTERS];
        self.latency.iter_mut().for_each(|c| *c = 0);
    }
}

impl Default for Sum {
    fn default() -> Self {
        Self::new()
    }
}

/// The one-second slots of one scope, per worker.
pub struct Ring {
    shards: Sharded<Box<[Slot]>>,
}

fn stamp(second: u64) -> u64 {
    // 32 bits of seconds since the origin: 136 years of uptime.
    (second + 1) & u64::from(u32::MAX)
}

impl Ring {
    pub fn new() -> Self {
        Ring {
            shards: Sharded::new(|| (0..RING_SECONDS).map(|_| Slot::new()).collect()),
        }
    }

    /// The current thread's slot of `second`.
    fn slot(&self, second: u64) -> &Slot {
        &self.shards.local()[(second % RING_SECONDS) as usize]
    }

    pub fn add(&self, second: u64, counter: Counter, n: u32) {
        self.slot(second).counters[counter as usize].add(stamp(second), n);
    }

    /// One request with its latency's histogram bucket (`None`: not timed, e.g. shed).
    pub fn request(&self, second: u64, error: bool, shed: bool, latency_bucket: Option<usize>) {
        let (slot, st) = (self.slot(second), stamp(second));
        slot.counters[Counter::Requests as usize].add(st, 1);
        if error {
            slot.counters[Counter::Errors as usize].add(st, 1);
        }
        if shed {
            slot.counters[Counter::Shed as usize].add(st, 1);
        }
        if let Some(i) = latency_bucket {
            if let Some(c) = slot.latency.get(i) {
                c.add(st, 1);
            }
        }
    }

    /// Adds what the ring holds for `second` into `into`.
    pub fn read_into(&self, second: u64, into: &mut Sum) {
        let (i, st) = ((second % RING_SECONDS) as usize, stamp(second));
        for slots in self.shards.iter() {
            let slot = &slots[i];
            for (dst, c) in into.counters.iter_mut().zip(&slot.counters) {
                *dst += c.get(st);
            }
            for (dst, c) in into.latency.iter_mut().zip(slot.latency.iter()) {
                *dst += c.get(st);
            }
        }
    }
}

impl Default for Ring {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::index;

    fn read(r: &Ring, second: u64) -> Sum {
        let mut s = Sum::new();
        r.read_into(second, &mut s);
        s
    }

    #[test]
    fn a_slot_is_reused_when_its_second_comes_round_again() {
        let r = Ring::new();
        r.request(3, true, false, Some(index(5.0)));
        r.request(3, false, false, Some(index(5.0)));
        let s = read(&r, 3);
        assert_eq!((s.get(Counter::Requests), s.get(Counter::Errors)), (2, 1));

        // Same slot, one lap later: the old counts must be gone, not added to.
        let later = 3 + RING_SECONDS;
        r.request(later, false, false, Some(index(7.0)));
        assert_eq!(
            read(&r, 3).get(Counter::Requests),
            0,
            "the old second is gone"
        );
        let s = read(&r, later);
        assert_eq!((s.get(Counter::Requests), s.get(Counter::Errors)), (1, 0));
        assert_eq!(s.latency.iter().sum::<u64>(), 1);

        // The errors cell was not touched in the new lap: it must not leak the old error.
        assert_eq!(read(&r, later).get(Counter::Errors), 0);

        // A sample more than a lap late is dropped, not counted into the newer second.
        r.request(3, true, false, Some(index(5.0)));
        let s = read(&r, later);
        assert_eq!((s.get(Counter::Requests), s.get(Counter::Errors)), (1, 0));
    }

    #[test]
    fn a_read_adds_up_what_every_worker_counted() {
        let r = Ring::new();
        r.request(4, true, false, Some(index(5.0)));
        std::thread::scope(|s| {
            for w in 0..2 {
                let r = &r;
                s.spawn(move || {
                    crate::shard::set_worker(w);
                    r.request(4, false, false, Some(index(9.0)));
                    r.add(4, Counter::Retries, 2);
                });
            }
        });
        let s = read(&r, 4);
        assert_eq!((s.get(Counter::Requests), s.get(Counter::Errors)), (3, 1));
        assert_eq!(s.get(Counter::Retries), 4);
        assert_eq!(s.latency[index(9.0)], 2);
        assert_eq!(s.latency.iter().sum::<u64>(), 3);
    }

    #[test]
    fn a_count_saturates_instead_of_spilling_into_the_stamp() {
        let r = Ring::new();
        r.add(9, Counter::Retries, u32::MAX);
        r.add(9, Counter::Retries, 5);
        assert_eq!(read(&r, 9).get(Counter::Retries), u64::from(u32::MAX));
    }
}
