//! Who holds the store's lock, and which stores this process has open.
//!
//! sled 0.34 takes an exclusive `flock` on `<store>/sled/db` and reports a conflict without
//! naming the holder; on Linux `/proc/locks` lists each lock with the pid that took it and the
//! device and inode of its file, which is enough to name it (best effort: anything unexpected
//! gives "pid unknown", never an error).
//!
//! sled also releases that lock a moment *after* the last handle is dropped (its background
//! writer threads hold the file briefly), so "locked, by this very process" is ambiguous: a
//! store still open here, or one just closed. The registry of stores open in this process
//! tells the two apart, so a reopen after a close can wait out the release while a real
//! second open is refused at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Canonical paths of the stores open in this process.
static OPEN_HERE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// Marks a store directory as open in this process until dropped.
#[derive(Debug)]
pub(crate) struct OpenHere(PathBuf);

impl OpenHere {
    /// Claim `dir` (which must exist); `None` when a live `Store` here already has it.
    pub(crate) fn claim(dir: &Path) -> Option<OpenHere> {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut open = OPEN_HERE.lock().unwrap_or_else(PoisonError::into_inner);
        let inserted = open.get_or_insert_with(HashSet::new).insert(key.clone());
        drop(open);
        // Built only when inserted: dropping an unused `OpenHere` would un-claim the key.
        inserted.then(|| OpenHere(key))
    }
}

impl Drop for OpenHere {
    fn drop(&mut self) {
        let mut open = OPEN_HERE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = open.as_mut() {
            set.remove(&self.0);
        }
    }
}

/// The process holding the lock on `locked_file`, when it can be told.
pub(crate) enum Holder {
    /// Another process, by pid.
    Other(u32),
    /// This process (a store closed a moment ago) or nobody any more (released meanwhile).
    ThisOrGone,
}

pub(crate) fn holder(locked_file: &Path) -> Holder {
    match holder_pid(locked_file) {
        Some(pid) if pid != std::process::id() => Holder::Other(pid),
        _ => Holder::ThisOrGone,
    }
}

/// "this process already has it open", for the message of a second open here.
pub(crate) fn open_here_description() -> String {
    format!(
        "pid {}: this process already has it open",
        std::process::id()
    )
}

#[cfg(target_os = "linux")]
fn holder_pid(locked_file: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;

    let meta = std::fs::metadata(locked_file).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    find_pid(
        &locks,
        dev_major(meta.dev()),
        dev_minor(meta.dev()),
        meta.ino(),
    )
}

#[cfg(not(target_os = "linux"))]
fn holder_pid(_locked_file: &Path) -> Option<u32> {
    None
}

/// The pid of the granted lock on (major, minor, inode) in `/proc/locks` text, e.g.
/// `1: FLOCK  ADVISORY  WRITE 4242 00:2f:123456 0 EOF`. Waiting locks (`->`) are skipped.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn find_pid(locks: &str, major: u64, minor: u64, inode: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") {
            return None;
        }
        let at = fields.iter().position(|f| f.matches(':').count() == 2)?;
        let mut id = fields[at].split(':');
        let maj = u64::from_str_radix(id.next()?, 16).ok()?;
        let min = u64::from_str_radix(id.next()?, 16).ok()?;
        let ino = id.next()?.parse::<u64>().ok()?;
        if (maj, min, ino) != (major, minor, inode) {
            return None;
        }
        let pid = fields.get(at.checked_sub(1)?)?.parse::<u32>().ok()?;
        // A pid outside our pid namespace is shown as 0 or -1: not a useful answer.
        (pid > 0).then_some(pid)
    })
}

/// glibc's `major()` for Linux's 64-bit `dev_t`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn dev_major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000)
}

/// glibc's `minor()` for Linux's 64-bit `dev_t`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn dev_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & 0xffff_ff00)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCKS: &str = "\
1: POSIX  ADVISORY  WRITE 100 08:01:777 0 EOF
2: FLOCK  ADVISORY  WRITE 4242 00:2f:123456 0 EOF
2: -> FLOCK  ADVISORY  WRITE 5151 00:2f:123456 0 EOF
3: FLOCK  ADVISORY  WRITE 99 00:30:123456 0 EOF
";

    #[test]
    fn finds_the_holder_by_device_and_inode() {
        assert_eq!(find_pid(LOCKS, 0, 0x2f, 123456), Some(4242));
        assert_eq!(find_pid(LOCKS, 0, 0x30, 123456), Some(99));
        assert_eq!(find_pid(LOCKS, 8, 1, 777), Some(100));
        assert_eq!(find_pid(LOCKS, 0, 0x2f, 1), None);
    }

    #[test]
    fn splits_device_numbers_like_glibc() {
        // gnu_dev_makedev as glibc writes it; high bits of both numbers included.
        let (major, minor) = (0x1234u64, 0x45_6789_u64);
        let dev = (minor & 0xff)
            | ((major & 0xfff) << 8)
            | ((minor & !0xff) << 12)
            | ((major & !0xfff) << 32);
        assert_eq!((dev_major(dev), dev_minor(dev)), (major, minor));
    }

    #[test]
    fn a_second_claim_is_refused_without_undoing_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let first = OpenHere::claim(tmp.path()).unwrap();
        assert!(OpenHere::claim(tmp.path()).is_none());
        assert!(OpenHere::claim(tmp.path()).is_none());
        drop(first);
        let again = OpenHere::claim(tmp.path());
        assert!(again.is_some());
    }
}
