//! Store tests against real sled databases in temporary directories.

mod process;
mod records;
mod refuse;

use serde::{Deserialize, Serialize};

use crate::api::{NewEvent, RunState};

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

fn event(action: &str, counter: u64) -> NewEvent {
    NewEvent {
        at_ms: 1_000 + counter,
        actor: "test".into(),
        action: action.into(),
        reason: format!("step {counter}"),
        run_id: Some(1),
        state: RunState::Running,
        weight: counter as f64 / 2.0,
        data: serde_json::json!({ "counter": counter }),
    }
}

/// Write raw bytes into a tree of the store's sled database (the store must be closed).
fn poke(dir: &std::path::Path, tree: &str, key: &[u8], value: &[u8]) {
    let db = sled::open(dir.join("sled")).unwrap();
    db.open_tree(tree).unwrap().insert(key, value).unwrap();
    db.flush().unwrap();
}
