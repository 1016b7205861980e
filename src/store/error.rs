//! The store's error type. Every variant names the store's path, and the ones an operator can
//! act on say what to do: a refused store is never "fixed" by quietly starting an empty one.

use std::path::PathBuf;

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Creating, listing or renaming the store's directory failed.
    #[error("plan store {path}: {action} failed: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// Another process (or another handle in this process) holds the store's lock.
    #[error(
        "plan store {path} is locked by another cutover process ({holder}); stop that process \
         or give this one another [store] path"
    )]
    Locked { path: PathBuf, holder: String },

    /// The directory is not empty and does not hold a cutover store.
    #[error(
        "{path} is not a cutover plan store ({found}); refusing to use it so nothing in it is \
         overwritten: point [store] path at an empty or missing directory, or at an existing \
         cutover store"
    )]
    NotAStore { path: PathBuf, found: String },

    /// The store was written by a cutover with another on-disk format.
    #[error(
        "plan store {path} has format version {found}, this cutover reads version {expected}; \
         use the cutover release that wrote it, or start with a new [store] path"
    )]
    VersionMismatch {
        path: PathBuf,
        found: u64,
        expected: u64,
    },

    /// sled could not open the database (damaged files, incompatible sled version, ...).
    #[error(
        "plan store {path} cannot be read: {detail}; it was left untouched (restore it from a \
         backup, or start with a new [store] path)"
    )]
    Unreadable { path: PathBuf, detail: String },

    /// A read, write, transaction or flush failed in sled after the store was opened.
    #[error("plan store {path}: {action} failed: {source}")]
    Sled {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: sled::Error,
    },

    /// A stored record could not be decoded.
    #[error("plan store {path}: record {tree}/{key} is damaged: {detail}")]
    Corrupt {
        path: PathBuf,
        tree: &'static str,
        key: String,
        detail: String,
    },

    /// A value handed to the store could not be encoded as JSON.
    #[error("plan store {path}: cannot encode {what}: {source}")]
    Encode {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// etcd could not be reached or refused a request (fleet mode).
    #[error("plan store {at}: {action} failed: {detail}")]
    Etcd {
        at: String,
        action: &'static str,
        detail: String,
    },

    /// The etcd member in use could not be reached (the request was not served); the store
    /// moves to another member and sends it again, so callers see [`StoreError::Etcd`] only
    /// when none answers.
    #[error("plan store {at}: {action} failed: {detail}")]
    EtcdUnreachable {
        at: String,
        action: &'static str,
        detail: String,
    },

    /// Another instance of the fleet changed the state since this one read it, or this
    /// instance no longer leads: nothing was written; read the state again and decide again.
    #[error(
        "plan store {at}: {action}: the fleet's state changed since this instance read it \
         (another instance decided first, or this one no longer leads); nothing was written"
    )]
    Conflict { at: String, action: &'static str },
}
