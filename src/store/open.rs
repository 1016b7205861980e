//! Opening a store directory: initialise only an empty or missing directory, refuse anything
//! else that is not a cutover store of our format version, and say why.
//!
//! On disk, `<dir>/sled/` is the sled database and nothing else of ours lives beside it except
//! files other modules own (the control API's token). A new store is first built in
//! `<dir>/sled.init/`, given its format version, flushed, and only then renamed to
//! `<dir>/sled/`: so a `sled/` directory without our version key is never "a store we were
//! about to create" and is always refused, even if sled happens to open it as empty (which a
//! damaged database could otherwise pass for).

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

use super::codec::{decode_u64, id_key};
use super::lock::{self, Holder, OpenHere};
use super::{StoreError, FORMAT_KEY, FORMAT_VERSION, META};

/// The sled database inside the store directory.
pub(crate) const SLED_DIR: &str = "sled";
/// Where a new store is built before it is renamed to [`SLED_DIR`].
const INIT_DIR: &str = "sled.init";

/// Open (or, for an empty or missing `dir`, create) the sled database of the store in `dir`,
/// with the mark that this process has it open.
pub(crate) fn open_db(dir: &Path) -> Result<(sled::Db, OpenHere), StoreError> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|source| io(dir, "creating the directory", source))?
        }
        Err(source) => return Err(io(dir, "reading the directory", source)),
        Ok(meta) if !meta.is_dir() => {
            return Err(not_a_store(dir, "it is a file, not a directory".into()))
        }
        Ok(_) => {}
    }
    let Some(open_here) = OpenHere::claim(dir) else {
        return Err(StoreError::Locked {
            path: dir.to_path_buf(),
            holder: lock::open_here_description(),
        });
    };
    let sled_dir = dir.join(SLED_DIR);
    if !sled_dir.is_dir() {
        let mut others = entries(dir)?;
        others.retain(|name| name != INIT_DIR);
        if !others.is_empty() {
            return Err(not_a_store(dir, describe(dir, others)));
        }
        initialise(dir)?;
    }
    Ok((open_existing(dir, &sled_dir)?, open_here))
}

/// Build a new store in `<dir>/sled.init` and move it into place.
fn initialise(dir: &Path) -> Result<(), StoreError> {
    let init_dir = dir.join(INIT_DIR);
    tracing::info!(path = %dir.display(), "creating a new plan store");
    // A leftover `sled.init` is ours from an interrupted first start: it holds at most the
    // version key, so reusing it loses nothing.
    let db = sled_open(dir, &init_dir)?;
    let sled_err = |action, source| StoreError::Sled {
        path: dir.to_path_buf(),
        action,
        source,
    };
    let meta = db
        .open_tree(META)
        .map_err(|e| sled_err("creating the meta tree", e))?;
    meta.insert(FORMAT_KEY, &id_key(FORMAT_VERSION))
        .map_err(|e| sled_err("writing the format version", e))?;
    db.flush()
        .map_err(|e| sled_err("flushing the new store", e))?;
    drop(meta);
    drop(db);
    fs::rename(&init_dir, dir.join(SLED_DIR))
        .map_err(|source| io(dir, "moving the new store into place", source))
}

/// Open `<dir>/sled` and check that it is a cutover store of our format version.
fn open_existing(dir: &Path, sled_dir: &Path) -> Result<sled::Db, StoreError> {
    let missing: Vec<&str> = ["conf", "db"]
        .into_iter()
        .filter(|f| !sled_dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        // Checked before sled touches it: sled would quietly create what is missing.
        return Err(StoreError::Unreadable {
            path: dir.to_path_buf(),
            detail: format!(
                "{} lacks the sled file(s) {}",
                sled_dir.display(),
                missing.join(", ")
            ),
        });
    }
    let db = sled_open(dir, sled_dir)?;
    // `open_tree` would create the tree: look before touching a database that may not be ours.
    let has_meta = db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == META.as_bytes());
    let version = if has_meta {
        let meta = db.open_tree(META).map_err(|source| StoreError::Sled {
            path: dir.to_path_buf(),
            action: "opening the meta tree",
            source,
        })?;
        meta.get(FORMAT_KEY).map_err(|source| StoreError::Sled {
            path: dir.to_path_buf(),
            action: "reading the format version",
            source,
        })?
    } else {
        None
    };
    let Some(version) = version else {
        return Err(not_a_store(
            dir,
            format!(
                "{} is a sled database without a cutover format version",
                sled_dir.display()
            ),
        ));
    };
    let found = decode_u64(dir, META, FORMAT_KEY, &version)?;
    if found != FORMAT_VERSION {
        return Err(StoreError::VersionMismatch {
            path: dir.to_path_buf(),
            found,
            expected: FORMAT_VERSION,
        });
    }
    Ok(db)
}

/// How long to wait for a lock this process itself still holds on a store it has closed
/// (sled releases it from a background thread shortly after the last handle is dropped).
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Open a sled database, turning its lock error and any panic into clear errors.
fn sled_open(dir: &Path, sled_dir: &Path) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        match try_sled_open(dir, sled_dir) {
            Ok(db) => return Ok(db),
            Err(Some(err)) => return Err(err),
            Err(None) => {
                let holder = match lock::holder(&sled_dir.join("db")) {
                    Holder::Other(pid) => format!("pid {pid}"),
                    Holder::ThisOrGone if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Holder::ThisOrGone => "pid unknown".into(),
                };
                return Err(StoreError::Locked {
                    path: dir.to_path_buf(),
                    holder,
                });
            }
        }
    }
}

/// One attempt; `Err(None)` means the database is locked.
fn try_sled_open(dir: &Path, sled_dir: &Path) -> Result<sled::Db, Option<StoreError>> {
    let config = sled::Config::new().path(sled_dir);
    // sled 0.34 can panic on some damaged files; a damaged store must be an error, not a crash.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
    match opened {
        Ok(Ok(db)) => Ok(db),
        // sled reports a held lock as an `Other` io error with this text (config.rs, try_lock).
        Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
            Err(None)
        }
        Ok(Err(e)) => Err(Some(StoreError::Unreadable {
            path: dir.to_path_buf(),
            detail: e.to_string(),
        })),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(Some(StoreError::Unreadable {
                path: dir.to_path_buf(),
                detail: format!("sled failed while opening it: {why}"),
            }))
        }
    }
}

/// Names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Result<Vec<String>, StoreError> {
    let read = fs::read_dir(dir).map_err(|source| io(dir, "listing the directory", source))?;
    let mut names = Vec::new();
    for entry in read {
        let entry = entry.map_err(|source| io(dir, "listing the directory", source))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// What a non-empty foreign directory holds, in a few words.
fn describe(dir: &Path, names: Vec<String>) -> String {
    if dir.join("conf").is_file() && dir.join("db").is_file() {
        return "it holds a sled database that is not a cutover store".into();
    }
    const SHOWN: usize = 5;
    let mut list = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(", and {} more", names.len() - SHOWN));
    }
    format!("it is not empty and has no {SLED_DIR}/ database: found {list}")
}

fn io(dir: &Path, action: &'static str, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: dir.to_path_buf(),
        action,
        source,
    }
}

fn not_a_store(dir: &Path, found: String) -> StoreError {
    StoreError::NotAStore {
        path: dir.to_path_buf(),
        found,
    }
}
