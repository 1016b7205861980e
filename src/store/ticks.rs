//! Recorded analysis ticks: what the analyzer judged each tick, kept for a bounded time.
//!
//! Owns: the `ticks` tree — key: the tick's wall time in ms (big-endian u64, so key order is
//! time order), value: a [`TickRecord`] as JSON. Must not touch: the other trees; nothing here
//! is transactional with the run state, and a lost tick costs only a gap in a traffic file.
//!
//! Writes are not flushed one by one: sled flushes on its own (every 500 ms by default) and a
//! crash loses at most the last ticks, which no decision depends on. Retention: `prune_ticks`
//! drops what is older than the cut-off the recorder gives it (`[store] ticks_retention`).

use super::codec::{decode_json, encode_json, id_key};
use super::{Sled, StoreError};
use crate::foresight::TickRecord;

const TICKS: &str = "ticks";

impl Sled {
    fn ticks_tree(&self) -> Result<sled::Tree, StoreError> {
        self.inner
            .db
            .open_tree(TICKS)
            .map_err(|e| self.sled_error("opening the ticks tree", e))
    }

    /// Record one tick (a later one at the same millisecond replaces it).
    pub(super) fn put_tick(&self, tick: &TickRecord) -> Result<(), StoreError> {
        let bytes = encode_json(self.path(), "a recorded tick", tick)?;
        self.ticks_tree()?
            .insert(id_key(tick.t_ms), bytes)
            .map_err(|e| self.sled_error("recording a tick", e))?;
        Ok(())
    }

    /// Ticks with `from_ms <= t_ms < to_ms`, oldest first, at most `limit`.
    pub(super) fn ticks(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<TickRecord>, StoreError> {
        let tree = self.ticks_tree()?;
        let mut out = Vec::new();
        if from_ms >= to_ms {
            return Ok(out);
        }
        for item in tree.range(id_key(from_ms)..id_key(to_ms)).take(limit) {
            let (k, v) = item.map_err(|e| self.sled_error("reading the ticks", e))?;
            out.push(decode_json(self.path(), TICKS, &k, &v)?);
        }
        Ok(out)
    }

    /// Drop every tick older than `before_ms`; returns how many went.
    pub(super) fn prune_ticks(&self, before_ms: u64) -> Result<usize, StoreError> {
        let tree = self.ticks_tree()?;
        let mut n = 0;
        for key in tree.range(..id_key(before_ms)).keys() {
            let key = key.map_err(|e| self.sled_error("reading the ticks", e))?;
            tree.remove(key)
                .map_err(|e| self.sled_error("pruning the ticks", e))?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use crate::foresight::TickRecord;
    use crate::store::Store;

    fn tick(t_ms: u64) -> TickRecord {
        serde_json::from_str(&format!(
            r#"{{"t_ms": {t_ms}, "weight": 10, "scopes": {{"new": {{"requests": {t_ms}}}}}}}"#
        ))
        .expect("tick")
    }

    #[test]
    fn ticks_come_back_in_time_order_within_the_range_and_prune_drops_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        for t in [3_000, 1_000, 2_000, 256, 70_000] {
            store.put_tick(&tick(t)).expect("put");
        }
        let got: Vec<u64> = store
            .ticks(256, 70_000, 100)
            .expect("ticks")
            .iter()
            .map(|t| t.t_ms)
            .collect();
        assert_eq!(got, [256, 1_000, 2_000, 3_000]);
        assert_eq!(store.ticks(0, u64::MAX, 2).expect("ticks").len(), 2);
        assert_eq!(store.prune_ticks(2_000).expect("prune"), 2);
        let left: Vec<u64> = store
            .ticks(0, u64::MAX, 100)
            .expect("ticks")
            .iter()
            .map(|t| t.t_ms)
            .collect();
        assert_eq!(left, [2_000, 3_000, 70_000]);
        drop(store);
        let store = Store::open(dir.path()).expect("reopen: a ticks tree is ours");
        assert_eq!(store.ticks(0, u64::MAX, 100).expect("ticks").len(), 3);
    }
}
