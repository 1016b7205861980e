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
mod dump;
mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
mod lock;
mod log;
mod open;
mod plans;
#[cfg(test)]
mod tests;
mod ticks;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

pub use dump::Dump;
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

/// A handle on the open store, whichever backend holds it; clones share one store.
/// `Send + Sync`. The sled backend is the default; the etcd backend (feature `etcd`) shares
/// one store between the instances of a fleet (docs/fleet.md).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sled(Sled),
    #[cfg(feature = "etcd")]
    Etcd(Arc<etcd::EtcdStore>),
}

/// Call the same method on whichever backend holds the store.
macro_rules! each_backend {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sled($s) => $call,
            #[cfg(feature = "etcd")]
            Backend::Etcd($s) => $call,
        }
    };
}

impl Store {
    /// Open or create the sled store in directory `dir`. Only an empty or missing directory is
    /// initialised; anything else that is not a readable cutover store of
    /// [`FORMAT_VERSION`] is refused.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sled(Sled::open(dir)?),
        })
    }

    /// The store of a fleet, in etcd (see [`etcd::EtcdStore::connect`]).
    #[cfg(feature = "etcd")]
    pub fn from_etcd(store: etcd::EtcdStore) -> Store {
        Store {
            backend: Backend::Etcd(Arc::new(store)),
        }
    }

    /// The etcd store, when this is one (the fleet's membership shares its connection).
    #[cfg(feature = "etcd")]
    pub fn etcd(&self) -> Option<&Arc<etcd::EtcdStore>> {
        match &self.backend {
            Backend::Etcd(e) => Some(e),
            Backend::Sled(_) => None,
        }
    }

    /// Local directory of this instance's store files (the control API puts a generated
    /// token file there): the sled store's directory, or `[store] path` beside an etcd store.
    pub fn dir(&self) -> &Path {
        each_backend!(self, s => s.dir())
    }

    /// Revision of the state this handle last read or wrote in etcd; `None` for sled.
    pub fn state_revision(&self) -> Option<i64> {
        match &self.backend {
            Backend::Sled(_) => None,
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => Some(s.state_revision()),
        }
    }

    /// Where the store is, for messages: a directory, or etcd endpoints and prefix.
    pub fn describe(&self) -> String {
        each_backend!(self, s => s.describe())
    }

    /// Store a plan's text, content-addressed (sha256 hex of the exact text), durably.
    /// Idempotent: storing a text that is already there keeps the first record (its name and
    /// time) and returns the same hash.
    pub fn put_plan(&self, name: &str, text: &str, now_ms: u64) -> Result<String, StoreError> {
        each_backend!(self, s => s.put_plan(name, text, now_ms))
    }

    /// The exact text of the plan stored under `hash`, if any.
    pub fn plan_text(&self, hash: &str) -> Result<Option<String>, StoreError> {
        each_backend!(self, s => s.plan_text(hash))
    }

    /// Every stored plan, oldest first.
    pub fn plans(&self) -> Result<Vec<crate::api::PlanInfo>, StoreError> {
        each_backend!(self, s => s.plans())
    }

    /// A fresh run id (1, 2, ...): monotonic and durable across restarts.
    pub fn next_run_id(&self) -> Result<u64, StoreError> {
        each_backend!(self, s => s.next_run_id())
    }

    /// In ONE atomic transaction: write `state` as the current state (and as run `run_id`'s
    /// state when given) and append `event` with the next event id, durably. Returns the
    /// stored event. Only after this returns may the caller publish the new routing weight.
    /// On etcd the transaction also requires that the state is still the one this handle
    /// last read or wrote ([`StoreError::Conflict`] otherwise: nothing was written).
    pub fn commit<S: serde::Serialize>(
        &self,
        state: &S,
        run_id: Option<u64>,
        event: crate::api::NewEvent,
    ) -> Result<crate::api::Event, StoreError> {
        self.commit_as(state, run_id, event, false)
    }

    /// [`Store::commit`] for a decision of the leader's analyzer: on etcd the transaction also
    /// requires that this instance still holds the leadership it decided under.
    pub fn commit_fenced<S: serde::Serialize>(
        &self,
        state: &S,
        run_id: Option<u64>,
        event: crate::api::NewEvent,
    ) -> Result<crate::api::Event, StoreError> {
        self.commit_as(state, run_id, event, true)
    }

    /// [`Store::commit`], or [`Store::commit_fenced`] when `fenced` (sled has no fence).
    pub fn commit_as<S: serde::Serialize>(
        &self,
        state: &S,
        run_id: Option<u64>,
        event: crate::api::NewEvent,
        fenced: bool,
    ) -> Result<crate::api::Event, StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let _ = fenced;
                s.commit(state, run_id, event)
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.commit(state, run_id, event, fenced),
        }
    }

    /// Save `state` as the current state (and as run `run_id`'s state when given) without an
    /// event, e.g. hold progress; durably. Conflicts as [`Store::commit`] does.
    pub fn save_state<S: serde::Serialize>(
        &self,
        state: &S,
        run_id: Option<u64>,
    ) -> Result<(), StoreError> {
        self.save_state_as(state, run_id, false)
    }

    /// [`Store::save_state`] for the leader's hold progress, fenced as
    /// [`Store::commit_fenced`].
    pub fn save_state_fenced<S: serde::Serialize>(
        &self,
        state: &S,
        run_id: Option<u64>,
    ) -> Result<(), StoreError> {
        self.save_state_as(state, run_id, true)
    }

    fn save_state_as<S: serde::Serialize>(
        &self,
        state: &S,
        run_id: Option<u64>,
        fenced: bool,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => {
                let _ = fenced;
                s.save_state(state, run_id)
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => s.save_state(state, run_id, fenced),
        }
    }

    /// The current state last committed or saved, if any.
    pub fn load_state<S: serde::de::DeserializeOwned>(&self) -> Result<Option<S>, StoreError> {
        each_backend!(self, s => s.load_state())
    }

    /// The latest state stored for run `run_id`, if any.
    pub fn run_state<S: serde::de::DeserializeOwned>(
        &self,
        run_id: u64,
    ) -> Result<Option<S>, StoreError> {
        each_backend!(self, s => s.run_state(run_id))
    }

    /// Up to `limit` events with an id greater than `after_id`, oldest first.
    pub fn events_since(
        &self,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<crate::api::Event>, StoreError> {
        each_backend!(self, s => s.events_since(after_id, limit))
    }

    /// Id of the newest event, 0 when the log is empty.
    pub fn last_event_id(&self) -> Result<u64, StoreError> {
        each_backend!(self, s => s.last_event_id())
    }

    /// Record one analysis tick (`plan simulate`'s input). A fleet's store in etcd records
    /// none: a second's write per instance into etcd is not worth what it buys (docs/fleet.md).
    pub fn put_tick(&self, tick: &crate::foresight::TickRecord) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.put_tick(tick),
            #[cfg(feature = "etcd")]
            Backend::Etcd(_) => Ok(()),
        }
    }

    /// Recorded ticks with `from_ms <= t_ms < to_ms`, oldest first, at most `limit`.
    pub fn ticks(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<crate::foresight::TickRecord>, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.ticks(from_ms, to_ms, limit),
            #[cfg(feature = "etcd")]
            Backend::Etcd(_) => Ok(Vec::new()),
        }
    }

    /// Drop every recorded tick older than `before_ms`; returns how many went.
    pub fn prune_ticks(&self, before_ms: u64) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.prune_ticks(before_ms),
            #[cfg(feature = "etcd")]
            Backend::Etcd(_) => Ok(0),
        }
    }

    /// Every record of a sled store, to move it into a fleet (`cutover store migrate`).
    pub fn dump(&self) -> Result<Dump, StoreError> {
        match &self.backend {
            Backend::Sled(s) => s.dump(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(s) => Err(StoreError::Etcd {
                at: s.describe(),
                action: "reading a store to migrate it",
                detail: "migrate from a sled store; an etcd store is already shared".into(),
            }),
        }
    }
}

/// The sled backend: one database in a local directory.
#[derive(Clone)]
pub(crate) struct Sled {
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
    /// The newest event known durable (flushed): readers never see past it, so an event a
    /// client saw cannot be lost by a crash between a commit's transaction and its flush.
    durable_event: AtomicU64,
    /// Marks the directory open in this process (see `lock.rs`); dropped last.
    _open_here: lock::OpenHere,
}

impl std::fmt::Debug for Sled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sled")
            .field("dir", &self.inner.dir)
            .finish()
    }
}
impl Sled {
    fn open(dir: &Path) -> Result<Sled, StoreError> {
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
            durable_event: AtomicU64::new(0),
            _open_here: open_here,
        };
        let sled = Sled {
            inner: Arc::new(inner),
        };
        // What is on disk at open is durable by definition: up to the log's newest event.
        let newest =
            (sled.inner.events.last()).map_err(|e| sled.sled_error("reading events", e))?;
        let last = newest.map_or(0, |(key, _)| codec::key_id(&key).unwrap_or(u64::MAX));
        sled.inner.durable_event.store(last, SeqCst);
        tracing::debug!(path = %dir.display(), "plan store open");
        Ok(sled)
    }

    fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn describe(&self) -> String {
        self.inner.dir.display().to_string()
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
