//! `[mirror]`: how shadow traffic is copied to NEW — which methods may be copied, how many
//! copies a worker keeps in flight, and which answer headers a comparison ignores. (Which
//! share of users is copied, and whether answers are compared, is a plan step's `mirror` and
//! `compare`.)
//!
//! Owns: [`MirrorConfig`], its raw shape and positioned checks. Must not touch: the copies
//! themselves (`crate::proxy`'s mirror reads the checked values).

use http::{HeaderName, Method};
use serde::Deserialize;
use toml::Spanned;

use super::check::Checker;

/// Methods copied when `[mirror] methods` is not set: the safe ones, with no side effects.
pub const SAFE_METHODS: [Method; 3] = [Method::GET, Method::HEAD, Method::OPTIONS];

/// Answer headers a comparison always ignores: they differ between two healthy envs.
pub const ALWAYS_IGNORED: [&str; 9] = [
    "date",
    "server",
    "age",
    "expires",
    "last-modified",
    "etag",
    "set-cookie",
    "x-request-id",
    "x-cutover-served-by",
];

/// The checked `[mirror]` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorConfig {
    /// Methods whose requests may be copied (default: GET, HEAD, OPTIONS).
    pub methods: Vec<Method>,
    /// Copies in flight per data-plane worker; beyond it, copies are dropped and counted.
    pub max_inflight: u32,
    /// Answer headers a comparison ignores, besides [`ALWAYS_IGNORED`] (lower case).
    pub ignore_headers: Vec<HeaderName>,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            methods: SAFE_METHODS.to_vec(),
            max_inflight: 256,
            ignore_headers: ALWAYS_IGNORED
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMirror {
    methods: Option<Vec<Spanned<String>>>,
    max_inflight: Option<Spanned<i64>>,
    ignore_headers: Option<Vec<Spanned<String>>>,
}

impl Checker<'_> {
    pub(super) fn mirror(&mut self, raw: Option<&RawMirror>) -> MirrorConfig {
        let mut cfg = MirrorConfig::default();
        let Some(raw) = raw else { return cfg };
        if let Some(methods) = &raw.methods {
            cfg.methods = methods.iter().filter_map(|m| self.method(m)).collect();
        }
        cfg.max_inflight = self.count(
            raw.max_inflight.as_ref(),
            "mirror.max_inflight",
            1,
            100_000,
            u64::from(cfg.max_inflight),
        ) as u32;
        for h in raw.ignore_headers.iter().flatten() {
            match HeaderName::from_bytes(h.get_ref().trim().to_ascii_lowercase().as_bytes()) {
                Ok(name) => cfg.ignore_headers.push(name),
                Err(_) => self.problem_hint(
                    h.span().start,
                    "mirror.ignore_headers",
                    format!("\"{}\" is not a valid header name", h.get_ref()),
                    "write a header name such as \"x-trace-id\"",
                ),
            }
        }
        cfg
    }

    fn method(&mut self, m: &Spanned<String>) -> Option<Method> {
        let name = m.get_ref().trim().to_ascii_uppercase();
        const COPYABLE: [&str; 8] = [
            "GET", "HEAD", "OPTIONS", "TRACE", "POST", "PUT", "PATCH", "DELETE",
        ];
        if COPYABLE.contains(&name.as_str()) {
            return Method::from_bytes(name.as_bytes()).ok();
        }
        self.problem_hint(
            m.span().start,
            "mirror.methods",
            format!("\"{}\" is not a method that can be copied", m.get_ref()),
            "write HTTP methods such as [\"GET\", \"HEAD\", \"OPTIONS\"]; methods with side \
             effects (POST, PUT, DELETE, PATCH) only for a NEW whose writes go nowhere real",
        );
        None
    }
}
