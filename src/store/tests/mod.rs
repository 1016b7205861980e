//! Store tests against real sled databases in temporary directories.

mod process;
mod records;
mod refuse;

use serde::{Deserialize, Serialize};

use crate::api::{EventAction, NewEvent, RunState};

/// A stand-in for the orchestrator's state: the store treats it as opaque JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TestState {
    counter: u64,
    weight: f64,
}

fn state(counter: u64) -> TestState {
    TestState {
        counter,
        weight: counter as f64 / 2.0,
    }
}

fn event(action: EventAction, counter: u64) -> NewEvent {
    NewEvent {
        at_ms: 1_000 + counter,
        actor: "test".into(),
        action,
        reason: format!("step {counter}"),
        run_id: Some(1),
        state: RunState::Running,
        weight: counter as f64 / 2.0,
        data: serde_json::json!({ "counter": counter }),
    }
}

/// Write raw bytes into a tree of the store's sled database (the store must be closed).
fn poke(dir: &std::path::Path, tree: &str, key: &[u8], value: &[u8]) {
    let db = open_closed(&dir.join("sled"));
    db.open_tree(tree).unwrap().insert(key, value).unwrap();
    db.flush().unwrap();
}

/// Open the sled database of a store that was just closed. sled lets go of its file lock when
/// its last background thread ends, a moment after the store is dropped: wait for that (at most
/// 5 s) instead of failing on "could not acquire lock".
fn open_closed(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("waiting for sled's lock: {e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    }
}
