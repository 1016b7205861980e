//! What `Store::open` creates, and what it refuses without changing anything.

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{poke, state, TestState};
use crate::store::{Store, StoreError, FORMAT_VERSION};

/// Every entry under `dir` with the sha256 of its contents, to show a refused open did not
/// touch a directory. (Not for a sled database that was opened: sled rewrites its own files
/// on open even when nothing is written.)
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
                out.push((path.display().to_string(), "dir".into()));
            } else {
                let bytes = fs::read(&path).unwrap();
                out.push((
                    path.display().to_string(),
                    format!("{:x}", Sha256::digest(bytes)),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn missing_and_empty_directories_are_initialised() {
    let tmp = tempfile::tempdir().unwrap();
    let nested = tmp.path().join("a/b/store");
    let store = Store::open(&nested).unwrap();
    assert_eq!(store.dir(), nested);
    store.save_state(&state(1), None).unwrap();
    drop(store);
    assert_eq!(
        Store::open(&nested)
            .unwrap()
            .load_state::<TestState>()
            .unwrap(),
        Some(state(1))
    );
    let names: Vec<_> = fs::read_dir(&nested)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["sled"]);

    let empty = tempfile::tempdir().unwrap();
    Store::open(empty.path()).unwrap();
}

#[test]
fn files_beside_the_database_are_left_alone() {
    // The control API writes its token file into the store directory.
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path())
        .unwrap()
        .save_state(&state(4), None)
        .unwrap();
    fs::write(tmp.path().join("token"), "secret").unwrap();
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.load_state::<TestState>().unwrap(), Some(state(4)));
}

#[test]
fn leftover_init_directory_is_reused() {
    // An interrupted first start leaves `sled.init`: the directory still counts as new.
    let tmp = tempfile::tempdir().unwrap();
    drop(sled::open(tmp.path().join("sled.init")).unwrap());
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.last_event_id().unwrap(), 0);
    assert!(!tmp.path().join("sled.init").exists());
}

#[test]
fn other_format_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path())
        .unwrap()
        .save_state(&state(1), None)
        .unwrap();
    poke(
        tmp.path(),
        "meta",
        b"format_version",
        &(FORMAT_VERSION + 1).to_be_bytes(),
    );

    let err = Store::open(tmp.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::VersionMismatch { found, expected, .. }
            if found == FORMAT_VERSION + 1 && expected == FORMAT_VERSION),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
    assert!(msg.contains("format version 2"), "{msg}");
    // Nothing was reset: the version and the data are still there.
    let db = super::open_closed(&tmp.path().join("sled"));
    let version = db.open_tree("meta").unwrap().get("format_version").unwrap();
    assert_eq!(
        version.as_deref(),
        Some(&(FORMAT_VERSION + 1).to_be_bytes()[..])
    );
    assert!(db
        .open_tree("state")
        .unwrap()
        .get("current")
        .unwrap()
        .is_some());
}

#[test]
fn directory_with_other_files_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    fs::create_dir(tmp.path().join("photos")).unwrap();
    let before = snapshot(tmp.path());

    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("not a cutover plan store"), "{msg}");
    assert!(msg.contains("notes.txt, photos"), "{msg}");
    assert_eq!(snapshot(tmp.path()), before);
}

#[test]
fn a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("store");
    fs::write(&file, "x").unwrap();
    let err = Store::open(&file).unwrap_err();
    assert!(err.to_string().contains("a file, not a directory"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn foreign_sled_database_is_refused() {
    // Someone else's sled database, directly in the directory.
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::open(tmp.path()).unwrap();
    db.insert("theirs", "data").unwrap();
    db.flush().unwrap();
    drop(db);
    let before = snapshot(tmp.path());
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("sled database that is not a cutover store"),
        "{err}"
    );
    assert_eq!(snapshot(tmp.path()), before);

    // A sled database where ours would be, with data but without our version key.
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::open(tmp.path().join("sled")).unwrap();
    db.open_tree("state")
        .unwrap()
        .insert("current", "{}")
        .unwrap();
    db.flush().unwrap();
    drop(db);
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert!(
        err.to_string().contains("without a cutover format version"),
        "{err}"
    );
}

#[test]
fn empty_sled_database_in_place_is_refused_not_reinitialised() {
    // Could be a damaged store that sled opens as empty: never start over silently.
    let tmp = tempfile::tempdir().unwrap();
    drop(sled::open(tmp.path().join("sled")).unwrap());
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
}

#[test]
fn incomplete_database_directory_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("sled")).unwrap();
    fs::write(tmp.path().join("sled/db"), b"garbage").unwrap();
    let before = snapshot(tmp.path());
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Unreadable { .. }), "{err:?}");
    assert!(err.to_string().contains("conf"), "{err}");
    assert_eq!(snapshot(tmp.path()), before);
}

#[test]
fn damaged_database_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for n in 0..50 {
        store.save_state(&state(n), Some(n)).unwrap();
    }
    drop(store);
    // Overwrite the whole data file with noise of the same length.
    let db_file = tmp.path().join("sled/db");
    let len = fs::metadata(&db_file).unwrap().len() as usize;
    let noise: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
    fs::write(&db_file, &noise).unwrap();

    match Store::open(tmp.path()) {
        Err(err) => {
            assert!(
                matches!(
                    err,
                    StoreError::Unreadable { .. } | StoreError::NotAStore { .. }
                ),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
        }
        Ok(store) => panic!(
            "a store with a destroyed data file opened; state = {:?}",
            store.load_state::<TestState>()
        ),
    }
}

#[test]
fn same_store_twice_in_one_process_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = Store::open(tmp.path()).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("locked by another cutover process"),
        "{err}"
    );
    if cfg!(target_os = "linux") {
        let own = format!(
            "pid {}: this process already has it open",
            std::process::id()
        );
        assert!(err.to_string().contains(&own), "{err}");
    }
}
