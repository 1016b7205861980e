//! Comparison of NEW's answer to a copy with OLD's answer to the user (a plan step's
//! `compare = true`): the status, then every header but the hop-by-hop ones, `content-length`
//! (the body's own) and those
//! `[mirror] ignore_headers` (plus a few that always differ between two healthy envs: `date`,
//! `server`, `etag`, ...) names, then — when both bodies fit in `[mirror] compare_max_body` —
//! the bodies, byte for byte or, with `[mirror] ignore_json_fields`, as JSON without those
//! fields.
//!
//! Owns: what counts as a mismatch and its sample. Must not touch: metrics (the copy's task
//! records the result) or either answer's body.

use http::header::{self, HeaderName};
use http::{HeaderMap, Response, StatusCode};

use super::mirror::Copy;
use crate::api::MismatchSample;

/// What OLD answered the user: status and headers (as the user got them), and its body once
/// it has streamed to the user (closed without one when it was over the limit).
pub(super) struct Old {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Option<tokio::sync::oneshot::Receiver<bytes::Bytes>>,
}

/// Longest path kept in a sample.
const MAX_PATH: usize = 200;

/// A sample when NEW's answer (`None`: no answer at all) differs from OLD's, else `None`.
pub(super) fn compare<B>(
    copy: &Copy,
    old: &Old,
    new: Option<&Response<B>>,
) -> Option<MismatchSample> {
    let what = match new {
        None => Some("no answer".to_owned()),
        Some(n) if n.status() != old.status => Some("status".to_owned()),
        Some(n) => differing_header(copy, &old.headers, n.headers()).map(|h| format!("header {h}")),
    }?;
    Some(sample(copy, old, new.map(|n| n.status()), what))
}

/// The sample of a copy whose answer (of `new_status`) differed from `old` in `what`.
pub(super) fn sample(
    copy: &Copy,
    old: &Old,
    new_status: Option<StatusCode>,
    what: String,
) -> MismatchSample {
    let mut path = copy.path().to_owned();
    if path.len() > MAX_PATH {
        let mut cut = MAX_PATH;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
    }
    MismatchSample {
        method: copy.method().to_string(),
        path,
        old_status: old.status.as_u16(),
        new_status: new_status.map(|s| s.as_u16()),
        what,
    }
}

/// Whether two bodies are the same answer: byte for byte, or — with `ignore` (JSON pointers)
/// and both bodies JSON — the same JSON once the fields at those pointers are taken out.
pub(super) fn same_body(old: &[u8], new: &[u8], ignore: &[String]) -> bool {
    if old == new {
        return true;
    }
    if ignore.is_empty() {
        return false;
    }
    let (Ok(mut a), Ok(mut b)) = (
        serde_json::from_slice::<serde_json::Value>(old),
        serde_json::from_slice::<serde_json::Value>(new),
    ) else {
        return false;
    };
    for pointer in ignore {
        remove_at(&mut a, pointer);
        remove_at(&mut b, pointer);
    }
    a == b
}

/// Take out the value at `pointer` (RFC 6901), if there is one.
fn remove_at(v: &mut serde_json::Value, pointer: &str) {
    use serde_json::Value;
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match v.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(&key);
        }
        Some(Value::Array(items)) => {
            if let Some(i) = key.parse::<usize>().ok().filter(|i| *i < items.len()) {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// The first header, in either answer, whose values differ.
fn differing_header<'a>(
    copy: &Copy,
    old: &'a HeaderMap,
    new: &'a HeaderMap,
) -> Option<&'a HeaderName> {
    let judged = |name: &HeaderName| !hop_by_hop(name) && !copy.ignores(name);
    // `content-length` is the body's framing: the bodies themselves are compared apart.
    let judged = |name: &HeaderName| *name != header::CONTENT_LENGTH && judged(name);
    old.keys()
        .filter(|n| judged(n))
        .find(|n| !old.get_all(*n).iter().eq(new.get_all(*n).iter()))
        .or_else(|| {
            new.keys()
                .filter(|n| judged(n))
                .find(|n| !old.contains_key(*n))
        })
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

#[cfg(test)]
mod tests {
    use super::same_body;

    #[test]
    fn bodies_compare_byte_for_byte_or_as_json_without_ignored_fields() {
        let ignore = [
            "/at".to_owned(),
            "/meta/id".to_owned(),
            "/list/0".to_owned(),
        ];
        assert!(same_body(b"abc", b"abc", &[]));
        assert!(!same_body(b"abc", b"abd", &ignore));
        let old = br#"{"id":1,"at":"t1","meta":{"id":"a","v":2},"list":[9,1]}"#;
        let new = br#"{"list":[8,1],"meta":{"v":2,"id":"b"},"at":"t2","id":1}"#;
        assert!(!same_body(old, new, &[]));
        assert!(same_body(old, new, &ignore));
        let other = br#"{"id":2,"at":"t1","meta":{"id":"a","v":2},"list":[9,1]}"#;
        assert!(!same_body(old, other, &ignore));
    }
}
