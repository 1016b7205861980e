//! The etcd backend of the store (feature `etcd`): one fleet's plans, runs, current state and
//! event log, shared by every instance that names the same endpoints and prefix.
//!
//! # What it owns
//! The keys under `[store] prefix` (docs/fleet.md lists them):
//! - `<prefix>/meta/format_version`, `<prefix>/meta/last_event_id`, `<prefix>/meta/last_run_id`
//!   (decimal text);
//! - `<prefix>/plans/<sha256 hex>` → `{name, text, stored_at_ms}` (JSON);
//! - `<prefix>/runs/<run id, 20 digits>` → that run's latest state (JSON);
//! - `<prefix>/state/current` → the orchestrator's current state (JSON);
//! - `<prefix>/events/<event id, 20 digits>` → an event (JSON).
//!
//! Zero-padded ids make etcd's byte order the id order. The fleet's membership keys
//! (`leader`, `instances/`) are `crate::fleet`'s; this module only hands it the connection.
//!
//! # One decision, once
//! A state change and its event are one etcd transaction that also compares the state key's
//! revision with the one this handle last read or wrote: if another instance committed in
//! between, nothing is written and the caller gets [`StoreError::Conflict`] (it reloads the
//! state and decides again). A decision of the leader's analyzer is also fenced on the
//! leadership it was taken under ([`EtcdStore::set_fence`]): a deposed leader cannot commit.
//! etcd acknowledges a write once a majority of members has it on disk, so a commit returning
//! is durable before the caller publishes the weight.
//!
//! # What it must not touch
//! It knows nothing of what a state means, never reads a clock, and is never called from the
//! data path. Its methods are synchronous like the sled backend's, run on the tokio runtime it
//! was connected on: call them from `spawn_blocking` or a multi-threaded runtime's task.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::{decode_json, encode_json};
use super::plans::PlanRecord;
use super::{StoreError, FORMAT_VERSION};
use crate::api::{Event, NewEvent, PlanInfo};

const FORMAT: &str = "meta/format_version";
const LAST_EVENT: &str = "meta/last_event_id";
const LAST_RUN: &str = "meta/last_run_id";
const STATE: &str = "state/current";
const LEADER: &str = "leader";
/// Present while `cutover store migrate` writes into the prefix: a store half written is
/// refused rather than served.
const IMPORTING: &str = "meta/importing";
/// etcd refuses transactions of more than 128 operations by default (`--max-txn-ops`).
const BATCH: usize = 100;

/// How to reach the fleet's etcd, from `[store]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdOptions {
    /// `http://host:port` or `https://host:port`, one per member (any subset works).
    pub endpoints: Vec<String>,
    /// Key prefix of this migration, without a trailing `/` (e.g. `/cutover/shop`).
    pub prefix: String,
    /// This instance's local directory (the generated admin token lives there).
    pub local_dir: PathBuf,
    /// PEM CA certificate(s) that sign the members' certificates (`https://` endpoints).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for members that require client certificates.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// etcd user and password (from `[store] user`, `password_file`).
    pub user: Option<(String, String)>,
    /// Bound on each request to etcd (and on connecting).
    pub timeout: Duration,
}

/// A connection to the fleet's store in etcd.
pub struct EtcdStore {
    /// The member in use (its index in `endpoints`) and a client of it alone: tonic's
    /// balanced channel sends requests to a dead member and fails them, so the store picks
    /// one live member and moves on when it stops answering (see [`EtcdStore::failover`]).
    current: Mutex<(usize, Client)>,
    endpoints: Vec<String>,
    connect: ConnectOptions,
    timeout: Duration,
    prefix: String,
    /// `etcd <endpoints> <prefix>`, for messages.
    at: String,
    local_dir: PathBuf,
    runtime: tokio::runtime::Handle,
    /// Revision of the state key this handle last read or wrote (0: absent).
    state_rev: Mutex<i64>,
    /// While this instance leads: the create revision of the leader key it holds.
    fence: Mutex<Option<i64>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("at", &self.at).finish()
    }
}

impl EtcdStore {
    /// Connect, then check (or, for an empty prefix, initialise) the format version. A prefix
    /// that holds keys but no cutover format version is refused, like a foreign directory.
    pub async fn connect(opts: &EtcdOptions) -> Result<EtcdStore, StoreError> {
        let at = format!("etcd {} {}", opts.endpoints.join(","), opts.prefix);
        let fail = |action: &'static str, detail: String| StoreError::Etcd {
            at: at.clone(),
            action,
            detail,
        };
        let mut connect = ConnectOptions::new()
            .with_timeout(opts.timeout)
            .with_connect_timeout(opts.timeout)
            .with_keep_alive(Duration::from_secs(2), opts.timeout)
            // A member cut off from the majority answers "no leader" instead of stale data.
            .with_require_leader(true);
        if let Some((user, password)) = &opts.user {
            connect = connect.with_user(user, password);
        }
        if opts.ca_file.is_some() || opts.cert_file.is_some() {
            connect =
                connect.with_tls(tls_options(opts).map_err(|d| fail("reading TLS files", d))?);
        }
        let mut first = None;
        let mut errors = Vec::new();
        for (i, endpoint) in opts.endpoints.iter().enumerate() {
            match live_client(endpoint, &connect, opts.timeout).await {
                Ok(c) => {
                    first = Some((i, c));
                    break;
                }
                Err(e) => errors.push(format!("{endpoint}: {e}")),
            }
        }
        let Some(first) = first else {
            let mut detail = errors.join("; ");
            // TLS 1.3 refuses a missing client certificate after the handshake: the client
            // sees a closed connection rather than the member's reason.
            let https = opts.endpoints.iter().any(|e| e.starts_with("https://"));
            if https && opts.cert_file.is_none() && !detail.contains("authentication failed") {
                detail.push_str(
                    " (if the members take clients with --client-cert-auth, set [store] \
                     cert_file and key_file to a client certificate their CA signed)",
                );
            }
            return Err(fail("connecting", detail));
        };
        let store = EtcdStore {
            current: Mutex::new(first),
            endpoints: opts.endpoints.clone(),
            connect,
            timeout: opts.timeout,
            prefix: opts.prefix.trim_end_matches('/').to_owned(),
            at,
            local_dir: opts.local_dir.clone(),
            runtime: tokio::runtime::Handle::current(),
            state_rev: Mutex::new(0),
            fence: Mutex::new(None),
        };
        store.check_format().await?;
        std::fs::create_dir_all(&store.local_dir).map_err(|source| StoreError::Io {
            path: store.local_dir.clone(),
            action: "creating the local directory",
            source,
        })?;
        Ok(store)
    }

    /// The client in use, for the fleet's membership (leases, watches) under the same prefix.
    pub fn client(&self) -> Client {
        lock(&self.current).1.clone()
    }

    /// The member in use cannot be reached: move to the next one that can (each tried once,
    /// within the timeout), so a minority of members down changes nothing. Called by the
    /// store's own retries and by the fleet's membership after an error.
    /// True when it moved.
    pub async fn failover(&self) -> bool {
        let from = lock(&self.current).0;
        let n = self.endpoints.len();
        for step in 1..n {
            let i = (from + step) % n;
            if let Ok(client) = live_client(&self.endpoints[i], &self.connect, self.timeout).await {
                *lock(&self.current) = (i, client);
                tracing::warn!(endpoint = %self.endpoints[i], "etcd: moved to another member");
                return true;
            }
        }
        false
    }

    /// `<prefix>/<rest>`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// Fence the analyzer's decisions on holding the leader key created at `revision`
    /// (`None`: not leading).
    pub fn set_fence(&self, revision: Option<i64>) {
        *lock(&self.fence) = revision;
    }

    /// Revision of the state this handle last read or wrote (0: none).
    pub fn state_revision(&self) -> i64 {
        *lock(&self.state_rev)
    }

    pub(super) fn dir(&self) -> &Path {
        &self.local_dir
    }

    /// Where this store is, for messages (`etcd ENDPOINTS PREFIX`).
    pub fn describe_target(&self) -> String {
        self.at.clone()
    }

    pub(super) fn describe(&self) -> String {
        self.at.clone()
    }

    fn path(&self) -> &Path {
        Path::new(&self.at)
    }

    fn fail(&self, action: &'static str, e: etcd_client::Error) -> StoreError {
        let (at, detail) = (self.at.clone(), e.to_string());
        if unreachable(&e) {
            StoreError::EtcdUnreachable { at, action, detail }
        } else {
            StoreError::Etcd { at, action, detail }
        }
    }

    /// Run `op` to completion from synchronous code (see the module doc); while the member
    /// in use cannot be reached, move to another and run it again there.
    fn block<T, F: Future<Output = Result<T, StoreError>>>(
        &self,
        op: impl Fn() -> F,
    ) -> Result<T, StoreError> {
        let f = async {
            // Long enough for the surviving members to elect a leader.
            let until = std::time::Instant::now() + self.timeout;
            loop {
                match op().await {
                    Err(StoreError::EtcdUnreachable { .. })
                        if std::time::Instant::now() < until =>
                    {
                        if !self.failover().await {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    Err(StoreError::EtcdUnreachable { at, action, detail }) => {
                        return Err(StoreError::Etcd { at, action, detail })
                    }
                    other => return other,
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread => {
                Err(StoreError::Etcd {
                    at: self.at.clone(),
                    action: "calling the store",
                    detail: "called on a single-threaded runtime; use spawn_blocking".into(),
                })
            }
            Ok(h) => tokio::task::block_in_place(|| h.block_on(f)),
            Err(_) => self.runtime.block_on(f),
        }
    }

    async fn check_format(&self) -> Result<(), StoreError> {
        let mut kv = self.client().kv_client();
        let found = kv
            .get(self.key(FORMAT), None)
            .await
            .map_err(|e| self.fail("reading the format version", e))?;
        let importing = kv
            .get(self.key(IMPORTING), None)
            .await
            .map_err(|e| self.fail("reading the format version", e))?;
        if !importing.kvs().is_empty() {
            return Err(StoreError::Unreadable {
                path: PathBuf::from(&self.at),
                detail: format!(
                    "a `cutover store migrate` into it did not finish; delete the prefix \
                     (etcdctl del --prefix {}/) and migrate again",
                    self.prefix
                ),
            });
        }
        if let Some(v) = found.kvs().first() {
            let version = self.decode_u64(FORMAT, v.value())?;
            if version != FORMAT_VERSION {
                return Err(StoreError::VersionMismatch {
                    path: PathBuf::from(&self.at),
                    found: version,
                    expected: FORMAT_VERSION,
                });
            }
            return Ok(());
        }
        // Initialise only a prefix where no key exists at all.
        let prefix = format!("{}/", self.prefix);
        let init = Txn::new()
            .when([Compare::create_revision(prefix.clone(), CompareOp::Equal, 0).with_prefix()])
            .and_then([TxnOp::put(
                self.key(FORMAT),
                FORMAT_VERSION.to_string(),
                None,
            )]);
        let r = kv
            .txn(init)
            .await
            .map_err(|e| self.fail("initialising the store", e))?;
        if r.succeeded() {
            tracing::info!(at = %self.at, "created a new plan store in etcd");
            return Ok(());
        }
        // Either another instance initialised it a moment ago, or the prefix is foreign.
        let again = kv
            .get(self.key(FORMAT), None)
            .await
            .map_err(|e| self.fail("reading the format version", e))?;
        if again.kvs().is_empty() {
            let keys = kv
                .get(
                    prefix,
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_keys_only()
                            .with_limit(3),
                    ),
                )
                .await
                .map_err(|e| self.fail("listing the prefix", e))?;
            let shown: Vec<String> = keys
                .kvs()
                .iter()
                .map(|k| String::from_utf8_lossy(k.key()).into_owned())
                .collect();
            return Err(StoreError::NotAStore {
                path: PathBuf::from(&self.at),
                found: format!("it holds other keys, e.g. {}", shown.join(", ")),
            });
        }
        Ok(())
    }

    fn decode_u64(&self, key: &str, bytes: &[u8]) -> Result<u64, StoreError> {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| StoreError::Corrupt {
                path: PathBuf::from(&self.at),
                tree: "meta",
                key: key.into(),
                detail: format!("not a decimal number: {:?}", String::from_utf8_lossy(bytes)),
            })
    }

    /// A counter under `meta` and its key's revision (0, 0 when never written).
    async fn counter(&self, key: &str) -> Result<(u64, i64), StoreError> {
        let r = self
            .client()
            .kv_client()
            .get(self.key(key), None)
            .await
            .map_err(|e| self.fail("reading a counter", e))?;
        match r.kvs().first() {
            Some(kv) => Ok((self.decode_u64(key, kv.value())?, kv.mod_revision())),
            None => Ok((0, 0)),
        }
    }

    async fn get_one(
        &self,
        key: String,
        action: &'static str,
    ) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        let r = self
            .client()
            .kv_client()
            .get(key, None)
            .await
            .map_err(|e| self.fail(action, e))?;
        Ok(r.kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())))
    }

    pub(super) fn put_plan(
        &self,
        name: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<String, StoreError> {
        let (hash, bytes) = PlanRecord::encode(self.path(), name, text, now_ms)?;
        let key = self.key(&format!("plans/{hash}"));
        self.block(|| async {
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.clone(), bytes.clone(), None)]);
            self.client()
                .kv_client()
                .txn(txn)
                .await
                .map_err(|e| self.fail("storing a plan", e))?;
            Ok(())
        })?;
        Ok(hash)
    }

    pub(super) fn plan_text(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let key = self.key(&format!("plans/{hash}"));
        let found = self.block(|| self.get_one(key.clone(), "reading a plan"))?;
        found
            .map(|(v, _)| {
                decode_json::<PlanRecord>(self.path(), "plans", hash.as_bytes(), &v).map(|r| r.text)
            })
            .transpose()
    }

    pub(super) fn plans(&self) -> Result<Vec<PlanInfo>, StoreError> {
        let prefix = self.key("plans/");
        let kvs = self.block(|| async {
            let r = self
                .client()
                .kv_client()
                .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
                .await
                .map_err(|e| self.fail("listing plans", e))?;
            Ok(r.kvs()
                .iter()
                .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
                .collect::<Vec<_>>())
        })?;
        let mut out = Vec::with_capacity(kvs.len());
        for (key, value) in kvs {
            let record: PlanRecord = decode_json(self.path(), "plans", &key, &value)?;
            let hash = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            out.push(PlanInfo {
                hash,
                name: record.name,
                stored_at_ms: record.stored_at_ms,
            });
        }
        out.sort_by(|a, b| (a.stored_at_ms, &a.hash).cmp(&(b.stored_at_ms, &b.hash)));
        Ok(out)
    }

    pub(super) fn next_run_id(&self) -> Result<u64, StoreError> {
        self.block(|| async {
            // Another instance may take an id at the same moment: compare and retry.
            for _ in 0..16 {
                let (last, rev) = self.counter(LAST_RUN).await?;
                let id = last.checked_add(1).ok_or_else(|| self.at_max(LAST_RUN))?;
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        self.key(LAST_RUN),
                        CompareOp::Equal,
                        rev,
                    )])
                    .and_then([TxnOp::put(self.key(LAST_RUN), id.to_string(), None)]);
                let r = self
                    .client()
                    .kv_client()
                    .txn(txn)
                    .await
                    .map_err(|e| self.fail("allocating a run id", e))?;
                if r.succeeded() {
                    return Ok(id);
                }
            }
            Err(self.conflict("allocating a run id"))
        })
    }

    fn at_max(&self, key: &str) -> StoreError {
        StoreError::Corrupt {
            path: PathBuf::from(&self.at),
            tree: "meta",
            key: key.into(),
            detail: "counter is at u64::MAX".into(),
        }
    }

    fn conflict(&self, action: &'static str) -> StoreError {
        StoreError::Conflict {
            at: self.at.clone(),
            action,
        }
    }

    /// The compares every state write makes: the state is the one this handle last saw, and,
    /// when `fenced`, this instance still holds the leadership it decided under.
    fn guards(&self, fenced: bool) -> Result<Vec<Compare>, StoreError> {
        let mut c = vec![Compare::mod_revision(
            self.key(STATE),
            CompareOp::Equal,
            *lock(&self.state_rev),
        )];
        if fenced {
            let Some(fence) = *lock(&self.fence) else {
                return Err(self.conflict("deciding without the fleet's leadership"));
            };
            c.push(Compare::create_revision(
                self.key(LEADER),
                CompareOp::Equal,
                fence,
            ));
        }
        Ok(c)
    }

    fn run_key(&self, run: u64) -> String {
        self.key(&format!("runs/{run:020}"))
    }

    fn event_key(&self, id: u64) -> String {
        self.key(&format!("events/{id:020}"))
    }

    pub(super) fn commit<S: Serialize>(
        &self,
        state: &S,
        run_id: Option<u64>,
        event: NewEvent,
        fenced: bool,
    ) -> Result<Event, StoreError> {
        let state_bytes = encode_json(self.path(), "the orchestrator state", state)?;
        self.block(|| async {
            let (last, last_rev) = self.counter(LAST_EVENT).await?;
            let id = last.checked_add(1).ok_or_else(|| self.at_max(LAST_EVENT))?;
            let event = event.clone().with_id(id);
            let bytes = encode_json(self.path(), "an event", &event)?;
            let mut when = self.guards(fenced)?;
            when.push(Compare::mod_revision(
                self.key(LAST_EVENT),
                CompareOp::Equal,
                last_rev,
            ));
            when.push(Compare::create_revision(
                self.event_key(id),
                CompareOp::Equal,
                0,
            ));
            let mut ops = vec![
                TxnOp::put(self.event_key(id), bytes, None),
                TxnOp::put(self.key(LAST_EVENT), id.to_string(), None),
                TxnOp::put(self.key(STATE), state_bytes.clone(), None),
            ];
            if let Some(run) = run_id {
                ops.push(TxnOp::put(self.run_key(run), state_bytes.clone(), None));
            }
            self.write(
                Txn::new().when(when).and_then(ops),
                "committing a state change and its event",
            )
            .await?;
            Ok(event)
        })
    }

    pub(super) fn save_state<S: Serialize>(
        &self,
        state: &S,
        run_id: Option<u64>,
        fenced: bool,
    ) -> Result<(), StoreError> {
        let state_bytes = encode_json(self.path(), "the orchestrator state", state)?;
        self.block(|| async {
            let mut ops = vec![TxnOp::put(self.key(STATE), state_bytes.clone(), None)];
            if let Some(run) = run_id {
                ops.push(TxnOp::put(self.run_key(run), state_bytes.clone(), None));
            }
            let txn = Txn::new().when(self.guards(fenced)?).and_then(ops);
            self.write(txn, "saving the state").await
        })
    }

    /// Run a guarded transaction; on success the state key's revision is the transaction's.
    async fn write(&self, txn: Txn, action: &'static str) -> Result<(), StoreError> {
        let r = self
            .client()
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| self.fail(action, e))?;
        if !r.succeeded() {
            return Err(self.conflict(action));
        }
        if let Some(h) = r.header() {
            *lock(&self.state_rev) = h.revision();
        }
        Ok(())
    }

    pub(super) fn load_state<S: DeserializeOwned>(&self) -> Result<Option<S>, StoreError> {
        let found = self.block(|| self.get_one(self.key(STATE), "reading the state"))?;
        *lock(&self.state_rev) = found.as_ref().map_or(0, |(_, rev)| *rev);
        found
            .map(|(v, _)| decode_json(self.path(), "state", b"current", &v))
            .transpose()
    }

    pub(super) fn run_state<S: DeserializeOwned>(
        &self,
        run_id: u64,
    ) -> Result<Option<S>, StoreError> {
        let key = self.run_key(run_id);
        let found = self.block(|| self.get_one(key.clone(), "reading a run"))?;
        found
            .map(|(v, _)| decode_json(self.path(), "runs", key.as_bytes(), &v))
            .transpose()
    }

    pub(super) fn events_since(
        &self,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let Some(first) = after_id.checked_add(1) else {
            return Ok(Vec::new());
        };
        let from = self.event_key(first);
        // The end of the `events/` range: the prefix with its last byte raised.
        let end = self.key("events0");
        let kvs = self.block(|| async {
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
            let r = self
                .client()
                .kv_client()
                .get(from.clone(), Some(opts))
                .await
                .map_err(|e| self.fail("reading events", e))?;
            Ok(r.kvs()
                .iter()
                .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
                .collect::<Vec<_>>())
        })?;
        kvs.iter()
            .map(|(k, v)| decode_json(self.path(), "events", k, v))
            .collect()
    }

    pub(super) fn last_event_id(&self) -> Result<u64, StoreError> {
        self.block(|| async { Ok(self.counter(LAST_EVENT).await?.0) })
    }
}

impl EtcdStore {
    /// Write every record of `dump` into this (new, empty) store: the records in batches, then
    /// the state and the counters in one last transaction. Refused unless the prefix holds
    /// nothing but its format version; a failure midway leaves a marker that makes the store
    /// refused until the prefix is deleted and the migration run again.
    pub fn import(&self, dump: &super::Dump) -> Result<(), StoreError> {
        self.block(|| async {
            let mut kv = self.client().kv_client();
            let prefix = format!("{}/", self.prefix);
            let existing = kv
                .get(
                    prefix,
                    Some(GetOptions::new().with_prefix().with_count_only()),
                )
                .await
                .map_err(|e| self.fail("looking at the target prefix", e))?;
            if existing.count() != 1 {
                return Err(StoreError::NotAStore {
                    path: PathBuf::from(&self.at),
                    found: format!(
                        "it already holds {} keys; migrate only into a new prefix",
                        existing.count()
                    ),
                });
            }
            kv.put(self.key(IMPORTING), "1", None)
                .await
                .map_err(|e| self.fail("marking the import", e))?;
            let puts: Vec<TxnOp> = (dump.plans.iter())
                .map(|(hash, v)| TxnOp::put(self.key(&format!("plans/{hash}")), v.clone(), None))
                .chain(
                    dump.runs
                        .iter()
                        .map(|(id, v)| TxnOp::put(self.run_key(*id), v.clone(), None)),
                )
                .chain(
                    dump.events
                        .iter()
                        .map(|(id, v)| TxnOp::put(self.event_key(*id), v.clone(), None)),
                )
                .collect();
            let mut puts = puts.into_iter().peekable();
            while puts.peek().is_some() {
                let batch: Vec<TxnOp> = puts.by_ref().take(BATCH).collect();
                kv.txn(Txn::new().and_then(batch))
                    .await
                    .map_err(|e| self.fail("writing the records", e))?;
            }
            let mut last = vec![
                TxnOp::put(self.key(LAST_EVENT), dump.last_event_id.to_string(), None),
                TxnOp::put(self.key(LAST_RUN), dump.last_run_id.to_string(), None),
                TxnOp::delete(self.key(IMPORTING), None),
            ];
            if let Some(state) = &dump.state {
                last.push(TxnOp::put(self.key(STATE), state.clone(), None));
            }
            kv.txn(Txn::new().and_then(last))
                .await
                .map_err(|e| self.fail("writing the state and the counters", e))?;
            Ok(())
        })
    }
}

/// A client of `endpoint` alone that has just answered a status request.
async fn live_client(
    endpoint: &str,
    options: &ConnectOptions,
    timeout: Duration,
) -> Result<Client, String> {
    let attempt = async {
        let mut c = Client::connect([endpoint], Some(options.clone())).await?;
        c.status().await?;
        Ok::<_, etcd_client::Error>(c)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// An error that says the member could not be reached (the request was not served): safe to
/// send again to another member.
fn unreachable(e: &etcd_client::Error) -> bool {
    match e {
        // gRPC's CANCELLED (1), DEADLINE_EXCEEDED (4) and UNAVAILABLE (14).
        etcd_client::Error::GRpcStatus(s) => matches!(i32::from(s.code()), 1 | 4 | 14),
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these cannot leave a revision half-written.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn tls_options(opts: &EtcdOptions) -> Result<TlsOptions, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut tls = TlsOptions::new();
    if let Some(ca) = &opts.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    match (&opts.cert_file, &opts.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => return Err("cert_file and key_file go together".into()),
    }
    Ok(tls)
}
