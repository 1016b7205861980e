//! `[envs.old]`, `[envs.new]`, `[envs.fallback]` and `[probes]`: the environments' upstreams,
//! timeouts and probes.
//!
//! Owns: [`EnvConfig`], the raw shapes (an env's herd-protection keys are read here and
//! checked in `protection`) and their positioned checks. Must not touch: the other sections.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::check::Checker;

#[derive(Debug, Clone, PartialEq)]
pub struct EnvConfig {
    pub upstreams: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Path probed on every upstream of this env; `None` disables probes.
    pub probe_path: Option<String>,
    /// What the env's upstreams are spoken to in (`protocol`, default HTTP/1.1).
    pub protocol: Protocol,
}

/// `[envs.X] protocol`: the HTTP version spoken to the env's upstreams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// `"http1.1"`: keep-alive HTTP/1.1 connections (the default).
    #[default]
    Http1,
    /// `"h2"`: HTTP/2 with prior knowledge in cleartext (h2c), a few multiplexed connections
    /// per upstream (`proxy::upstream::h2`).
    H2,
}

impl Protocol {
    /// The value as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1.1",
            Protocol::H2 => "h2",
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvs {
    pub(super) old: Option<RawEnv>,
    pub(super) new: Option<RawEnv>,
    pub(super) fallback: Option<RawEnv>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnv {
    pub(super) upstreams: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) connect_timeout: Option<Spanned<String>>,
    pub(super) request_timeout: Option<Spanned<String>>,
    pub(super) probe_path: Option<Spanned<String>>,
    pub(super) protocol: Option<Spanned<String>>,
    // Herd protection (checked in `protection`).
    pub(super) max_inflight: Option<Spanned<i64>>,
    pub(super) adaptive_limit: Option<bool>,
    pub(super) queue_timeout: Option<Spanned<String>>,
    pub(super) new_sessions_per_sec: Option<Spanned<f64>>,
    pub(super) new_sessions_burst: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbes {
    pub(super) interval: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
}

impl Checker<'_> {
    pub(super) fn env(&mut self, raw: Option<&RawEnv>, name: &str, envs_at: usize) -> EnvConfig {
        let key = format!("envs.{name}");
        let Some(raw) = raw else {
            self.missing(
                envs_at,
                &key,
                format!("missing [envs.{name}]: add it with upstreams = [\"host:port\"]"),
            );
            return EnvConfig {
                upstreams: Vec::new(),
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(30),
                probe_path: None,
                protocol: Protocol::default(),
            };
        };
        let ukey = format!("{key}.upstreams");
        let upstreams = match &raw.upstreams {
            Some(list) if list.get_ref().is_empty() => {
                self.problem(list.span().start, &ukey, "needs at least one \"host:port\"");
                Vec::new()
            }
            Some(list) => list
                .get_ref()
                .iter()
                .filter_map(|u| self.addr(u, &ukey))
                .collect(),
            None => {
                let at = self.text.find(&format!("[{key}]")).unwrap_or(envs_at);
                self.missing(at, &ukey, "missing: add `upstreams = [\"host:port\"]`");
                Vec::new()
            }
        };
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
            protocol: self.protocol(raw.protocol.as_ref(), &format!("{key}.protocol")),
        }
    }

    /// `envs.X.protocol`: `"http1.1"` (the default) or `"h2"`.
    fn protocol(&mut self, v: Option<&Spanned<String>>, key: &str) -> Protocol {
        let Some(v) = v else {
            return Protocol::default();
        };
        match v.get_ref().as_str() {
            "http1.1" => Protocol::Http1,
            "h2" => Protocol::H2,
            other => {
                self.problem(
                    v.span().start,
                    key,
                    format!(
                        "`{other}` is not a protocol: write \"http1.1\" (the default) or \"h2\" \
                         (HTTP/2 with prior knowledge)"
                    ),
                );
                Protocol::default()
            }
        }
    }

    /// `probes.interval` and `probes.timeout` (1s each by default).
    pub(super) fn probes(&mut self, raw: Option<&RawProbes>) -> (Duration, Duration) {
        let interval = self.duration(
            raw.and_then(|p| p.interval.as_ref()),
            "probes.interval",
            Duration::from_secs(1),
        );
        let timeout = self.duration(
            raw.and_then(|p| p.timeout.as_ref()),
            "probes.timeout",
            Duration::from_secs(1),
        );
        (interval, timeout)
    }
}
