//! The orchestrator's state, runs and the append-only event log, written together.
//!
//! Transaction closures may be re-run by sled on conflict, so they only read and write the
//! transactional trees: encoding happens before, flushing and logging after.

use std::sync::atomic::Ordering::SeqCst;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, Transactional, TransactionalTree};

use super::codec::{decode_json, decode_u64, encode_json, id_key};
use super::{Sled, StoreError, EVENTS, LAST_EVENT_KEY, LAST_RUN_KEY, META, RUNS, STATE, STATE_KEY};
use crate::api::{Event, NewEvent};

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

impl Sled {
    /// A fresh run id (1, 2, ...): monotonic and durable across restarts.
    pub(super) fn next_run_id(&self) -> Result<u64, StoreError> {
        let id = self
            .inner
            .meta
            .transaction(|meta| {
                let id = self.next_counter(meta, LAST_RUN_KEY)?;
                meta.insert(LAST_RUN_KEY, &id_key(id))?;
                Ok(id)
            })
            .map_err(|e| self.tx_error("allocating a run id", e))?;
        self.flush("flushing a new run id")?;
        Ok(id)
    }

    /// In ONE atomic transaction: write `state` as the current state (and as run `run_id`'s
    /// state when given) and append `event` with the next event id; then flush. Returns the
    /// stored event. Only after this returns may the caller publish the new routing weight.
    pub(super) fn commit<S: Serialize>(
        &self,
        state: &S,
        run_id: Option<u64>,
        event: NewEvent,
    ) -> Result<Event, StoreError> {
        let state_bytes = encode_json(self.path(), "the orchestrator state", state)?;
        let i = &self.inner;
        let stored = (&i.state, &i.runs, &i.events, &i.meta)
            .transaction(|(state_t, runs_t, events_t, meta_t)| {
                let id = self.next_counter(meta_t, LAST_EVENT_KEY)?;
                let key = id_key(id);
                if events_t.get(key)?.is_some() {
                    // The counter fell behind the log: never overwrite an event.
                    return Err(ConflictableTransactionError::Abort(StoreError::Corrupt {
                        path: self.path().to_path_buf(),
                        tree: META,
                        key: "last_event_id".into(),
                        detail: format!("event {id} already exists; the counter is behind"),
                    }));
                }
                let event = event.clone().with_id(id);
                let bytes = encode_json(self.path(), "an event", &event)
                    .map_err(ConflictableTransactionError::Abort)?;
                events_t.insert(&key, bytes)?;
                meta_t.insert(LAST_EVENT_KEY, &key)?;
                state_t.insert(STATE_KEY, state_bytes.as_slice())?;
                if let Some(run) = run_id {
                    runs_t.insert(&id_key(run), state_bytes.as_slice())?;
                }
                Ok(event)
            })
            .map_err(|e| self.tx_error("committing a state change and its event", e))?;
        self.flush("flushing a state change and its event")?;
        // Only now may readers see it.
        self.inner.durable_event.fetch_max(stored.id, SeqCst);
        Ok(stored)
    }

    /// Save `state` as the current state (and as run `run_id`'s state when given) without an
    /// event, e.g. hold progress; flushed.
    pub(super) fn save_state<S: Serialize>(
        &self,
        state: &S,
        run_id: Option<u64>,
    ) -> Result<(), StoreError> {
        let state_bytes = encode_json(self.path(), "the orchestrator state", state)?;
        let i = &self.inner;
        (&i.state, &i.runs)
            .transaction(|(state_t, runs_t)| {
                state_t.insert(STATE_KEY, state_bytes.as_slice())?;
                if let Some(run) = run_id {
                    runs_t.insert(&id_key(run), state_bytes.as_slice())?;
                }
                Ok(())
            })
            .map_err(|e| self.tx_error("saving the state", e))?;
        self.flush("flushing the state")
    }

    /// The current state last committed or saved, if any.
    pub(super) fn load_state<S: DeserializeOwned>(&self) -> Result<Option<S>, StoreError> {
        let value = (self.inner.state.get(STATE_KEY))
            .map_err(|e| self.sled_error("reading the state", e))?;
        value
            .map(|v| decode_json(self.path(), STATE, STATE_KEY, &v))
            .transpose()
    }

    /// The latest state stored for run `run_id`, if any.
    pub(super) fn run_state<S: DeserializeOwned>(
        &self,
        run_id: u64,
    ) -> Result<Option<S>, StoreError> {
        let key = id_key(run_id);
        let value = (self.inner.runs.get(key)).map_err(|e| self.sled_error("reading a run", e))?;
        value
            .map(|v| decode_json(self.path(), RUNS, &key, &v))
            .transpose()
    }

    /// Up to `limit` events with an id greater than `after_id`, oldest first: only durable
    /// ones (an event committed but not yet flushed is not shown until it is).
    pub(super) fn events_since(
        &self,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let durable = self.inner.durable_event.load(SeqCst);
        let Some(first) = after_id.checked_add(1).filter(|f| *f <= durable) else {
            return Ok(Vec::new());
        };
        self.inner
            .events
            .range(id_key(first)..=id_key(durable))
            .take(limit)
            .map(|entry| {
                let (key, value) = entry.map_err(|e| self.sled_error("reading events", e))?;
                decode_json(self.path(), EVENTS, &key, &value)
            })
            .collect()
    }

    /// Id of the newest event, 0 when the log is empty.
    pub(super) fn last_event_id(&self) -> Result<u64, StoreError> {
        let value = (self.inner.meta.get(LAST_EVENT_KEY))
            .map_err(|e| self.sled_error("reading the last event id", e))?;
        value.map_or(Ok(0), |v| decode_u64(self.path(), META, LAST_EVENT_KEY, &v))
    }

    /// The value after the counter `key` in `meta` (1 for a counter never written).
    fn next_counter(&self, meta: &TransactionalTree, key: &[u8]) -> TxResult<u64> {
        let last = match meta.get(key)? {
            Some(v) => decode_u64(self.path(), META, key, &v)
                .map_err(ConflictableTransactionError::Abort)?,
            None => 0,
        };
        last.checked_add(1).ok_or_else(|| {
            ConflictableTransactionError::Abort(StoreError::Corrupt {
                path: self.path().to_path_buf(),
                tree: META,
                key: String::from_utf8_lossy(key).into_owned(),
                detail: "counter is at u64::MAX".into(),
            })
        })
    }
}
