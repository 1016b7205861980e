//! Tests with a second process: the lock another cutover holds, and durability under `kill -9`.
//!
//! The second process is this test binary re-executed to run only [`child_process_entry`],
//! told what to do by an environment variable; run normally, that entry does nothing.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{event, state, TestState};
use crate::api::EventAction;
use crate::store::{Store, StoreError};

const CHILD_ENV: &str = "CUTOVER_STORE_TEST_CHILD";
const DEADLINE: Duration = Duration::from_secs(60);

/// Not a test of its own: the body of the child process the tests below start.
#[test]
fn child_process_entry() {
    let Ok(job) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (what, dir) = job.split_once(':').unwrap();
    let store = Store::open(Path::new(dir)).unwrap();
    let mut out = std::io::stdout();
    // libtest has printed "test <name> ... " without a newline: start on a line of our own.
    writeln!(out).unwrap();
    match what {
        "hold" => {
            writeln!(out, "READY").unwrap();
            out.flush().unwrap();
            // Hold the store until the parent closes our stdin (or is gone).
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
        }
        "commit" => {
            // Commit until killed; the bound only stops a child whose parent vanished.
            for n in 1..=1_000_000 {
                let stored = store
                    .commit(&state(n), Some(1), event(EventAction::Weight, n))
                    .unwrap();
                writeln!(out, "COMMITTED {}", stored.id).unwrap();
                out.flush().unwrap();
            }
        }
        other => panic!("unknown child job {other}"),
    }
}

/// Start the child on `job` for the store in `dir`; its stdout lines arrive on the channel.
fn spawn_child(job: &str, dir: &Path) -> (Child, mpsc::Receiver<String>) {
    let module = module_path!().split_once("::").unwrap().1;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::child_process_entry"),
            "--exact",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(CHILD_ENV, format!("{job}:{}", dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Wait for the first line for which `accept` returns `Some`.
fn wait_for<T>(rx: &mpsc::Receiver<String>, mut accept: impl FnMut(&str) -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("child process said nothing in time (or exited)");
        if let Some(found) = accept(&line) {
            return found;
        }
    }
}

#[test]
fn store_locked_by_another_process_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path())
        .unwrap()
        .save_state(&state(9), None)
        .unwrap();
    let (mut child, rx) = spawn_child("hold", tmp.path());
    wait_for(&rx, |line| (line == "READY").then_some(()));

    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("locked by another cutover process"), "{msg}");
    assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
    if cfg!(target_os = "linux") {
        assert!(msg.contains(&format!("pid {}", child.id())), "{msg}");
    }

    // Once the holder is gone the store opens, unchanged.
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.load_state::<TestState>().unwrap(), Some(state(9)));
}

#[test]
fn kill_9_keeps_every_acknowledged_commit_and_its_state() {
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path()).unwrap();
    let (mut child, rx) = spawn_child("commit", tmp.path());
    let acknowledged = wait_for(&rx, |line| {
        let id: u64 = line.strip_prefix("COMMITTED ")?.parse().ok()?;
        (id >= 40).then_some(id)
    });
    child.kill().unwrap(); // SIGKILL: no destructors, no final flush.
    child.wait().unwrap();
    // Lines the child printed after ours were acknowledged too.
    let acknowledged = rx
        .try_iter()
        .filter_map(|l| l.strip_prefix("COMMITTED ")?.parse::<u64>().ok())
        .fold(acknowledged, u64::max);

    let store = Store::open(tmp.path()).unwrap();
    let last = store.last_event_id().unwrap();
    assert!(
        last >= acknowledged,
        "lost commits: {last} < {acknowledged}"
    );
    // State and event were written in one transaction: they agree, whatever the crash cut.
    assert_eq!(store.load_state::<TestState>().unwrap(), Some(state(last)));
    assert_eq!(store.run_state::<TestState>(1).unwrap(), Some(state(last)));
    let events = store.events_since(0, usize::MAX).unwrap();
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=last).collect::<Vec<_>>());
    assert!(events.iter().all(|e| e.data["counter"] == e.id));
}
