//! `[store]`: where the plans, runs, state and event log are kept — a local sled directory
//! (the default, one instance) or etcd (a fleet of instances sharing one migration).
//!
//! Owns: the section's raw shape and positioned checks, and [`FleetConfig`]. Must not touch:
//! opening the store (`serve` does, through `crate::store`) or the fleet's behaviour
//! (`crate::fleet`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::check::Checker;
use crate::diag::did_you_mean;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    /// Default `cutover-data`, beside the config file.
    pub(super) path: Option<String>,
    /// How long recorded analysis ticks are kept (default 1 day; docs/config.md).
    pub(super) ticks_retention: Option<toml::Spanned<String>>,
    pub(super) backend: Option<Spanned<String>>,
    pub(super) endpoints: Option<Spanned<Vec<String>>>,
    pub(super) prefix: Option<Spanned<String>>,
    pub(super) instance: Option<Spanned<String>>,
    pub(super) lease_ttl: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) ca_file: Option<String>,
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) password_file: Option<String>,
}

/// `[store] backend = "etcd"`: this instance is one of a fleet (docs/fleet.md).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// `http://host:port` / `https://host:port` of the etcd members.
    pub endpoints: Vec<String>,
    /// Key prefix of this migration (`/cutover/<migration>`), without a trailing `/`.
    pub prefix: String,
    /// This instance's name in the fleet; default `<host name>:<admin port>`.
    pub instance: Option<String>,
    /// Lifetime of this instance's lease: how long a dead leader keeps the leadership and a
    /// dead instance stays listed. Default 5 s.
    pub lease_ttl: Duration,
    /// Bound on each request to etcd. Default 2 s.
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
pub const DEFAULT_ETCD_TIMEOUT: Duration = Duration::from_secs(2);
const BACKENDS: [&str; 2] = ["sled", "etcd"];

impl Checker<'_> {
    /// `[store]`: the local path (sled's directory, or the instance's own files beside etcd)
    /// and, for `backend = "etcd"`, the fleet's settings.
    pub(super) fn store(
        &mut self,
        raw: Option<&RawStore>,
        base: &Path,
    ) -> (PathBuf, Option<FleetConfig>) {
        let path = raw
            .and_then(|s| s.path.clone())
            .map_or_else(|| PathBuf::from("cutover-data"), PathBuf::from);
        let Some(raw) = raw else {
            return (path, None);
        };
        let etcd = match &raw.backend {
            None => false,
            Some(b) => match b.get_ref().as_str() {
                "sled" => false,
                "etcd" => true,
                other => {
                    let hint = did_you_mean(other, &BACKENDS)
                        .map_or("write \"sled\" or \"etcd\"".to_owned(), |n| {
                            format!("did you mean \"{n}\"?")
                        });
                    self.problem_hint(
                        b.span().start,
                        "store.backend",
                        format!("unknown backend \"{other}\""),
                        hint,
                    );
                    return (path, None);
                }
            },
        };
        if !etcd {
            self.only_with_etcd(raw);
            return (path, None);
        }
        if !cfg!(feature = "etcd") {
            let at = raw.backend.as_ref().map_or(0, |b| b.span().start);
            self.problem_hint(
                at,
                "store.backend",
                "this cutover was built without the etcd backend",
                "build a fleet-capable binary with `cargo build --release --features etcd` \
                 (needs protoc: apt install protobuf-compiler); see docs/fleet.md",
            );
        }
        let fleet = self.fleet(raw, base);
        (path, fleet)
    }

    fn only_with_etcd(&mut self, raw: &RawStore) {
        let spanned = [
            ("endpoints", raw.endpoints.as_ref().map(|v| v.span().start)),
            ("prefix", raw.prefix.as_ref().map(|v| v.span().start)),
            ("instance", raw.instance.as_ref().map(|v| v.span().start)),
            ("lease_ttl", raw.lease_ttl.as_ref().map(|v| v.span().start)),
            ("timeout", raw.timeout.as_ref().map(|v| v.span().start)),
            ("user", raw.user.as_ref().map(|v| v.span().start)),
        ];
        let files = [
            ("ca_file", raw.ca_file.is_some()),
            ("cert_file", raw.cert_file.is_some()),
            ("key_file", raw.key_file.is_some()),
            ("password_file", raw.password_file.is_some()),
        ];
        let at_store = self.text.find("[store]").unwrap_or(0);
        let keys = spanned
            .into_iter()
            .filter_map(|(k, at)| at.map(|a| (k, a)))
            .chain(
                files
                    .into_iter()
                    .filter(|f| f.1)
                    .map(|(k, _)| (k, at_store)),
            );
        for (key, at) in keys.collect::<Vec<_>>() {
            self.problem_hint(
                at,
                &format!("store.{key}"),
                "only used with backend = \"etcd\"",
                "add `backend = \"etcd\"` to [store], or remove the key",
            );
        }
    }

    fn fleet(&mut self, raw: &RawStore, base: &Path) -> Option<FleetConfig> {
        let at_store = self.text.find("[store]").unwrap_or(0);
        let endpoints = match &raw.endpoints {
            None => {
                self.missing(
                    at_store,
                    "store.endpoints",
                    "backend = \"etcd\" needs `endpoints = [\"http://127.0.0.1:2379\", ...]`",
                );
                Vec::new()
            }
            Some(e) if e.get_ref().is_empty() => {
                self.problem(
                    e.span().start,
                    "store.endpoints",
                    "is empty: list at least one etcd member",
                );
                Vec::new()
            }
            Some(e) => {
                for ep in e.get_ref() {
                    if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                        self.problem_hint(
                            e.span().start,
                            "store.endpoints",
                            format!("`{ep}` is not an etcd endpoint URL"),
                            "write \"http://host:port\" or \"https://host:port\"",
                        );
                    }
                }
                e.get_ref().clone()
            }
        };
        let prefix = match &raw.prefix {
            None => {
                self.missing(
                    at_store,
                    "store.prefix",
                    "backend = \"etcd\" needs `prefix = \"/cutover/<migration>\"`: every instance \
                     with the same endpoints and prefix is one fleet",
                );
                String::new()
            }
            Some(p) => {
                let v = p.get_ref().trim_end_matches('/');
                if !v.starts_with('/') || v.len() < 2 {
                    self.problem_hint(
                        p.span().start,
                        "store.prefix",
                        format!("`{}` is not a key prefix", p.get_ref()),
                        "write an absolute prefix such as \"/cutover/shop\"",
                    );
                }
                v.to_owned()
            }
        };
        let instance = raw.instance.as_ref().map(|i| {
            let v = i.get_ref();
            let ok = !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
            if !ok {
                self.problem_hint(
                    i.span().start,
                    "store.instance",
                    format!("`{v}` is not an instance name"),
                    "use 1 to 64 letters, digits, '-', '_', '.' or ':'",
                );
            }
            v.clone()
        });
        let lease_ttl = self.duration(raw.lease_ttl.as_ref(), "store.lease_ttl", DEFAULT_LEASE_TTL);
        if lease_ttl < Duration::from_secs(2) {
            if let Some(v) = &raw.lease_ttl {
                self.problem(
                    v.span().start,
                    "store.lease_ttl",
                    "must be at least 2s (etcd's lease granularity is a second)",
                );
            }
        }
        let timeout = self.duration(raw.timeout.as_ref(), "store.timeout", DEFAULT_ETCD_TIMEOUT);
        let file = |f: &Option<String>| {
            f.as_ref().map(|p| {
                let p = PathBuf::from(p);
                if p.is_relative() {
                    base.join(p)
                } else {
                    p
                }
            })
        };
        let (cert_file, key_file) = (file(&raw.cert_file), file(&raw.key_file));
        if cert_file.is_some() != key_file.is_some() {
            self.problem(
                at_store,
                "store.cert_file",
                "cert_file and key_file go together: set both or neither",
            );
        }
        let user = raw.user.as_ref().map(|u| u.get_ref().clone());
        let password_file = file(&raw.password_file);
        if user.is_some() != password_file.is_some() {
            self.problem(
                at_store,
                "store.user",
                "user and password_file go together: set both or neither",
            );
        }
        Some(FleetConfig {
            endpoints,
            prefix,
            instance,
            lease_ttl,
            timeout,
            ca_file: file(&raw.ca_file),
            cert_file,
            key_file,
            user,
            password_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, ConfigProblem};

    fn with_store(store: &str) -> String {
        format!(
            "[listen]\naddr = \"127.0.0.1:8080\"\n[admin]\naddr = \"127.0.0.1:9900\"\n[store]\n{store}\n\
             [envs.old]\nupstreams = [\"127.0.0.1:1\"]\n[envs.new]\nupstreams = [\"127.0.0.1:2\"]\n\
             [envs.fallback]\nupstreams = [\"127.0.0.1:3\"]\n"
        )
    }

    fn problems(store: &str) -> Vec<ConfigProblem> {
        match Config::parse(&with_store(store), "c.toml") {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_misspelt_backend_is_named_with_the_nearest() {
        let p = problems("backend = \"etdc\"");
        assert_eq!((p[0].line, p[0].key.as_str()), (6, "store.backend"));
        assert!(
            p[0].to_string().contains("did you mean \"etcd\"?"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn fleet_keys_without_the_etcd_backend_are_refused() {
        let p = problems("endpoints = [\"http://127.0.0.1:2379\"]\nlease_ttl = \"5s\"");
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["store.endpoints", "store.lease_ttl"]);
        assert!(
            p[0].to_string().contains("only used with backend"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn the_etcd_backend_needs_endpoints_and_a_prefix_and_checks_them() {
        let p = problems("backend = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nprefix = \"cutover\"\nlease_ttl = \"1s\"");
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        let mut expected = vec!["store.endpoints", "store.prefix", "store.lease_ttl"];
        if !cfg!(feature = "etcd") {
            expected.insert(0, "store.backend");
        }
        assert_eq!(keys, expected, "{p:?}");
        let p = problems("backend = \"etcd\"");
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert!(
            keys.contains(&"store.endpoints") && keys.contains(&"store.prefix"),
            "{keys:?}"
        );
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn a_good_fleet_section_reads_with_its_defaults() {
        let cfg = Config::parse(
            &with_store("backend = \"etcd\"\nendpoints = [\"http://10.0.0.7:2379\"]\nprefix = \"/cutover/shop/\""),
            "c.toml",
        )
        .expect("valid");
        let f = cfg.fleet.expect("fleet");
        assert_eq!(f.prefix, "/cutover/shop");
        assert_eq!(f.lease_ttl, super::DEFAULT_LEASE_TTL);
        assert_eq!(f.instance, None);
    }
}
