//! Moving a whole store: every record of a sled store, read as stored, for
//! `cutover store migrate` to write into a fleet's etcd prefix.
//!
//! Owns: [`Dump`] and reading it out of sled. Must not touch: the records' meaning (bytes are
//! copied as they are: both backends store the same JSON) or the target (the etcd backend
//! writes it, `etcd.rs`).

use super::codec::decode_u64;
use super::{Sled, StoreError, EVENTS, LAST_EVENT_KEY, LAST_RUN_KEY, META, RUNS, STATE_KEY};

/// Every record of a store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dump {
    /// Plan hash → its record (JSON).
    pub plans: Vec<(String, Vec<u8>)>,
    /// Run id → its latest state (JSON).
    pub runs: Vec<(u64, Vec<u8>)>,
    /// The current state (JSON), if any.
    pub state: Option<Vec<u8>>,
    /// Event id → event (JSON), in id order.
    pub events: Vec<(u64, Vec<u8>)>,
    pub last_event_id: u64,
    pub last_run_id: u64,
}

impl Sled {
    pub(super) fn dump(&self) -> Result<Dump, StoreError> {
        let i = &self.inner;
        let read = |e: sled::Error| self.sled_error("reading the store to migrate it", e);
        let mut dump = Dump::default();
        for entry in i.plans.iter() {
            let (k, v) = entry.map_err(read)?;
            dump.plans
                .push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        for entry in i.runs.iter() {
            let (k, v) = entry.map_err(read)?;
            dump.runs
                .push((decode_u64(self.path(), RUNS, &k, &k)?, v.to_vec()));
        }
        for entry in i.events.iter() {
            let (k, v) = entry.map_err(read)?;
            dump.events
                .push((decode_u64(self.path(), EVENTS, &k, &k)?, v.to_vec()));
        }
        dump.state = i.state.get(STATE_KEY).map_err(read)?.map(|v| v.to_vec());
        let counter = |key: &[u8]| -> Result<u64, StoreError> {
            match i.meta.get(key).map_err(read)? {
                Some(v) => decode_u64(self.path(), META, key, &v),
                None => Ok(0),
            }
        };
        dump.last_event_id = counter(LAST_EVENT_KEY)?;
        dump.last_run_id = counter(LAST_RUN_KEY)?;
        Ok(dump)
    }
}
