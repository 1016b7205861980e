//! The watch on the committed state: whichever instance commits, every instance hears of it
//! within etcd's watch latency and loads it (the driver does, on a [`Notice::State`]).
//!
//! A broken watch is started again after a pause, with a notice of revision 0 so that
//! anything committed while it was down is loaded.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::Notice;
use crate::store::etcd::EtcdStore;

const RETRY_AFTER: Duration = Duration::from_millis(500);

pub(super) async fn run(
    store: Arc<EtcdStore>,
    tx: mpsc::Sender<Notice>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = watch_once(&store, &tx) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "the state watch broke; watching again");
                }
            }
            _ = stop.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY_AFTER) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn watch_once(
    store: &EtcdStore,
    tx: &mpsc::Sender<Notice>,
) -> Result<(), etcd_client::Error> {
    let mut stream = store
        .client()
        .watch(store.key("state/current"), None)
        .await?;
    // Anything committed before the watch began.
    if tx.send(Notice::State { revision: 0 }).await.is_err() {
        return Ok(());
    }
    while let Some(resp) = stream.message().await? {
        if resp.canceled() {
            return Err(etcd_client::Error::WatchError(
                resp.cancel_reason().to_owned(),
            ));
        }
        for event in resp.events() {
            let revision = event.kv().map_or(0, |kv| kv.mod_revision());
            if tx.send(Notice::State { revision }).await.is_err() {
                return Ok(());
            }
        }
    }
    Err(etcd_client::Error::WatchError(
        "the watch stream ended".into(),
    ))
}
