//! The herd-protection keys of `cutover.toml`: admission control and new-session rates per env,
//! the tunnel drain rate, and the waiting room (docs/protection.md).
//!
//! Owns: their raw shapes, defaults and positioned checks. Must not touch: the rest of the
//! config — the parent module calls [`Checker::protection`] once with what it deserialized.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::check::Checker;
use super::envs::RawEnv;

/// Everything that protects the envs from load the system makes itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtectionConfig {
    /// Per env, indexed by `Env as usize` (old, new, fallback).
    pub envs: [EnvProtection; 3],
    /// Misplaced tunnels closed per second after a weight change (`[tunnels] drain_rate`).
    pub drain_rate: f64,
    /// The waiting room page (the text of `[waiting_room] page_file`); `None`: built-in page.
    pub page: Option<String>,
    /// Base of the `Retry-After` of shed answers, in seconds (jittered ±50%).
    pub retry_after_s: u32,
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        ProtectionConfig {
            envs: Default::default(),
            drain_rate: 50.0,
            page: None,
            retry_after_s: 2,
        }
    }
}

/// Admission control and new-session rate of one env.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvProtection {
    /// Requests in flight to the env at most; `None`: unlimited.
    pub max_inflight: Option<u32>,
    /// Follow the env's latency below `max_inflight` (Gradient2).
    pub adaptive_limit: bool,
    /// How long a request may wait for a free slot before it is shed.
    pub queue_timeout: Duration,
    /// Token bucket for new client connections and new tunnels; `None`: unlimited.
    pub new_sessions: Option<SessionRate>,
}

impl Default for EnvProtection {
    fn default() -> Self {
        EnvProtection {
            max_inflight: None,
            adaptive_limit: false,
            queue_timeout: Duration::from_millis(50),
            new_sessions: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionRate {
    pub per_sec: f64,
    pub burst: u32,
}

/// Longest `queue_timeout`: a longer wait is a queue, not admission control.
const MAX_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest waiting-room page read from disk.
const MAX_PAGE_BYTES: u64 = 256 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnels {
    drain_rate: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWaitingRoom {
    page_file: Option<Spanned<String>>,
    retry_after: Option<Spanned<i64>>,
}

impl Checker<'_> {
    /// The protection settings; `base` is the directory a relative `page_file` is read from.
    pub(super) fn protection(
        &mut self,
        envs: [(&str, Option<&RawEnv>); 3],
        tunnels: Option<&RawTunnels>,
        room: Option<&RawWaitingRoom>,
        base: &Path,
    ) -> ProtectionConfig {
        let mut p = ProtectionConfig::default();
        for (i, (name, raw)) in envs.into_iter().enumerate() {
            if let Some(raw) = raw {
                p.envs[i] = self.env_protection(raw, name);
            }
        }
        if let Some(r) = tunnels.and_then(|t| t.drain_rate.as_ref()) {
            if r.get_ref().is_finite() && *r.get_ref() > 0.0 {
                p.drain_rate = *r.get_ref();
            } else {
                self.problem(
                    r.span().start,
                    "tunnels.drain_rate",
                    "must be a number of tunnels per second above 0 (e.g. 50)",
                );
            }
        }
        if let Some(room) = room {
            if let Some(s) = &room.retry_after {
                match u32::try_from(*s.get_ref()) {
                    Ok(v @ 1..=3600) => p.retry_after_s = v,
                    _ => self.problem(
                        s.span().start,
                        "waiting_room.retry_after",
                        "must be whole seconds from 1 to 3600 (e.g. 2)",
                    ),
                }
            }
            if let Some(f) = &room.page_file {
                p.page = self.page(f, base);
            }
        }
        p
    }

    fn env_protection(&mut self, raw: &RawEnv, name: &str) -> EnvProtection {
        let key = |k: &str| format!("envs.{name}.{k}");
        let mut e = EnvProtection {
            adaptive_limit: raw.adaptive_limit.unwrap_or(false),
            ..Default::default()
        };
        if let Some(m) = &raw.max_inflight {
            match u32::try_from(*m.get_ref()) {
                Ok(v) if v >= 1 => e.max_inflight = Some(v),
                _ => self.problem(
                    m.span().start,
                    &key("max_inflight"),
                    "must be a whole number of requests from 1 up (leave it out for no limit)",
                ),
            }
        }
        if let Some(q) = &raw.queue_timeout {
            match humantime::parse_duration(q.get_ref()) {
                Ok(d) if d <= MAX_QUEUE_TIMEOUT => e.queue_timeout = d,
                Ok(_) => self.problem(
                    q.span().start,
                    &key("queue_timeout"),
                    "must be at most 10s: admission waits briefly, then answers 503 (e.g. \"50ms\"; \"0s\" = no wait)",
                ),
                Err(err) => self.problem(
                    q.span().start,
                    &key("queue_timeout"),
                    format!(
                        "`{}` is not a duration ({err}); write e.g. \"50ms\"",
                        q.get_ref()
                    ),
                ),
            }
        }
        let rate = raw.new_sessions_per_sec.as_ref().and_then(|r| {
            if r.get_ref().is_finite() && *r.get_ref() > 0.0 {
                Some(*r.get_ref())
            } else {
                self.problem(
                    r.span().start,
                    &key("new_sessions_per_sec"),
                    "must be a number of new sessions per second above 0 (e.g. 200)",
                );
                None
            }
        });
        let burst =
            raw.new_sessions_burst
                .as_ref()
                .and_then(|b| match u32::try_from(*b.get_ref()) {
                    Ok(v) if v >= 1 => Some((v, b.span().start)),
                    _ => {
                        self.problem(
                            b.span().start,
                            &key("new_sessions_burst"),
                            "must be a whole number of sessions from 1 up (e.g. 100)",
                        );
                        None
                    }
                });
        match (rate, burst) {
            (Some(per_sec), burst) => {
                e.new_sessions = Some(SessionRate {
                    per_sec,
                    // One second's worth by default, so a steady rate is never refused.
                    burst: burst.map_or_else(|| per_sec.ceil().max(1.0) as u32, |(b, _)| b),
                })
            }
            (None, Some((_, at))) if raw.new_sessions_per_sec.is_none() => self.problem(
                at,
                &key("new_sessions_burst"),
                "needs new_sessions_per_sec: add e.g. new_sessions_per_sec = 100",
            ),
            (None, _) => {}
        }
        e
    }

    fn page(&mut self, f: &Spanned<String>, base: &Path) -> Option<String> {
        let path = PathBuf::from(f.get_ref());
        let path = if path.is_relative() {
            base.join(path)
        } else {
            path
        };
        let at = f.span().start;
        let key = "waiting_room.page_file";
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_PAGE_BYTES => {
                self.problem(at, key, "is larger than 256 KiB: keep the page small");
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                self.problem(at, key, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) => {
                self.problem(
                    at,
                    key,
                    format!("cannot read {} as UTF-8 text: {e}", path.display()),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};
    use std::time::Duration;

    const BASE: &str = r#"
[listen]
addr = "127.0.0.1:8080"
[envs.old]
upstreams = ["127.0.0.1:9001"]
max_inflight = 100
adaptive_limit = true
queue_timeout = "20ms"
new_sessions_per_sec = 50
new_sessions_burst = 10
[envs.new]
upstreams = ["127.0.0.1:9011"]
new_sessions_per_sec = 2.5
[envs.fallback]
upstreams = ["127.0.0.1:9021"]
[tunnels]
drain_rate = 20
[waiting_room]
retry_after = 5
"#;

    #[test]
    fn parses_every_key_with_defaults() {
        let c = Config::parse(BASE, "c.toml").expect("valid");
        let old = &c.protection.envs[0];
        assert_eq!(old.max_inflight, Some(100));
        assert!(old.adaptive_limit);
        assert_eq!(old.queue_timeout, Duration::from_millis(20));
        let s = old.new_sessions.expect("rate");
        assert_eq!((s.per_sec, s.burst), (50.0, 10));
        let new = &c.protection.envs[1];
        assert_eq!(new.max_inflight, None);
        assert_eq!(new.queue_timeout, Duration::from_millis(50));
        assert_eq!(new.new_sessions.map(|s| s.burst), Some(3));
        assert_eq!(c.protection.envs[2].new_sessions, None);
        assert_eq!(c.protection.drain_rate, 20.0);
        assert_eq!(c.protection.retry_after_s, 5);
        assert_eq!(c.protection.page, None);
    }

    #[test]
    fn bad_values_are_positioned() {
        let text = BASE
            .replace("max_inflight = 100", "max_inflight = 0")
            .replace("queue_timeout = \"20ms\"", "queue_timeout = \"1m\"")
            .replace("drain_rate = 20", "drain_rate = -1")
            .replace("retry_after = 5", "retry_after = 0")
            .replace("new_sessions_per_sec = 2.5", "new_sessions_burst = 3");
        let Err(ConfigError::Invalid(p)) = Config::parse(&text, "c.toml") else {
            panic!("expected problems");
        };
        let keys: Vec<_> = p.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(
            keys,
            [
                ("envs.old.max_inflight", 6),
                ("envs.old.queue_timeout", 8),
                ("envs.new.new_sessions_burst", 13),
                ("tunnels.drain_rate", 17),
                ("waiting_room.retry_after", 19),
            ],
            "{p:?}"
        );
        assert!(p[2].message.contains("needs new_sessions_per_sec"));
    }

    #[test]
    fn page_file_is_read_relative_to_the_config() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("room.html"), "<p>wait {retry_after}</p>").expect("page");
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, format!("{BASE}page_file = \"room.html\"\n")).expect("cfg");
        let c = Config::load(&cfg).expect("valid");
        assert_eq!(
            c.protection.page.as_deref(),
            Some("<p>wait {retry_after}</p>")
        );

        std::fs::write(&cfg, format!("{BASE}page_file = \"missing.html\"\n")).expect("cfg");
        let Err(ConfigError::Invalid(p)) = Config::load(&cfg) else {
            panic!("expected a problem");
        };
        assert_eq!(
            (p[0].key.as_str(), p[0].line),
            ("waiting_room.page_file", 20)
        );
    }
}
