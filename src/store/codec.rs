//! Keys and values as bytes: big-endian u64 keys (so sled's byte order is id order) and JSON
//! values. Decoding never panics: a record that does not decode becomes a
//! [`StoreError::Corrupt`] naming its tree and key.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

/// The 8 big-endian bytes of `id`: byte order equals numeric order.
pub(crate) fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// The id an [`id_key`] holds; `None` for a key of another length.
pub(crate) fn key_id(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

/// A key as an operator should read it in an error: the id for 8-byte keys, else the text.
pub(crate) fn show_key(key: &[u8]) -> String {
    match key_id(key) {
        Some(id) if !key.iter().all(|b| b.is_ascii_graphic()) => id.to_string(),
        _ => String::from_utf8_lossy(key).into_owned(),
    }
}

/// Decode a big-endian u64 value (counters, format version).
pub(crate) fn decode_u64(
    path: &Path,
    tree: &'static str,
    key: &[u8],
    value: &[u8],
) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            path: path.to_path_buf(),
            tree,
            key: show_key(key),
            detail: format!("expected an 8-byte counter, found {} bytes", value.len()),
        })
}

/// Decode a JSON record.
pub(crate) fn decode_json<T: DeserializeOwned>(
    path: &Path,
    tree: &'static str,
    key: &[u8],
    value: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        tree,
        key: show_key(key),
        detail: e.to_string(),
    })
}

/// Encode a value as JSON.
pub(crate) fn encode_json<T: Serialize + ?Sized>(
    path: &Path,
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        path: path.to_path_buf(),
        what,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_keys_sort_like_ids() {
        let ids = [0u64, 1, 2, 255, 256, 65_535, 1 << 40, u64::MAX];
        for pair in ids.windows(2) {
            assert!(id_key(pair[0]) < id_key(pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn keys_are_shown_readably() {
        assert_eq!(show_key(&id_key(42)), "42");
        assert_eq!(show_key(b"current"), "current");
        assert_eq!(show_key(b"abcdefgh"), "abcdefgh");
    }

    #[test]
    fn bad_counter_is_an_error() {
        let err = decode_u64(Path::new("/s"), "meta", b"last_event_id", b"xyz").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("meta/last_event_id"), "{msg}");
        assert!(msg.contains("/s"), "{msg}");
    }
}
