//! `cutover.toml`: parsing and validation of the server's configuration.
//!
//! Owns: the file format (DESIGN.md contract keys plus documented extras), defaults, and errors
//! that name the file, line, column and key. Must not touch: running state — a bad config is
//! rejected whole before anything starts (or, on reload, before anything changes).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::diag::line_col;
use crate::router::{Env, KeySource};

mod limits;
mod protection;
pub use limits::{Limits, MIN_HEADER_BYTES};
pub use protection::{EnvProtection, ProtectionConfig, SessionRate};

/// The longest value each duration key of the config takes (every one must also be above 0);
/// documented in docs/config.md. Keys are matched by their last part (`envs.new.connect_timeout`
/// → `connect_timeout`). The bounds keep every timer a task arms far from `Instant` overflow
/// and every per-second table (the retry budget's window) small.
pub const DURATION_BOUNDS: &[(&str, Duration)] = &[
    ("connect_timeout", Duration::from_secs(5 * 60)),
    ("request_timeout", Duration::from_secs(3600)),
    ("header_read_timeout", Duration::from_secs(3600)),
    ("body_read_timeout", Duration::from_secs(3600)),
    ("body_rate_grace", Duration::from_secs(3600)),
    ("idle_timeout", Duration::from_secs(24 * 3600)),
    ("drain_timeout", Duration::from_secs(3600)),
    ("window", Duration::from_secs(600)),
    ("interval", Duration::from_secs(3600)),
    ("timeout", Duration::from_secs(5 * 60)),
];

/// The longest value `key` takes (see [`DURATION_BOUNDS`]); one hour for a key not listed.
pub fn duration_max(key: &str) -> Duration {
    let last = key.rsplit('.').next().unwrap_or(key);
    DURATION_BOUNDS
        .iter()
        .find(|(k, _)| *k == last)
        .map_or(Duration::from_secs(3600), |(_, d)| *d)
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Data-plane threads, each with its own single-threaded runtime (default: one per core).
    pub workers: usize,
    pub admin: SocketAddr,
    pub token_file: Option<PathBuf>,
    pub store_path: PathBuf,
    pub old: EnvConfig,
    pub new: EnvConfig,
    pub fallback: EnvConfig,
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
    /// Whether client connections start in cutover's own HTTP/1.1 lane (`proxy::front`);
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnvConfig {
    pub upstreams: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Path probed on every upstream of this env; `None` disables probes.
    pub probe_path: Option<String>,
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

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries allowed as a fraction of requests over the window.
    pub ratio: f64,
    pub window: Duration,
    /// Retries per second always allowed on top of the ratio.
    pub min_per_sec: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: 0.2,
            window: Duration::from_secs(10),
            min_per_sec: 5,
        }
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
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: RawListen,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    store: Option<RawStore>,
    envs: RawEnvs,
    #[serde(default)]
    routing: Option<RawRouting>,
    #[serde(default)]
    proxy: Option<RawProxy>,
    #[serde(default)]
    retry_budget: Option<RawBudget>,
    #[serde(default)]
    probes: Option<RawProbes>,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    tunnels: Option<protection::RawTunnels>,
    #[serde(default)]
    waiting_room: Option<protection::RawWaitingRoom>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<Spanned<i64>>,
    header_read_timeout: Option<Spanned<String>>,
    body_read_timeout: Option<Spanned<String>>,
    min_body_rate: Option<Spanned<i64>>,
    body_rate_grace: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    max_header_bytes: Option<Spanned<i64>>,
    max_uri_bytes: Option<Spanned<i64>>,
    max_headers: Option<Spanned<i64>>,
    h2_max_concurrent_streams: Option<Spanned<i64>>,
    h2_max_header_list_size: Option<Spanned<i64>>,
    h2_max_pending_reset_streams: Option<Spanned<i64>>,
    h2_max_local_error_reset_streams: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    addr: Spanned<String>,
    workers: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    addr: Option<Spanned<String>>,
    token_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvs {
    old: Option<RawEnv>,
    new: Option<RawEnv>,
    fallback: Option<RawEnv>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    upstreams: Spanned<Vec<Spanned<String>>>,
    connect_timeout: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
    probe_path: Option<Spanned<String>>,
    // Herd protection (checked in `protection`).
    max_inflight: Option<Spanned<i64>>,
    adaptive_limit: Option<bool>,
    queue_timeout: Option<Spanned<String>>,
    new_sessions_per_sec: Option<Spanned<f64>>,
    new_sessions_burst: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    user_key: Option<Vec<Spanned<String>>>,
    override_header: Option<Spanned<String>>,
    override_secret_header: Option<Spanned<String>>,
    override_secret: Option<String>,
    salt: Option<String>,
    trust_forwarded: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    drain_timeout: Option<Spanned<String>>,
    client_lane: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    ratio: Option<Spanned<f64>>,
    window: Option<Spanned<String>>,
    min_per_sec: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbes {
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

/// Collects problems while building a [`Config`] so all of them are reported at once.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    problems: Vec<ConfigProblem>,
}

impl Checker<'_> {
    fn problem(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        let (line, col) = line_col(self.text, offset);
        self.problems.push(ConfigProblem {
            file: self.file.to_owned(),
            line,
            col,
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn addr(&mut self, v: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        use std::net::ToSocketAddrs;
        match v.get_ref().to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => Some(a),
            _ => {
                self.problem(
                    v.span().start,
                    key,
                    format!(
                        "`{}` is not a host:port address (e.g. \"127.0.0.1:8080\")",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn duration(&mut self, v: Option<&Spanned<String>>, key: &str, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        let max = duration_max(key);
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() && d <= max => d,
            Ok(d) if d.is_zero() => {
                self.problem(v.span().start, key, "must be longer than 0 (e.g. \"2s\")");
                default
            }
            Ok(_) => {
                self.problem(
                    v.span().start,
                    key,
                    format!(
                        "`{}` is longer than the most this key allows, {}",
                        v.get_ref(),
                        humantime::format_duration(max)
                    ),
                );
                default
            }
            Err(e) => {
                self.problem(
                    v.span().start,
                    key,
                    format!(
                        "`{}` is not a duration ({e}); write e.g. \"500ms\", \"30s\", \"5m\"",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// A whole number in `min..=max`, else a positioned problem and `default`.
    fn count(
        &mut self,
        v: Option<&Spanned<i64>>,
        key: &str,
        min: i64,
        max: i64,
        default: u64,
    ) -> u64 {
        let Some(v) = v else { return default };
        if (min..=max).contains(v.get_ref()) {
            *v.get_ref() as u64
        } else {
            self.problem(
                v.span().start,
                key,
                format!(
                    "{} is out of range: give a whole number from {min} to {max}",
                    v.get_ref()
                ),
            );
            default
        }
    }

    fn limits(&mut self, raw: Option<&RawLimits>) -> Limits {
        let d = Limits::default();
        let Some(raw) = raw else { return d };
        let u32_max = i64::from(u32::MAX);
        Limits {
            max_connections: self.count(
                raw.max_connections.as_ref(),
                "limits.max_connections",
                1,
                10_000_000,
                d.max_connections as u64,
            ) as usize,
            header_read_timeout: self.duration(
                raw.header_read_timeout.as_ref(),
                "limits.header_read_timeout",
                d.header_read_timeout,
            ),
            body_read_timeout: self.duration(
                raw.body_read_timeout.as_ref(),
                "limits.body_read_timeout",
                d.body_read_timeout,
            ),
            min_body_rate: self.count(
                raw.min_body_rate.as_ref(),
                "limits.min_body_rate",
                0,
                1 << 30,
                d.min_body_rate,
            ),
            body_rate_grace: self.duration(
                raw.body_rate_grace.as_ref(),
                "limits.body_rate_grace",
                d.body_rate_grace,
            ),
            idle_timeout: self.duration(
                raw.idle_timeout.as_ref(),
                "limits.idle_timeout",
                d.idle_timeout,
            ),
            max_header_bytes: self.count(
                raw.max_header_bytes.as_ref(),
                "limits.max_header_bytes",
                MIN_HEADER_BYTES as i64,
                16 * 1024 * 1024,
                d.max_header_bytes as u64,
            ) as usize,
            max_uri_bytes: self.count(
                raw.max_uri_bytes.as_ref(),
                "limits.max_uri_bytes",
                16,
                64 * 1024,
                d.max_uri_bytes as u64,
            ) as usize,
            max_headers: self.count(
                raw.max_headers.as_ref(),
                "limits.max_headers",
                1,
                10_000,
                d.max_headers as u64,
            ) as usize,
            h2_max_concurrent_streams: self.count(
                raw.h2_max_concurrent_streams.as_ref(),
                "limits.h2_max_concurrent_streams",
                1,
                u32_max,
                u64::from(d.h2_max_concurrent_streams),
            ) as u32,
            h2_max_header_list_size: self.count(
                raw.h2_max_header_list_size.as_ref(),
                "limits.h2_max_header_list_size",
                1024,
                16 * 1024 * 1024,
                u64::from(d.h2_max_header_list_size),
            ) as u32,
            h2_max_pending_reset_streams: self.count(
                raw.h2_max_pending_reset_streams.as_ref(),
                "limits.h2_max_pending_reset_streams",
                1,
                100_000,
                d.h2_max_pending_reset_streams as u64,
            ) as usize,
            h2_max_local_error_reset_streams: self.count(
                raw.h2_max_local_error_reset_streams.as_ref(),
                "limits.h2_max_local_error_reset_streams",
                1,
                100_000,
                d.h2_max_local_error_reset_streams as u64,
            ) as usize,
        }
    }

    fn header(
        &mut self,
        v: Option<&Spanned<String>>,
        key: &str,
        default: &'static str,
    ) -> http::HeaderName {
        let Some(v) = v else {
            return http::HeaderName::from_static(default);
        };
        match http::HeaderName::from_bytes(v.get_ref().to_ascii_lowercase().as_bytes()) {
            Ok(h) => h,
            Err(_) => {
                self.problem(
                    v.span().start,
                    key,
                    format!("`{}` is not a valid header name", v.get_ref()),
                );
                http::HeaderName::from_static(default)
            }
        }
    }

    fn env(&mut self, raw: Option<&RawEnv>, name: &str, envs_at: usize) -> EnvConfig {
        let key = format!("envs.{name}");
        let Some(raw) = raw else {
            self.problem(
                envs_at,
                &key,
                format!("missing [envs.{name}]: add it with upstreams = [\"host:port\"]"),
            );
            return EnvConfig {
                upstreams: Vec::new(),
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(30),
                probe_path: None,
            };
        };
        let ukey = format!("{key}.upstreams");
        if raw.upstreams.get_ref().is_empty() {
            self.problem(
                raw.upstreams.span().start,
                &ukey,
                "needs at least one \"host:port\"",
            );
        }
        let upstreams = raw
            .upstreams
            .get_ref()
            .iter()
            .filter_map(|u| self.addr(u, &ukey))
            .collect();
        let probe_path = raw.probe_path.as_ref().and_then(|p| {
            if p.get_ref().starts_with('/') {
                Some(p.get_ref().clone())
            } else {
                self.problem(
                    p.span().start,
                    &format!("{key}.probe_path"),
                    "must start with `/`",
                );
                None
            }
        });
        EnvConfig {
            upstreams,
            connect_timeout: self.duration(
                raw.connect_timeout.as_ref(),
                &format!("{key}.connect_timeout"),
                Duration::from_secs(1),
            ),
            request_timeout: self.duration(
                raw.request_timeout.as_ref(),
                &format!("{key}.request_timeout"),
                Duration::from_secs(30),
            ),
            probe_path,
        }
    }
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
        if let Some(t) = cfg.token_file.as_mut() {
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
        let mut c = Checker {
            file,
            text,
            problems: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                let key = match e.message().split('`').nth(1) {
                    Some(name) if e.message().starts_with("unknown field") => name.to_owned(),
                    // A value of the wrong type: name the key written on that line.
                    _ => key_at(text, offset),
                };
                c.problem(offset, &key, e.message().trim().to_owned());
                return Err(ConfigError::Invalid(c.problems));
            }
        };
        let listen = c.addr(&raw.listen.addr, "listen.addr");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = c.count(
            raw.listen.workers.as_ref(),
            "listen.workers",
            1,
            256,
            cores as u64,
        ) as usize;
        let admin_raw = raw.admin.as_ref();
        let admin = match admin_raw.and_then(|a| a.addr.as_ref()) {
            Some(a) => c.addr(a, "admin.addr"),
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9900))),
        };
        // toml's Spanned cannot wrap a table of tables, so point at the first [envs...] header.
        let envs_at = text.find("[envs").unwrap_or(0);
        let old = c.env(raw.envs.old.as_ref(), "old", envs_at);
        let new = c.env(raw.envs.new.as_ref(), "new", envs_at);
        let fallback = c.env(raw.envs.fallback.as_ref(), "fallback", envs_at);

        let routing = raw.routing.as_ref();
        let mut user_key = Vec::new();
        let sources = routing.and_then(|r| r.user_key.clone()).unwrap_or_else(|| {
            ["header:x-user-id", "cookie:uid", "client_ip"]
                .iter()
                .map(|s| Spanned::new(0..0, (*s).to_owned()))
                .collect()
        });
        for s in &sources {
            match s.get_ref().parse::<KeySource>() {
                Ok(k) => user_key.push(k),
                Err(e) => c.problem(s.span().start, "routing.user_key", e.to_string()),
            }
        }
        let override_header = c.header(
            routing.and_then(|r| r.override_header.as_ref()),
            "routing.override_header",
            "x-cutover-env",
        );
        let override_secret_header = c.header(
            routing.and_then(|r| r.override_secret_header.as_ref()),
            "routing.override_secret_header",
            "x-cutover-key",
        );
        let proxy = raw.proxy.as_ref();
        let drain_timeout = c.duration(
            proxy.and_then(|p| p.drain_timeout.as_ref()),
            "proxy.drain_timeout",
            Duration::from_secs(10),
        );
        let mut retry_budget = RetryBudgetConfig::default();
        if let Some(b) = raw.retry_budget.as_ref() {
            if let Some(r) = &b.ratio {
                if (0.0..=1.0).contains(r.get_ref()) {
                    retry_budget.ratio = *r.get_ref();
                } else {
                    c.problem(
                        r.span().start,
                        "retry_budget.ratio",
                        "must be between 0.0 and 1.0 (e.g. 0.2)",
                    );
                }
            }
            retry_budget.window = c.duration(
                b.window.as_ref(),
                "retry_budget.window",
                retry_budget.window,
            );
            if let Some(m) = b.min_per_sec {
                retry_budget.min_per_sec = m;
            }
        }
        let probes = raw.probes.as_ref();
        let probe_interval = c.duration(
            probes.and_then(|p| p.interval.as_ref()),
            "probes.interval",
            Duration::from_secs(1),
        );
        let probe_timeout = c.duration(
            probes.and_then(|p| p.timeout.as_ref()),
            "probes.timeout",
            Duration::from_secs(1),
        );
        let limits = c.limits(raw.limits.as_ref());
        let protection = c.protection(
            [
                ("old", raw.envs.old.as_ref()),
                ("new", raw.envs.new.as_ref()),
                ("fallback", raw.envs.fallback.as_ref()),
            ],
            raw.tunnels.as_ref(),
            raw.waiting_room.as_ref(),
            base,
        );
        if !c.problems.is_empty() {
            return Err(ConfigError::Invalid(c.problems));
        }
        let (Some(listen), Some(admin)) = (listen, admin) else {
            return Err(ConfigError::Invalid(c.problems));
        };
        Ok(Config {
            listen,
            workers,
            admin,
            token_file: admin_raw
                .and_then(|a| a.token_file.clone())
                .map(PathBuf::from),
            store_path: raw
                .store
                .map_or_else(|| PathBuf::from("cutover-data"), |s| PathBuf::from(s.path)),
            old,
            new,
            fallback,
            user_key,
            override_header,
            override_secret_header,
            override_secret: routing.and_then(|r| r.override_secret.clone()),
            salt: routing
                .and_then(|r| r.salt.clone())
                .unwrap_or_else(|| "cutover".to_owned()),
            trust_forwarded: routing.and_then(|r| r.trust_forwarded).unwrap_or(false),
            drain_timeout,
            client_lane: proxy.and_then(|p| p.client_lane).unwrap_or(true),
            retry_budget,
            probe_interval,
            probe_timeout,
            limits,
            source: None,
            protection,
        })
    }
}

/// The dotted name of the `key = value` line holding byte `offset` of `text` (with the
/// `[table]` it is in), or "" if that line is not one.
fn key_at(text: &str, offset: usize) -> String {
    let Some(before) = text.get(..offset) else {
        return String::new();
    };
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let Some((key, _)) = line.split_once('=') else {
        return String::new();
    };
    let key = key.trim().trim_matches('"');
    let table = before[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
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
        assert_eq!((p[0].line, p[0].key.as_str()), (7, "paht"));
        assert!(p[0].to_string().starts_with("c.toml:7:1: "), "{}", p[0]);
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
            "{GOOD}[limits]\nmax_header_bytes = 100\nidle_timeout = \"soon\"\nmax_conections = 1\n"
        ));
        assert_eq!(p.len(), 1, "unknown keys stop the parse first: {p:?}");
        assert_eq!(p[0].key, "max_conections");
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
    fn missing_env_is_an_error() {
        let text = GOOD.replace("[envs.fallback]\nupstreams = [\"127.0.0.1:9021\"]", "");
        let p = problems(&text);
        assert!(p[0].message.contains("missing [envs.fallback]"), "{p:?}");
    }
}
