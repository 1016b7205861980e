//! `[mirror]`: how shadow traffic is copied to NEW — which methods may be copied, how many
//! copies a worker keeps in flight, and what a comparison reads (bodies up to a size) and
//! ignores (headers, JSON fields). (Which
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
    /// Request bodies up to this many bytes are copied (kept while they go to OLD); a request
    /// with a longer body is not copied (skipped and counted).
    pub max_body: usize,
    /// Answer headers a comparison ignores, besides [`ALWAYS_IGNORED`] (lower case).
    pub ignore_headers: Vec<HeaderName>,
    /// Bodies up to this many bytes are compared (both answers'); 0: bodies never are.
    pub compare_max_body: usize,
    /// JSON fields (RFC 6901 pointers, `/meta/request_id`) a body comparison ignores.
    pub ignore_json_fields: Vec<String>,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            methods: SAFE_METHODS.to_vec(),
            max_inflight: 256,
            max_body: 64 * 1024,
            ignore_headers: ALWAYS_IGNORED
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
            compare_max_body: 64 * 1024,
            ignore_json_fields: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMirror {
    methods: Option<Vec<Spanned<String>>>,
    max_inflight: Option<Spanned<i64>>,
    max_body: Option<Spanned<i64>>,
    ignore_headers: Option<Vec<Spanned<String>>>,
    compare_max_body: Option<Spanned<i64>>,
    ignore_json_fields: Option<Vec<Spanned<String>>>,
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
        cfg.max_body = self.count(
            raw.max_body.as_ref(),
            "mirror.max_body",
            0,
            16 * 1024 * 1024,
            cfg.max_body as u64,
        ) as usize;
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
        cfg.compare_max_body = self.count(
            raw.compare_max_body.as_ref(),
            "mirror.compare_max_body",
            0,
            16 * 1024 * 1024,
            cfg.compare_max_body as u64,
        ) as usize;
        for p in raw.ignore_json_fields.iter().flatten() {
            if p.get_ref().starts_with('/') {
                cfg.ignore_json_fields.push(p.get_ref().clone());
            } else {
                self.problem_hint(
                    p.span().start,
                    "mirror.ignore_json_fields",
                    format!("\"{}\" is not a JSON pointer", p.get_ref()),
                    format!(
                        "write a pointer from the body's root, e.g. \"/{}\"",
                        p.get_ref()
                    ),
                );
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

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    const ENVS: &str = "[listen]\naddr = \"127.0.0.1:8080\"\n\
                        [envs.old]\nupstreams = [\"127.0.0.1:9001\"]\n\
                        [envs.new]\nupstreams = [\"127.0.0.1:9002\"]\n\
                        [envs.fallback]\nupstreams = [\"127.0.0.1:9003\"]\n";

    fn problems(mirror: &str) -> Vec<String> {
        match Config::parse(&format!("{ENVS}{mirror}"), "c.toml") {
            Err(ConfigError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn defaults_copy_only_safe_methods() {
        let cfg = Config::parse(ENVS, "c.toml").expect("valid");
        assert_eq!(cfg.mirror.methods, super::SAFE_METHODS.to_vec());
        assert_eq!(
            (cfg.mirror.max_inflight, cfg.mirror.compare_max_body),
            (256, 65536)
        );
        let cfg = Config::parse(
            &format!(
                "{ENVS}[mirror]\nmethods = [\"get\", \"DELETE\"]\nignore_headers = [\"X-Trace\"]\n"
            ),
            "c.toml",
        )
        .expect("valid");
        assert_eq!(
            cfg.mirror.methods,
            [http::Method::GET, http::Method::DELETE]
        );
        assert!(cfg.mirror.ignore_headers.iter().any(|h| h == "x-trace"));
    }

    #[test]
    fn bad_mirror_keys_are_positioned_problems() {
        let p = problems("[mirror]\nmethods = [\"GET\", \"FETCH\"]\n");
        assert!(
            p[0].starts_with("c.toml:10:19: `mirror.methods`: \"FETCH\" is not"),
            "{p:?}"
        );
        let p = problems("[mirror]\nmax_inflight = 0\n");
        assert!(
            p[0].starts_with("c.toml:10:16: `mirror.max_inflight`: 0 is out of range"),
            "{p:?}"
        );
        let p = problems("[mirror]\nignore_json_fields = [\"at\"]\n");
        assert!(
            p[0].contains("`mirror.ignore_json_fields`: \"at\" is not a JSON pointer"),
            "{p:?}"
        );
        assert!(p[0].contains("\"/at\""), "{p:?}");
        let p = problems("[mirror]\nmethod = [\"GET\"]\n");
        assert!(p[0].contains("did you mean `methods`"), "{p:?}");
        let p = problems("[mirror]\nmax_body = -1\n");
        assert!(
            p[0].contains("`mirror.max_body`: -1 is out of range"),
            "{p:?}"
        );
        // The name a reader of the shadow-traffic docs may guess, at the top or in [mirror].
        for at in [
            "mirror_methods = [\"POST\"]\n",
            "[mirror]\nmirror_methods = [\"POST\"]\n",
        ] {
            let text = format!("{at}{ENVS}");
            let p = match Config::parse(&text, "c.toml") {
                Err(ConfigError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                other => panic!("expected problems, got {other:?}"),
            };
            assert!(p[0].contains("unknown key `mirror_methods`"), "{p:?}");
            assert!(p[0].contains("`methods = [\"GET\""), "{p:?}");
        }
    }
}
