//! Fleet mode: several `cutover serve` instances share one migration through etcd.
//!
//! # What it owns
//! This instance's membership and what it knows of the others:
//! - a lease of `[store] lease_ttl`, kept alive every third of it (`member.rs`);
//! - its record under `<prefix>/instances/<id>` (its addresses and its own counts over the
//!   analysis window), bound to the lease and written every second;
//! - the election: `<prefix>/leader` holds the id of the instance that decides, bound to the
//!   leader's lease, taken by whoever creates it first while it is absent; a dead leader's key
//!   goes with its lease, so another instance leads within the TTL (plus one 250 ms look);
//! - the other instances' records, read every second, added up for the analyzer (leader) and
//!   the status (everyone) by `view.rs`;
//! - a watch on `<prefix>/state/current` (`watch.rs`) that tells the driver when a state was
//!   committed, by whichever instance, so every instance routes by the committed weight.
//!
//! While etcd cannot be reached the instance says so ([`crate::api::FleetView`]), decides
//! nothing (it is not the leader; its commands fail with nothing changed), and keeps serving
//! at the last weight it routed by.
//!
//! # What it must not touch
//! The run's state (the driver loads and commits it through [`crate::store`]), the router and
//! the data path. The driver asks it three things: am I leading, what does the fleet add up
//! to, and what does the fleet look like; and it is told of changes through [`Notice`]s.

#[cfg(feature = "etcd")]
mod member;
pub mod view;
#[cfg(feature = "etcd")]
mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
#[cfg(feature = "etcd")]
use tokio::sync::{mpsc, watch as tokio_watch};

use crate::api::FleetView;
use crate::metrics::{Metrics, RawWindow, WindowSnapshot};
#[cfg(feature = "etcd")]
use crate::store::etcd::EtcdStore;
use view::{InstanceRecord, Peers};

/// Who this instance is in the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub id: String,
    /// Addresses shown to the other instances and operators.
    pub admin: String,
    pub proxy: String,
    pub lease_ttl: Duration,
    /// Bound on each call to etcd.
    pub timeout: Duration,
}

/// What the driver is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A state was committed at this etcd revision (0: unknown, after a reconnect): load it
    /// unless it is the one this instance wrote.
    State { revision: i64 },
    /// This instance became (true) or stopped being (false) the leader.
    Leading(bool),
}

/// The fleet as this instance takes part in it. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    shared: Arc<Shared>,
}

struct Shared {
    settings: Settings,
    metrics: Arc<Metrics>,
    leading: AtomicBool,
    peers: ArcSwap<Peers>,
    /// The analysis window this instance publishes its counts over, in ms.
    window_ms: AtomicU64,
}

impl Fleet {
    /// Join the fleet: start the membership task and the state watch. Notices arrive on the
    /// returned receiver until `stop` turns true.
    #[cfg(feature = "etcd")]
    pub fn start(
        store: Arc<EtcdStore>,
        settings: Settings,
        metrics: Arc<Metrics>,
        stop: tokio_watch::Receiver<bool>,
    ) -> (Fleet, mpsc::Receiver<Notice>) {
        let shared = Arc::new(Shared {
            settings,
            metrics,
            leading: AtomicBool::new(false),
            peers: ArcSwap::from_pointee(Peers::default()),
            window_ms: AtomicU64::new(10_000),
        });
        let (tx, rx) = mpsc::channel(64);
        let fleet = Fleet { shared };
        tokio::spawn(member::run(
            fleet.clone(),
            store.clone(),
            tx.clone(),
            stop.clone(),
        ));
        tokio::spawn(watch::run(store, tx, stop));
        (fleet, rx)
    }

    pub fn id(&self) -> &str {
        &self.shared.settings.id
    }

    /// Whether this instance decides (ticks the plan, judges the gates) right now.
    pub fn is_leader(&self) -> bool {
        self.shared.leading.load(Ordering::Acquire)
    }

    /// Publish counts over `window` from now on (the current plan's analysis window).
    pub fn set_window(&self, window: Duration) {
        let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self.shared.window_ms.store(ms, Ordering::Relaxed);
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.shared.window_ms.load(Ordering::Relaxed))
    }

    /// This instance's record as it would publish it now.
    fn own_record(&self, now: Instant, now_ms: u64) -> InstanceRecord {
        let s = &self.shared.settings;
        InstanceRecord {
            id: s.id.clone(),
            admin: s.admin.clone(),
            proxy: s.proxy.clone(),
            seen_ms: now_ms,
            window: self.shared.metrics.raw_window(now, self.window()),
        }
    }

    /// The fleet's counts over `window` ending now: this instance's own plus every other
    /// live instance's last published ones.
    pub fn window_snapshot(&self, now: Instant, window: Duration, now_ms: u64) -> WindowSnapshot {
        let own: RawWindow = self.shared.metrics.raw_window(now, window);
        self.shared
            .peers
            .load()
            .merged(self.id(), &own, now_ms)
            .snapshot()
    }

    /// The fleet for the status.
    pub fn view(&self, now: Instant, now_ms: u64) -> FleetView {
        self.shared.peers.load().view(&self.own_record(now, now_ms))
    }
}

/// Connect to the fleet's store as `[store]` says (the password read from its file).
#[cfg(feature = "etcd")]
pub async fn connect(
    cfg: &crate::config::FleetConfig,
    local_dir: &std::path::Path,
) -> Result<EtcdStore, crate::store::StoreError> {
    let user = match (&cfg.user, &cfg.password_file) {
        (Some(user), Some(file)) => {
            let password =
                std::fs::read_to_string(file).map_err(|source| crate::store::StoreError::Io {
                    path: file.clone(),
                    action: "reading [store] password_file",
                    source,
                })?;
            Some((user.clone(), password.trim_end().to_owned()))
        }
        _ => None,
    };
    EtcdStore::connect(&crate::store::etcd::EtcdOptions {
        endpoints: cfg.endpoints.clone(),
        prefix: cfg.prefix.clone(),
        local_dir: local_dir.to_path_buf(),
        ca_file: cfg.ca_file.clone(),
        cert_file: cfg.cert_file.clone(),
        key_file: cfg.key_file.clone(),
        user,
        timeout: cfg.timeout,
    })
    .await
}

/// Who this instance is: `[store] instance`, else `<host name>:<admin port>`.
pub fn settings(
    cfg: &crate::config::FleetConfig,
    admin: std::net::SocketAddr,
    proxy: std::net::SocketAddr,
) -> Settings {
    let id = cfg.instance.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "cutover".into());
        format!("{host}:{}", admin.port())
    });
    Settings {
        id,
        admin: admin.to_string(),
        proxy: proxy.to_string(),
        lease_ttl: cfg.lease_ttl,
        timeout: cfg.timeout,
    }
}
