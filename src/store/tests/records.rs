//! Round trips, ids, atomicity and damaged records.

use super::{event, poke, state, TestState};
use crate::api::EventAction;
use crate::store::{plan_hash, Store, StoreError};

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir).unwrap()
}

#[test]
fn plans_round_trip_and_are_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let a = store.put_plan("alpha", "name = \"alpha\"\n", 10).unwrap();
    let b = store.put_plan("beta", "name = \"beta\"\n", 5).unwrap();
    assert_eq!(a, plan_hash("name = \"alpha\"\n"));
    assert_eq!(a.len(), 64);
    // Same text again: same hash, first record kept.
    assert_eq!(
        store.put_plan("renamed", "name = \"alpha\"\n", 99).unwrap(),
        a
    );

    assert_eq!(
        store.plan_text(&a).unwrap().as_deref(),
        Some("name = \"alpha\"\n")
    );
    assert_eq!(store.plan_text(&plan_hash("other")).unwrap(), None);
    let listed = store.plans().unwrap();
    let names: Vec<_> = listed
        .iter()
        .map(|p| (p.name.as_str(), p.stored_at_ms))
        .collect();
    assert_eq!(names, [("beta", 5), ("alpha", 10)]);
    assert_eq!(listed[0].hash, b);

    drop(store);
    let store = open(tmp.path());
    assert_eq!(store.plans().unwrap(), listed);
    assert_eq!(
        store.plan_text(&b).unwrap().as_deref(),
        Some("name = \"beta\"\n")
    );
}

#[test]
fn ids_are_monotonic_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    assert_eq!(store.last_event_id().unwrap(), 0);
    assert_eq!(store.next_run_id().unwrap(), 1);
    assert_eq!(store.next_run_id().unwrap(), 2);
    let e1 = store
        .commit(&state(1), Some(2), event(EventAction::Start, 1))
        .unwrap();
    let e2 = store
        .commit(&state(2), Some(2), event(EventAction::Advance, 2))
        .unwrap();
    assert_eq!((e1.id, e2.id), (1, 2));
    drop(store);

    let store = open(tmp.path());
    assert_eq!(store.last_event_id().unwrap(), 2);
    assert_eq!(store.next_run_id().unwrap(), 3);
    let e3 = store
        .commit(&state(3), None, event(EventAction::Pause, 3))
        .unwrap();
    assert_eq!(e3.id, 3);
}

#[test]
fn commit_stores_state_run_and_event_together() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    assert_eq!(store.load_state::<TestState>().unwrap(), None);
    let stored = store
        .commit(&state(7), Some(4), event(EventAction::Advance, 7))
        .unwrap();
    assert_eq!(stored, event(EventAction::Advance, 7).with_id(1));
    drop(store);

    let store = open(tmp.path());
    assert_eq!(store.load_state::<TestState>().unwrap(), Some(state(7)));
    assert_eq!(store.run_state::<TestState>(4).unwrap(), Some(state(7)));
    assert_eq!(store.run_state::<TestState>(5).unwrap(), None);
    assert_eq!(store.events_since(0, 10).unwrap(), vec![stored]);
}

#[test]
fn save_state_writes_without_an_event() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store
        .commit(&state(1), Some(1), event(EventAction::Start, 1))
        .unwrap();
    store.save_state(&state(2), Some(1)).unwrap();
    store.save_state(&state(3), None).unwrap();
    drop(store);

    let store = open(tmp.path());
    assert_eq!(store.load_state::<TestState>().unwrap(), Some(state(3)));
    assert_eq!(store.run_state::<TestState>(1).unwrap(), Some(state(2)));
    assert_eq!(store.last_event_id().unwrap(), 1);
}

#[test]
fn events_since_pages_in_id_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    // Past 255 and 256 so a little-endian or textual key would sort wrongly.
    for n in 1..=300 {
        store
            .commit(&state(n), None, event(EventAction::Weight, n))
            .unwrap();
    }
    let ids = |after, limit| -> Vec<u64> {
        store
            .events_since(after, limit)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect()
    };
    assert_eq!(ids(0, 3), [1, 2, 3]);
    assert_eq!(ids(254, 4), [255, 256, 257, 258]);
    assert_eq!(ids(298, 10), [299, 300]);
    assert!(ids(300, 10).is_empty());
    assert!(ids(u64::MAX, 10).is_empty());
    assert!(ids(0, 0).is_empty());
    let all = store.events_since(0, usize::MAX).unwrap();
    assert_eq!(all.len(), 300);
    assert!(all.iter().all(|e| e.data["counter"] == e.id));
}

#[test]
fn concurrent_commits_get_distinct_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|n| {
                        store
                            .commit(&state(n), None, event(EventAction::Weight, t))
                            .unwrap()
                            .id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=100).collect::<Vec<_>>());
    assert_eq!(store.last_event_id().unwrap(), 100);
}

#[test]
fn damaged_state_record_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path()).save_state(&state(1), None).unwrap();
    poke(tmp.path(), "state", b"current", b"{not json");

    let err = open(tmp.path()).load_state::<TestState>().unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { tree: "state", .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("state/current"), "{msg}");
    assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
}

#[test]
fn damaged_event_and_plan_records_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store
        .commit(&state(1), None, event(EventAction::Start, 1))
        .unwrap();
    store
        .commit(&state(2), None, event(EventAction::Advance, 2))
        .unwrap();
    let hash = store.put_plan("p", "text", 1).unwrap();
    drop(store);
    poke(tmp.path(), "events", &2u64.to_be_bytes(), b"\xff\x00");
    poke(tmp.path(), "plans", hash.as_bytes(), b"[]");

    let store = open(tmp.path());
    assert_eq!(store.events_since(0, 1).unwrap().len(), 1);
    let msg = store.events_since(0, 10).unwrap_err().to_string();
    assert!(msg.contains("events/2"), "{msg}");
    let msg = store.plan_text(&hash).unwrap_err().to_string();
    assert!(msg.contains(&format!("plans/{hash}")), "{msg}");
    assert!(store.plans().is_err());
}

#[test]
fn damaged_counter_stops_commit_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path())
        .commit(&state(1), None, event(EventAction::Start, 1))
        .unwrap();
    poke(tmp.path(), "meta", b"last_event_id", b"bad");

    let store = open(tmp.path());
    let err = store
        .commit(&state(2), None, event(EventAction::Advance, 2))
        .unwrap_err();
    assert!(err.to_string().contains("meta/last_event_id"), "{err}");
    assert_eq!(store.load_state::<TestState>().unwrap(), Some(state(1)));
}

#[test]
fn a_counter_behind_the_log_never_overwrites_an_event() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let first = store
        .commit(&state(1), None, event(EventAction::Start, 1))
        .unwrap();
    store
        .commit(&state(2), None, event(EventAction::Advance, 2))
        .unwrap();
    drop(store);
    poke(tmp.path(), "meta", b"last_event_id", &0u64.to_be_bytes());

    let store = open(tmp.path());
    let err = store
        .commit(&state(3), None, event(EventAction::Pause, 3))
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(store.events_since(0, 1).unwrap(), vec![first]);
    assert_eq!(store.load_state::<TestState>().unwrap(), Some(state(2)));
}

#[test]
fn reopen_right_after_close_succeeds() {
    // sled releases its file lock from a background thread a moment after the last handle
    // is dropped; a restart in the same process must not mistake that for another owner.
    let tmp = tempfile::tempdir().unwrap();
    for n in 0..200 {
        let store = open(tmp.path());
        store.save_state(&state(n), None).unwrap();
        drop(store);
        let again = Store::open(tmp.path()).unwrap_or_else(|e| panic!("reopen {n}: {e}"));
        assert_eq!(again.load_state::<TestState>().unwrap(), Some(state(n)));
    }
}

#[test]
// Refutable only with the `etcd` feature.
#[allow(irrefutable_let_patterns)]
fn readers_never_see_an_event_before_it_is_flushed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let first = store
        .commit(&state(1), None, event(EventAction::Start, 1))
        .unwrap();
    // An event in the log that no commit has flushed yet: as a reader sees the tree between
    // a commit's transaction and its flush.
    let crate::store::Backend::Sled(sled) = &store.backend else {
        panic!("a sled store")
    };
    let pending = crate::store::codec::id_key(2);
    sled.inner.events.insert(pending, b"{}".to_vec()).unwrap();
    assert_eq!(store.events_since(0, 10).unwrap(), vec![first.clone()]);
    assert_eq!(store.events_since(1, 10).unwrap(), vec![]);
    // Reopened: what is on disk is durable, and shown.
    sled.inner.events.remove(pending).unwrap();
    drop(store);
    let store = open(tmp.path());
    assert_eq!(store.events_since(0, 10).unwrap(), vec![first]);
}
