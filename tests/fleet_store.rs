//! The etcd backend of the store against a real etcd: one decision, once. Two handles on one
//! prefix stand for two instances; built with `--features etcd`.
#![cfg(feature = "etcd")]

mod common;

use std::time::Duration;

use common::etcd::Etcd;
use cutover::api::{EventAction, NewEvent, RunState};
use cutover::store::etcd::{EtcdOptions, EtcdStore};
use cutover::store::{Store, StoreError};

fn event(n: u64) -> NewEvent {
    NewEvent {
        at_ms: n,
        actor: "test".into(),
        action: EventAction::Pause,
        reason: format!("decision {n}"),
        run_id: Some(1),
        state: RunState::Paused,
        weight: 10.0,
        data: serde_json::json!({}),
    }
}

async fn open(etcd: &Etcd, prefix: &str, dir: &std::path::Path) -> Store {
    let store = EtcdStore::connect(&EtcdOptions {
        endpoints: etcd.endpoints(),
        prefix: prefix.into(),
        local_dir: dir.to_path_buf(),
        ca_file: None,
        cert_file: None,
        key_file: None,
        user: None,
        timeout: Duration::from_secs(2),
    })
    .await
    .expect("connect");
    Store::from_etcd(store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_cannot_both_apply_a_decision_taken_on_the_same_state() {
    let etcd = Etcd::single();
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open(&etcd, "/cutover/t", dir.path()).await;
    let b = open(&etcd, "/cutover/t", dir.path()).await;
    tokio::task::spawn_blocking(move || {
        assert_eq!(a.load_state::<u64>().expect("load"), None);
        assert_eq!(b.load_state::<u64>().expect("load"), None);
        // Both decide on the same (empty) state: the first commit wins, the second writes
        // nothing and says why.
        let first = a.commit(&1u64, Some(1), event(1)).expect("first");
        assert_eq!(first.id, 1);
        let second = b.commit(&2u64, Some(1), event(2));
        assert!(
            matches!(second, Err(StoreError::Conflict { .. })),
            "{second:?}"
        );
        assert_eq!(b.last_event_id().expect("id"), 1);
        // Having read the new state, b decides again, and it sticks.
        assert_eq!(b.load_state::<u64>().expect("load"), Some(1));
        let third = b.commit(&3u64, Some(1), event(3)).expect("third");
        assert_eq!(third.id, 2);
        assert_eq!(a.run_state::<u64>(1).expect("run"), Some(3));
        let log: Vec<u64> = a
            .events_since(0, 10)
            .expect("events")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(log, [1, 2]);
        // Hold progress is guarded the same way.
        assert!(matches!(
            a.save_state(&9u64, Some(1)),
            Err(StoreError::Conflict { .. })
        ));
        // A decision fenced on a leadership this handle does not hold is refused.
        assert!(matches!(
            b.commit_fenced(&4u64, Some(1), event(4)),
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(b.load_state::<u64>().expect("load"), Some(3));
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_holding_other_keys_is_refused() {
    let etcd = Etcd::single();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut client = etcd_client_for(&etcd).await;
    client.put("/foreign/thing", "x", None).await.expect("put");
    let err = EtcdStore::connect(&EtcdOptions {
        endpoints: etcd.endpoints(),
        prefix: "/foreign".into(),
        local_dir: dir.path().to_path_buf(),
        ca_file: None,
        cert_file: None,
        key_file: None,
        user: None,
        timeout: Duration::from_secs(2),
    })
    .await
    .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("not a cutover plan store") && text.contains("/foreign/thing"),
        "{text}"
    );
}

async fn etcd_client_for(etcd: &Etcd) -> etcd_client::Client {
    etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .expect("client")
}
