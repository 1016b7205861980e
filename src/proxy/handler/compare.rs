//! Comparison of NEW's answer to a copy with OLD's answer to the user (a plan step's
//! `compare = true`): the status, then every header but the hop-by-hop ones, `content-length`
//! (bodies are not compared) and those
//! `[mirror] ignore_headers` (plus a few that always differ between two healthy envs: `date`,
//! `server`, `etag`, ...) names.
//!
//! Owns: what counts as a mismatch and its sample. Must not touch: metrics (the copy's task
//! records the result) or either answer's body.

use http::header::{self, HeaderName};
use http::{HeaderMap, Response, StatusCode};

use super::mirror::Copy;
use crate::api::MismatchSample;

/// What OLD answered the user: status and headers (as the user got them).
pub(super) struct Old {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
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
    let mut path = copy.path().to_owned();
    if path.len() > MAX_PATH {
        let mut cut = MAX_PATH;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
    }
    Some(MismatchSample {
        method: copy.method().to_string(),
        path,
        old_status: old.status.as_u16(),
        new_status: new.map(|n| n.status().as_u16()),
        what,
    })
}

/// The first header, in either answer, whose values differ.
fn differing_header<'a>(
    copy: &Copy,
    old: &'a HeaderMap,
    new: &'a HeaderMap,
) -> Option<&'a HeaderName> {
    let judged = |name: &HeaderName| !hop_by_hop(name) && !copy.ignores(name);
    // `content-length` is the body's, and bodies are not compared (nor their framing).
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
