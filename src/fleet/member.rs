//! The membership task: one lease at a time, this instance's record, the election, and the
//! other instances' records.
//!
//! A session grants a lease, keeps it alive every third of the TTL, and every 250 ms looks at
//! the leader key (taking it when absent); every second it writes its record and reads
//! everyone's. Any etcd error ends the session: the instance stops leading at once (it could
//! not commit a decision anyway), says etcd is unreachable, and starts a new session after a
//! pause, with a new lease. A restarted instance with the same id does not mistake a leader
//! key left by its previous life for its own: leadership is the key's lease being ours.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use tokio::sync::{mpsc, watch};

use super::view::{InstanceRecord, Peers};
use super::{Fleet, Notice};
use crate::store::etcd::EtcdStore;

const LOOK_EVERY: Duration = Duration::from_millis(250);
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
const RETRY_AFTER: Duration = Duration::from_millis(500);

pub(super) async fn run(
    fleet: Fleet,
    store: Arc<EtcdStore>,
    tx: mpsc::Sender<Notice>,
    mut stop: watch::Receiver<bool>,
) {
    let mut down_since: Option<u64> = None;
    loop {
        let result = Session {
            fleet: &fleet,
            store: &store,
            client: store.client(),
            tx: &tx,
            lease: 0,
            leading: false,
        }
        .run(&mut stop, &mut down_since)
        .await;
        if *stop.borrow() {
            return;
        }
        if let Err(e) = result {
            // Another member may answer: try it at once before calling etcd unreachable.
            if store.failover().await {
                continue;
            }
            let now = now_ms();
            let since = *down_since.get_or_insert(now);
            if fleet.shared.peers.load().etcd_ok {
                tracing::error!(
                    error = %e,
                    "etcd is unreachable: serving at the last committed weight, deciding nothing"
                );
            }
            let mut peers = (**fleet.shared.peers.load()).clone();
            peers.etcd_ok = false;
            peers.etcd_error = Some(e.to_string());
            peers.down_since_ms = Some(since);
            fleet.shared.peers.store(Arc::new(peers));
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY_AFTER) => {}
            _ = stop.changed() => return,
        }
    }
}

struct Session<'a> {
    fleet: &'a Fleet,
    store: &'a EtcdStore,
    client: Client,
    tx: &'a mpsc::Sender<Notice>,
    lease: i64,
    leading: bool,
}

impl Session<'_> {
    async fn run(
        mut self,
        stop: &mut watch::Receiver<bool>,
        down_since: &mut Option<u64>,
    ) -> Result<(), etcd_client::Error> {
        let result = self.serve(stop, down_since).await;
        self.set_leading(false, None).await;
        if *stop.borrow() && self.lease != 0 {
            // Leave at once rather than after the TTL: the others take over sooner.
            let _ = self.client.lease_revoke(self.lease).await;
        }
        result
    }

    async fn serve(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        down_since: &mut Option<u64>,
    ) -> Result<(), etcd_client::Error> {
        let s = &self.fleet.shared.settings;
        let ttl = s.lease_ttl.as_secs().max(2) as i64;
        let timeout = s.timeout;
        self.lease = self.client.lease_grant(ttl, None).await?.id();
        let (mut keeper, mut acks) = self.client.lease_keep_alive(self.lease).await?;
        let keep_every = s.lease_ttl / 3;
        let mut kept = Instant::now();
        let mut published: Option<Instant> = None;
        let mut failing_since: Option<Instant> = None;
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = look.tick() => {}
                _ = stop.changed() => return Ok(()),
            }
            let step = async {
                if kept.elapsed() >= keep_every {
                    keeper.keep_alive().await?;
                    let ack = tokio::time::timeout(timeout, acks.message())
                        .await
                        .map_err(|_| lease_error("no keep-alive answer in time"))??;
                    if ack.is_none_or(|a| a.ttl() <= 0) {
                        return Err(lease_error("the lease expired"));
                    }
                    kept = Instant::now();
                }
                if published.is_none_or(|p| p.elapsed() >= PUBLISH_EVERY) {
                    self.publish().await?;
                    published = Some(Instant::now());
                    if down_since.take().is_some() {
                        tracing::info!("etcd is reachable again");
                        // Whatever was committed meanwhile is the state to route by.
                        let _ = self.tx.send(Notice::State { revision: 0 }).await;
                    }
                }
                self.elect().await
            };
            match step.await {
                Ok(()) => failing_since = None,
                Err(e @ etcd_client::Error::LeaseKeepAliveError(_)) => return Err(e),
                // The member in use is gone, or the members are electing a leader: carry on
                // with the same lease (on another member if one answers), so a minority of
                // members down moves neither the leadership nor the records. Give up only
                // after `timeout` of failures.
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= timeout {
                        return Err(e);
                    }
                    if self.store.failover().await {
                        self.client = self.store.client();
                        if let Ok(k) = self.client.lease_keep_alive(self.lease).await {
                            (keeper, acks) = k;
                        }
                    }
                }
            }
        }
    }

    /// Write our record, then read everyone's.
    async fn publish(&mut self) -> Result<(), etcd_client::Error> {
        let now_ms = now_ms();
        let record = self.fleet.own_record(Instant::now(), now_ms);
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        let key = self.store.key(&format!("instances/{}", record.id));
        let mut kv = self.client.kv_client();
        kv.put(key, bytes, Some(PutOptions::new().with_lease(self.lease)))
            .await?;
        let all = kv
            .get(
                self.store.key("instances/"),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let records: Vec<InstanceRecord> = all
            .kvs()
            .iter()
            .filter_map(|kv| match serde_json::from_slice(kv.value()) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(key = %String::from_utf8_lossy(kv.key()), error = %e, "unreadable instance record skipped");
                    None
                }
            })
            .collect();
        let old = self.fleet.shared.peers.load();
        self.fleet.shared.peers.store(Arc::new(Peers {
            records,
            leader: old.leader.clone(),
            etcd_ok: true,
            etcd_error: None,
            down_since_ms: None,
        }));
        Ok(())
    }

    /// Look at the leader key; take it when nobody holds it.
    async fn elect(&mut self) -> Result<(), etcd_client::Error> {
        let key = self.store.key("leader");
        let id = self.fleet.id().to_owned();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                id.clone(),
                Some(PutOptions::new().with_lease(self.lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let r = self.client.kv_client().txn(txn).await?;
        let (holder, leading, fence) = if r.succeeded() {
            let rev = r.header().map_or(0, |h| h.revision());
            (Some(id.clone()), true, Some(rev))
        } else {
            let now = self.client.kv_client().get(key, None).await?;
            match now.kvs().first() {
                Some(kv) => {
                    let holder = String::from_utf8_lossy(kv.value()).into_owned();
                    let ours = kv.lease() == self.lease;
                    (Some(holder), ours, ours.then_some(kv.create_revision()))
                }
                None => (None, false, None),
            }
        };
        if self.fleet.shared.peers.load().leader != holder {
            let mut peers = (**self.fleet.shared.peers.load()).clone();
            peers.leader = holder;
            self.fleet.shared.peers.store(Arc::new(peers));
        }
        self.set_leading(leading, fence).await;
        Ok(())
    }

    async fn set_leading(&mut self, leading: bool, fence: Option<i64>) {
        if leading == self.leading {
            return;
        }
        self.leading = leading;
        // The fence first when gaining, last when losing: never decide unfenced.
        self.store.set_fence(fence.filter(|_| leading));
        self.fleet.shared.leading.store(leading, Ordering::Release);
        tracing::info!(
            instance = %self.fleet.id(),
            leading,
            "{}",
            if leading { "this instance now leads the fleet" } else { "this instance no longer leads the fleet" }
        );
        let _ = self.tx.send(Notice::Leading(leading)).await;
    }
}

fn lease_error(what: &str) -> etcd_client::Error {
    etcd_client::Error::LeaseKeepAliveError(what.to_owned())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
