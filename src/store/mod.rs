//! The durable plan store: plan texts (content-addressed), runs, the orchestrator's current
//! state, and the append-only event log, in one sled database.
//!
//! # What it owns
//! The directory given to [`Store::open`] (`[store] path`): `<dir>/sled/` is the database, one
//! sled tree per keyspace —
//! - `plans`: sha256 hex of a plan's exact text → `{name, text, stored_at_ms}` (JSON);
//! - `runs`: run id (big-endian u64) → that run's latest orchestrator state (JSON);
//! - `state`: `current` → the orchestrator's current state (JSON), what a restart resumes;
//! - `events`: event id (big-endian u64, 1, 2, ...) → [`crate::api::Event`] (JSON);
//! - `meta`: `format_version`, `last_event_id`, `last_run_id` (big-endian u64);
//! - `ticks`: a tick's time in ms (big-endian u64) → what the analyzer judged then
//!   ([`crate::foresight::TickRecord`], JSON), pruned after `[store] ticks_retention`.
//!
//! Big-endian keys make sled's byte order the id order, so ranges over ids are ranges over keys.
//! A state change and its event are written in one transaction across `state`, `runs`,
//! `events` and `meta`, then flushed: [`Store::commit`] returning is the point after which the
//! orchestrator may publish the new routing weight. Events are append-only: nothing here
//! changes or deletes one.
//!
//! # What it must not touch
//! It knows nothing of what a state means (the orchestrator's value is opaque JSON), never
//! reads a clock (times come in as arguments), and is never called from the data path. It
//! writes nothing in `<dir>` besides `sled/` (the control API keeps its token file there), and
//! it never replaces what it cannot read: a directory that is not empty and not a cutover
//! store of this format version, a locked store, or a damaged one is refused with an error
//! naming the path (`open.rs` says how a new store is created safely).
//!
//! # Why sled is kept behind this narrow API
//! sled's own README calls 0.34 beta and warns that its on-disk format may change between
//! releases. Everything sled-specific (trees, transactions, its lock error, its panics on some
//! damaged files) stays in this module so that the engine can be replaced, or a store migrated,
//! without touching the orchestrator or the control API. Our own `format_version` key is what
//! a future migration would key on.

mod codec;
mod error;
mod lock;
mod log;
mod open;
mod plans;
#[cfg(test)]
mod tests;
mod ticks;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::StoreError;
pub use plans::plan_hash;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

const PLANS: &str = "plans";
const RUNS: &str = "runs";
const STATE: &str = "state";
const EVENTS: &str = "events";
const META: &str = "meta";

const FORMAT_KEY: &[u8] = b"format_version";
const LAST_EVENT_KEY: &[u8] = b"last_event_id";
const LAST_RUN_KEY: &[u8] = b"last_run_id";
const STATE_KEY: &[u8] = b"current";

/// A handle on the open store; clones share one database. `Send + Sync`.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db: sled::Db,
    plans: sled::Tree,
    runs: sled::Tree,
    state: sled::Tree,
    events: sled::Tree,
    meta: sled::Tree,
    /// Marks the directory open in this process (see `lock.rs`); dropped last.
    _open_here: lock::OpenHere,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl Store {
    /// Open or create the store in directory `dir`. Only an empty or missing directory is
    /// initialised; anything else that is not a readable cutover store of
    /// [`FORMAT_VERSION`] is refused.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let (db, open_here) = open::open_db(dir)?;
        let tree = |name: &'static str| {
            db.open_tree(name).map_err(|source| StoreError::Sled {
                path: dir.to_path_buf(),
                action: "opening a tree",
                source,
            })
        };
        let inner = Inner {
            plans: tree(PLANS)?,
            runs: tree(RUNS)?,
            state: tree(STATE)?,
            events: tree(EVENTS)?,
            meta: tree(META)?,
            dir: dir.to_path_buf(),
            db,
            _open_here: open_here,
        };
        tracing::debug!(path = %dir.display(), "plan store open");
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// Directory the store lives in (the control API puts a generated token file there).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn path(&self) -> &Path {
        &self.inner.dir
    }

    fn sled_error(&self, action: &'static str, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.inner.dir.clone(),
            action,
            source,
        }
    }

    fn tx_error(
        &self,
        action: &'static str,
        err: sled::transaction::TransactionError<StoreError>,
    ) -> StoreError {
        match err {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => self.sled_error(action, e),
        }
    }

    /// Make every write so far durable.
    fn flush(&self, action: &'static str) -> Result<(), StoreError> {
        self.inner
            .db
            .flush()
            .map(|_| ())
            .map_err(|e| self.sled_error(action, e))
    }
}
