//! `cutover.toml`: parsing and validation of the server's configuration.
//!
//! Owns: the file format (the keys docs/config.md documents), defaults, and errors that name
//! the file, line, column and key. Must not touch: running state — a bad config is rejected
//! whole before anything starts (or, on reload, before anything changes).
//!
//! Layout: this file holds [`Config`], its errors and the entry points ([`Config::load`],
//! [`Config::parse`]); `check` the positioned checks every section uses; one file per section
//! for the rest: `listen` (`[listen]`, `[admin]`, `[store]`), `envs` (`[envs.*]`, `[probes]`),
//! `routing`, `proxy` (`[proxy]`, `[retry_budget]`), `limit_keys` (`[limits]`) and
//! `protection` (admission, session rates, `[tunnels]`, `[waiting_room]`) and `mirror`
//! (`[mirror]`, shadow traffic).
//! `protection` (admission, session rates, `[tunnels]`, `[waiting_room]`) and `prometheus`
//! (`[prometheus]`, where query gates ask).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::router::{Env, KeySource};

mod check;
mod collect;
mod envs;
mod limit_keys;
mod limits;
mod listen;
mod mirror;
mod prometheus;
mod protection;
mod proxy;
mod routing;
mod store;

use check::Checker;
pub use check::{duration_max, DURATION_BOUNDS};
pub use envs::{EnvConfig, Protocol, UpstreamConfig, DEFAULT_RESOLVE_INTERVAL};
pub use limits::{Limits, MIN_HEADER_BYTES};
pub use listen::CertFiles;
pub use mirror::MirrorConfig;
pub use prometheus::PrometheusConfig;
pub use protection::{EnvProtection, ProtectionConfig, SessionRate};
pub use proxy::RetryBudgetConfig;
pub use store::{FleetConfig, DEFAULT_ETCD_TIMEOUT, DEFAULT_LEASE_TTL};

/// How long recorded analysis ticks are kept when `[store] ticks_retention` is not set.
pub const DEFAULT_TICKS_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Data-plane threads, each with its own single-threaded runtime (default: one per core).
    pub workers: usize,
    pub admin: SocketAddr,
    /// The users' listener's certificates (`[listen] tls_cert`/`tls_key`, then
    /// `[[listen.certs]]`); empty: plain HTTP.
    pub listen_tls: Vec<CertFiles>,
    /// The admin listener's certificate (`[admin] tls_cert`/`tls_key`); empty: plain HTTP.
    pub admin_tls: Vec<CertFiles>,
    pub token_file: Option<PathBuf>,
    /// `[admin] tokens_file`: named operators with roles (its content is checked when the
    /// server starts or reloads, not here).
    pub tokens_file: Option<PathBuf>,
    /// `[store] path`: the sled store's directory, or this instance's own files (the
    /// generated admin token) beside an etcd store.
    pub store_path: PathBuf,
    /// `[store] backend = "etcd"`: one fleet of instances shares the store (docs/fleet.md).
    pub fleet: Option<FleetConfig>,
    /// `[store] ticks_retention`: how long recorded analysis ticks are kept (default 1 day).
    pub ticks_retention: std::time::Duration,
    pub old: EnvConfig,
    pub new: EnvConfig,
    pub fallback: EnvConfig,
    /// `[resolve] hosts_file`: names looked up there before the system's resolver.
    pub hosts_file: Option<PathBuf>,
    pub user_key: Vec<KeySource>,
    /// Header that forces a request to an env (smoke tests, probes) when it carries the secret.
    pub override_header: http::HeaderName,
    pub override_secret_header: http::HeaderName,
    pub override_secret: Option<String>,
    /// Salt used while no plan has set one.
    pub salt: String,
    /// Trust a client-sent `X-Forwarded-For` (only behind another trusted proxy).
    pub trust_forwarded: bool,
    pub drain_timeout: Duration,
    /// Whether client connections start in cutover's own HTTP/1.1 lane (`proxy::client::lane`);
    /// `false` gives every request to hyper's server from the first byte.
    pub client_lane: bool,
    pub retry_budget: RetryBudgetConfig,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// `[limits]`: what clients may send and hold on the data path.
    pub limits: Limits,
    /// The file this config was loaded from (what a reload reads again), if any.
    pub source: Option<PathBuf>,
    /// Admission control, new-session rates, tunnel drain and waiting room.
    pub protection: ProtectionConfig,
    /// `[mirror]`: how shadow traffic is copied to NEW.
    pub mirror: MirrorConfig,
    /// `[prometheus]`: where query gates ask; `None` without the section.
    pub prometheus: Option<PrometheusConfig>,
}

impl Config {
    /// The settings of one env.
    pub fn env(&self, env: Env) -> &EnvConfig {
        match env {
            Env::Old => &self.old,
            Env::New => &self.new,
            Env::Fallback => &self.fallback,
        }
    }

    /// The herd protection of one env.
    pub fn protect(&self, env: Env) -> &EnvProtection {
        &self.protection.envs[env as usize]
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigProblem>),
}

/// One problem in a config file, positioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub message: String,
    /// How to fix it; may be empty.
    pub hint: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if !self.hint.is_empty() {
            write!(f, " — {}", self.hint)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: Option<listen::RawListen>,
    #[serde(default)]
    admin: Option<listen::RawAdmin>,
    #[serde(default)]
    store: Option<store::RawStore>,
    #[serde(default)]
    envs: Option<envs::RawEnvs>,
    #[serde(default)]
    resolve: Option<envs::RawResolve>,
    #[serde(default)]
    routing: Option<routing::RawRouting>,
    #[serde(default)]
    proxy: Option<proxy::RawProxy>,
    #[serde(default)]
    retry_budget: Option<proxy::RawBudget>,
    #[serde(default)]
    probes: Option<envs::RawProbes>,
    #[serde(default)]
    limits: Option<limit_keys::RawLimits>,
    #[serde(default)]
    tunnels: Option<protection::RawTunnels>,
    #[serde(default)]
    waiting_room: Option<protection::RawWaitingRoom>,
    #[serde(default)]
    mirror: Option<mirror::RawMirror>,
    prometheus: Option<prometheus::RawPrometheus>,
}

impl Config {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        // Relative store, token and page paths are relative to the config file, not the cwd.
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg = Config::parse_in(&text, &path.display().to_string(), base)?;
        if cfg.store_path.is_relative() {
            cfg.store_path = base.join(&cfg.store_path);
        }
        for t in [cfg.token_file.as_mut(), cfg.tokens_file.as_mut()]
            .into_iter()
            .flatten()
        {
            if t.is_relative() {
                *t = base.join(&*t);
            }
        }
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Validate config text; `file` names it in errors. A relative `page_file` is read from
    /// the current directory.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_in(text, file, Path::new("."))
    }

    fn parse_in(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let read = collect::collect::<RawConfig>(text);
        let mut c = Checker {
            file,
            text,
            problems: Vec::new(),
            blanked: read.blanked,
        };
        for f in read.found {
            c.problem_hint(f.at, &f.key, f.message, f.hint);
        }
        let Some(raw) = read.raw else {
            if c.problems.is_empty() {
                c.problem(
                    0,
                    "",
                    "the config could not be read (no single key to blame)",
                );
            }
            return Err(ConfigError::Invalid(c.problems));
        };
        let no_envs = envs::RawEnvs::default();
        let envs = raw.envs.as_ref().unwrap_or(&no_envs);
        let (listen, workers) = c.listen(raw.listen.as_ref());
        let admin = c.admin(raw.admin.as_ref());
        let raw_listen = raw.listen.as_ref();
        let listen_tls = c.certs(
            "listen",
            raw_listen.and_then(|l| l.tls_cert.as_ref()),
            raw_listen.and_then(|l| l.tls_key.as_ref()),
            raw_listen.map_or(&[], |l| &l.certs[..]),
            base,
        );
        let raw_admin = raw.admin.as_ref();
        let admin_tls = c.certs(
            "admin",
            raw_admin.and_then(|a| a.tls_cert.as_ref()),
            raw_admin.and_then(|a| a.tls_key.as_ref()),
            &[],
            base,
        );
        // toml's Spanned cannot wrap a table of tables, so point at the first [envs...] header.
        let envs_at = text.find("[envs").unwrap_or(0);
        let (hosts_file, hosts) = c.resolve(raw.resolve.as_ref(), base);
        let hosts = hosts.as_ref();
        let old = c.env(envs.old.as_ref(), "old", envs_at, hosts, base);
        let new = c.env(envs.new.as_ref(), "new", envs_at, hosts, base);
        let fallback = c.env(envs.fallback.as_ref(), "fallback", envs_at, hosts, base);
        let routing = c.routing(raw.routing.as_ref());
        let ticks_retention = c.duration(
            raw.store.as_ref().and_then(|s| s.ticks_retention.as_ref()),
            "store.ticks_retention",
            DEFAULT_TICKS_RETENTION,
        );
        let proxy = c.proxy(raw.proxy.as_ref());
        let retry_budget = c.retry_budget(raw.retry_budget.as_ref());
        let (probe_interval, probe_timeout) = c.probes(raw.probes.as_ref());
        let limits = c.limits(raw.limits.as_ref());
        let (store_path, fleet) = c.store(raw.store.as_ref(), base);
        let mirror = c.mirror(raw.mirror.as_ref());
        let protection = c.protection(
            [
                ("old", envs.old.as_ref()),
                ("new", envs.new.as_ref()),
                ("fallback", envs.fallback.as_ref()),
            ],
            raw.tunnels.as_ref(),
            raw.waiting_room.as_ref(),
            base,
        );
        let prometheus = c.prometheus(
            raw.prometheus.as_ref(),
            text.find("[prometheus]").unwrap_or(0),
            base,
        );
        if !c.problems.is_empty() {
            c.problems.sort_by_key(|p| (p.line, p.col));
            return Err(ConfigError::Invalid(c.problems));
        }
        let (Some(listen), Some(admin)) = (listen, admin) else {
            return Err(ConfigError::Invalid(c.problems));
        };
        Ok(Config {
            listen,
            workers,
            admin,
            listen_tls,
            admin_tls,
            token_file: raw
                .admin
                .as_ref()
                .and_then(|a| a.token_file.clone())
                .map(PathBuf::from),
            tokens_file: raw
                .admin
                .as_ref()
                .and_then(|a| a.tokens_file.clone())
                .map(PathBuf::from),
            store_path,
            fleet,
            ticks_retention,
            old,
            new,
            fallback,
            hosts_file,
            user_key: routing.user_key,
            override_header: routing.override_header,
            override_secret_header: routing.override_secret_header,
            override_secret: routing.override_secret,
            salt: routing.salt,
            trust_forwarded: routing.trust_forwarded,
            drain_timeout: proxy.drain_timeout,
            client_lane: proxy.client_lane,
            retry_budget,
            probe_interval,
            probe_timeout,
            limits,
            source: None,
            protection,
            mirror,
            prometheus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[listen]
addr = "127.0.0.1:8080"
[admin]
addr = "127.0.0.1:9900"
[store]
path = "data"
[envs.old]
upstreams = ["127.0.0.1:9001", "127.0.0.1:9002"]
[envs.new]
upstreams = ["127.0.0.1:9011"]
probe_path = "/healthz"
[envs.fallback]
upstreams = ["127.0.0.1:9021"]
[routing]
user_key = ["header:x-user-id", "cookie:uid", "client_ip"]
"#;

    fn problems(text: &str) -> Vec<ConfigProblem> {
        match Config::parse(text, "c.toml") {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_contract_keys() {
        let c = Config::parse(GOOD, "c.toml").expect("valid");
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.old.upstreams.len(), 2);
        assert_eq!(c.new.probe_path.as_deref(), Some("/healthz"));
        assert_eq!(c.user_key.len(), 3);
        assert_eq!(c.retry_budget, RetryBudgetConfig::default());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let p = problems(&GOOD.replace("[store]\npath", "[store]\npaht"));
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].line, p[0].key.as_str()), (7, "store.paht"));
        assert_eq!(
            p[0].to_string(),
            "c.toml:7:1: `store.paht`: unknown key `paht` in [store] — did you mean `path`?"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key_and_line() {
        let p = problems(&format!(
            "{GOOD}[proxy]\ndrain_timeout = \"1s\"\nclient_lane = \"no\"\n"
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].line, p[0].key.as_str()), (19, "proxy.client_lane"));
        assert!(p[0].message.contains("boolean"), "{}", p[0]);
        let c = Config::parse(&format!("{GOOD}[proxy]\nclient_lane = false\n"), "c.toml");
        assert!(!c.expect("valid").client_lane);
        assert!(Config::parse(GOOD, "c.toml").expect("valid").client_lane);
    }

    #[test]
    fn semantic_problems_are_all_reported_with_positions() {
        let text = GOOD
            .replace("\"127.0.0.1:9011\"", "\"nowhere\"")
            .replace("\"cookie:uid\"", "\"cookie:\"");
        let p = problems(&text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].key, "envs.new.upstreams");
        assert_eq!((p[0].line, p[0].col), (11, 14));
        assert_eq!(p[1].key, "routing.user_key");
        assert_eq!(p[1].line, 16);
    }

    #[test]
    fn limits_are_parsed_and_checked_with_positions() {
        let c = Config::parse(
            &format!("{GOOD}[limits]\nmax_connections = 5\nbody_read_timeout = \"2s\"\n"),
            "c.toml",
        )
        .expect("valid");
        assert_eq!(c.limits.max_connections, 5);
        assert_eq!(c.limits.body_read_timeout, Duration::from_secs(2));
        assert_eq!(c.limits.max_headers, Limits::default().max_headers);
        let p = problems(&format!(
            "{GOOD}[limits]\nmax_header_bytes = 100\nidle_timeout = \"soon\"\n"
        ));
        assert_eq!(p.len(), 2, "{p:?}");
        let bytes = p.iter().find(|p| p.key == "limits.max_header_bytes");
        let bytes = bytes.expect("max_header_bytes reported");
        assert_eq!((bytes.line, bytes.col), (18, 20));
        assert!(bytes.message.contains("8192"), "{bytes}");
        let idle = p.iter().find(|p| p.key == "limits.idle_timeout");
        assert_eq!(idle.map(|p| (p.line, p.col)), Some((19, 16)));
    }

    #[test]
    fn every_problem_is_reported_at_once_in_file_order() {
        let text = GOOD
            .replace("[store]\npath", "[store]\npaht")
            .replace("\"127.0.0.1:9011\"", "\"nowhere\"")
            + "[proxy]\nclient_lane = \"no\"\ndrain_timout = \"5s\"\n[limitz]\nx = 1\n";
        let p = problems(&text);
        let seen: Vec<_> = p.iter().map(|p| (p.line, p.key.as_str())).collect();
        assert_eq!(
            seen,
            [
                (7, "store.paht"),
                (11, "envs.new.upstreams"),
                (18, "proxy.client_lane"),
                (19, "proxy.drain_timout"),
                (20, "limitz"),
            ],
            "{p:#?}"
        );
        assert_eq!(
            p[2].hint,
            "write `client_lane = true` or `client_lane = false`"
        );
        assert_eq!(p[3].hint, "did you mean `drain_timeout`?");
        assert_eq!(p[4].hint, "did you mean `limits`?");
    }

    #[test]
    fn a_required_key_of_the_wrong_type_is_not_also_missing() {
        let p = problems(&GOOD.replace("addr = \"127.0.0.1:8080\"", "addr = 8080"));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!((p[0].line, p[0].key.as_str()), (3, "listen.addr"));
        assert!(p[0].message.contains("expected a string"), "{}", p[0]);
        let p = problems(&GOOD.replace(
            "upstreams = [\"127.0.0.1:9021\"]",
            "upstream = [\"127.0.0.1:9021\"]",
        ));
        let seen: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(seen, ["envs.fallback.upstreams", "envs.fallback.upstream"]);
        assert_eq!(p[1].hint, "did you mean `upstreams`?");
    }

    #[test]
    fn a_syntax_error_is_reported_alone_with_its_position() {
        let p = problems(&GOOD.replace("path = \"data\"", "path = \"data"));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].line, 7);
        assert!(p[0].message.starts_with("not valid TOML"), "{}", p[0]);
    }

    #[test]
    fn an_envs_protocol_is_http1_by_default_h2_on_request_and_nothing_else() {
        let c = Config::parse(GOOD, "c.toml").expect("valid");
        assert_eq!(c.new.protocol, Protocol::Http1);
        let h2 = GOOD.replace("probe_path = \"/healthz\"", "protocol = \"h2\"");
        let c = Config::parse(&h2, "c.toml").expect("valid");
        assert_eq!(
            (c.new.protocol, c.old.protocol),
            (Protocol::H2, Protocol::Http1)
        );
        let p = problems(&GOOD.replace("probe_path = \"/healthz\"", "protocol = \"http2\""));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].key.as_str(), p[0].line), ("envs.new.protocol", 12));
        assert!(p[0].message.contains("\"h2\""), "{}", p[0]);
    }

    #[test]
    fn prometheus_is_optional_and_checked_with_positions() {
        assert_eq!(
            Config::parse(GOOD, "c.toml").expect("valid").prometheus,
            None
        );
        let c = Config::parse(
            &format!("{GOOD}[prometheus]\nurl = \"http://prom:9090\"\ntimeout = \"2s\"\n"),
            "c.toml",
        )
        .expect("valid");
        let p = c.prometheus.expect("set");
        assert_eq!(
            (p.url.as_str(), p.timeout),
            ("http://prom:9090", Duration::from_secs(2))
        );
        assert_eq!(p.pause_after, Duration::from_secs(60));
        let p = problems(&format!(
            "{GOOD}[prometheus]\nurl = \"prom:9090\"\npause_after = \"soon\"\n"
        ));
        let seen: Vec<_> = p.iter().map(|p| (p.line, p.col, p.key.as_str())).collect();
        assert_eq!(
            seen,
            [
                (18, 7, "prometheus.url"),
                (19, 15, "prometheus.pause_after")
            ]
        );
        let p = problems(&format!("{GOOD}[prometheus]\ntimeout = \"2s\"\n"));
        assert_eq!((p[0].line, p[0].key.as_str()), (17, "prometheus.url"));
    }

    #[test]
    fn missing_env_is_an_error() {
        let text = GOOD.replace("[envs.fallback]\nupstreams = [\"127.0.0.1:9021\"]", "");
        let p = problems(&text);
        assert!(p[0].message.contains("missing [envs.fallback]"), "{p:?}");
    }
}
