//! `[envs.old]`, `[envs.new]`, `[envs.fallback]`, `[probes]` and `[resolve]`: the
//! environments' upstreams (addresses, names and TLS), timeouts and probes.
//!
//! Owns: [`EnvConfig`], the raw shapes (an env's herd-protection keys are read here and
//! checked in `protection`) and their positioned checks. Must not touch: the other sections.
//!
//! An upstream is parsed with [`Target::parse`]; a host name is looked up once here (hosts
//! file first, then the system's resolver), so a name that does not resolve is a problem of
//! the config at start and on reload. The proxy re-resolves it every `resolve_interval`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::resolve::{Hosts, Target};
use crate::tls::ClientTls;

use serde::Deserialize;
use toml::Spanned;

use super::check::Checker;

/// How often an upstream's host name is looked up again when `resolve_interval` is not set.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct EnvConfig {
    pub upstreams: Vec<UpstreamConfig>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Path probed on every upstream of this env; `None` disables probes.
    pub probe_path: Option<String>,
    /// How often host names among `upstreams` are looked up again.
    pub resolve_interval: Duration,
    /// The `Host` the env receives instead of the client's.
    pub host_header: Option<HeaderValue>,
    /// The TLS server name (SNI, and the name the certificate must carry) instead of the
    /// upstream's host.
    pub sni: Option<String>,
    /// How the env's certificates are checked; set when one of its upstreams is `https://`.
    pub tls: Option<ClientTls>,
    /// What the env's upstreams are spoken to in (`protocol`, default HTTP/1.1).
    pub protocol: Protocol,
    /// Requests per second the env can serve (`capacity_rps`), for rollback headroom.
    pub capacity_rps: Option<f64>,
}

/// `[envs.X] protocol`: the HTTP version spoken to the env's upstreams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// `"http1.1"`: keep-alive HTTP/1.1 connections (the default).
    #[default]
    Http1,
    /// `"h2"`: HTTP/2, a few multiplexed connections per upstream (`proxy::upstream::h2`):
    /// with prior knowledge in cleartext (h2c) to an `http://` upstream, chosen by ALPN over
    /// TLS to an `https://` one.
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

/// One entry of `upstreams`: where it is, and its addresses when the config was read.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub target: Target,
    pub addrs: Arc<[SocketAddr]>,
}

impl EnvConfig {
    /// An env of plain-HTTP upstreams at `addrs` with default settings (tests, the demo).
    pub fn plain(addrs: &[SocketAddr]) -> EnvConfig {
        EnvConfig {
            upstreams: addrs.iter().map(|a| UpstreamConfig::ip(*a)).collect(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            probe_path: None,
            resolve_interval: DEFAULT_RESOLVE_INTERVAL,
            host_header: None,
            sni: None,
            tls: None,
            protocol: Protocol::default(),
            capacity_rps: None,
        }
    }

    /// Every address of every upstream, in config order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.upstreams
            .iter()
            .flat_map(|u| u.addrs.iter().copied())
            .collect()
    }
}

impl UpstreamConfig {
    /// A plain-HTTP upstream at an IP address.
    pub fn ip(addr: SocketAddr) -> UpstreamConfig {
        UpstreamConfig {
            target: Target {
                tls: false,
                host: crate::resolve::Host::Ip(addr.ip()),
                port: addr.port(),
            },
            addrs: Arc::from([addr]),
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
    pub(super) resolve_interval: Option<Spanned<String>>,
    pub(super) host_header: Option<Spanned<String>>,
    pub(super) sni: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<String>>,
    // Herd protection (checked in `protection`).
    pub(super) max_inflight: Option<Spanned<i64>>,
    pub(super) adaptive_limit: Option<bool>,
    pub(super) queue_timeout: Option<Spanned<String>>,
    pub(super) new_sessions_per_sec: Option<Spanned<f64>>,
    pub(super) new_sessions_burst: Option<Spanned<i64>>,
    // Rollback headroom (docs/analyzer.md).
    pub(super) capacity_rps: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResolve {
    pub(super) hosts_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbes {
    pub(super) interval: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
}

impl Checker<'_> {
    /// `[resolve] hosts_file` (relative to the config's directory), read now so a bad file is
    /// a problem of the config; its names are used by the upstreams' checks.
    pub(super) fn resolve(
        &mut self,
        raw: Option<&RawResolve>,
        base: &Path,
    ) -> (Option<PathBuf>, Option<Hosts>) {
        let Some(v) = raw.and_then(|r| r.hosts_file.as_ref()) else {
            return (None, None);
        };
        let path = base.join(v.get_ref());
        match Hosts::load(&path) {
            Ok(hosts) => (Some(path), Some(hosts)),
            Err(e) => {
                self.problem(v.span().start, "resolve.hosts_file", e);
                (Some(path), None)
            }
        }
    }

    pub(super) fn env(
        &mut self,
        raw: Option<&RawEnv>,
        name: &str,
        envs_at: usize,
        hosts: Option<&Hosts>,
        base: &Path,
    ) -> EnvConfig {
        let key = format!("envs.{name}");
        let Some(raw) = raw else {
            self.missing(
                envs_at,
                &key,
                format!("missing [envs.{name}]: add it with upstreams = [\"host:port\"]"),
            );
            return EnvConfig::plain(&[]);
        };
        let ukey = format!("{key}.upstreams");
        let upstreams: Vec<UpstreamConfig> = match &raw.upstreams {
            Some(list) if list.get_ref().is_empty() => {
                self.problem(list.span().start, &ukey, "needs at least one \"host:port\"");
                Vec::new()
            }
            Some(list) => list
                .get_ref()
                .iter()
                .filter_map(|u| self.upstream(u, &ukey, hosts))
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
        let host_header =
            raw.host_header
                .as_ref()
                .and_then(|h| match HeaderValue::from_str(h.get_ref()) {
                    Ok(v) if !h.get_ref().is_empty() => Some(v),
                    _ => {
                        self.problem(
                            h.span().start,
                            &format!("{key}.host_header"),
                            "must be a host name, with a port if not the default \
                         (e.g. \"new.example.com\")",
                        );
                        None
                    }
                });
        let sni = raw.sni.as_ref().and_then(|s| {
            match rustls::pki_types::ServerName::try_from(s.get_ref().as_str()) {
                Ok(_) => Some(s.get_ref().to_ascii_lowercase()),
                Err(_) => {
                    self.problem(
                        s.span().start,
                        &format!("{key}.sni"),
                        format!(
                            "`{}` is not a DNS name or IP address (e.g. \"new.example.com\")",
                            s.get_ref()
                        ),
                    );
                    None
                }
            }
        });
        let protocol = self.protocol(raw.protocol.as_ref(), &format!("{key}.protocol"));
        let tls = self.env_tls(raw, &key, &upstreams, base, protocol);
        let capacity_rps = raw.capacity_rps.as_ref().and_then(|c| {
            let v = *c.get_ref();
            if v.is_finite() && v > 0.0 {
                return Some(v);
            }
            self.problem(
                c.span().start,
                &format!("{key}.capacity_rps"),
                "must be the requests per second the env can serve, above 0 (e.g. 1200)",
            );
            None
        });
        EnvConfig {
            capacity_rps,
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
            resolve_interval: self.duration(
                raw.resolve_interval.as_ref(),
                &format!("{key}.resolve_interval"),
                DEFAULT_RESOLVE_INTERVAL,
            ),
            host_header,
            sni,
            tls,
            protocol,
        }
    }

    /// One entry of `upstreams`, parsed and looked up.
    fn upstream(
        &mut self,
        v: &Spanned<String>,
        key: &str,
        hosts: Option<&Hosts>,
    ) -> Option<UpstreamConfig> {
        let target = match Target::parse(v.get_ref()) {
            Ok(t) => t,
            Err(e) => {
                self.problem(v.span().start, key, e);
                return None;
            }
        };
        match crate::resolve::lookup_blocking(&target, hosts) {
            Ok(addrs) => Some(UpstreamConfig {
                target,
                addrs: addrs.into(),
            }),
            Err(e) => {
                self.problem(
                    v.span().start,
                    key,
                    format!(
                        "cannot resolve `{}`: {e} (check the name, or list it in \
                         [resolve] hosts_file)",
                        target.host
                    ),
                );
                None
            }
        }
    }

    /// The env's TLS client settings when one of its upstreams is `https://` (`ca_file`, relative
    /// to the config's directory, is added to the system's roots). `ca_file` without an
    /// `https://` upstream is a mistake worth naming.
    fn env_tls(
        &mut self,
        raw: &RawEnv,
        key: &str,
        upstreams: &[UpstreamConfig],
        base: &Path,
        protocol: Protocol,
    ) -> Option<ClientTls> {
        let ca = raw.ca_file.as_ref();
        let upstreams_at = raw.upstreams.as_ref().map_or(0, |u| u.span().start);
        let at = ca.map_or(upstreams_at, |c| c.span().start);
        if !upstreams.iter().any(|u| u.target.tls) {
            if ca.is_some() {
                self.problem(
                    at,
                    &format!("{key}.ca_file"),
                    "no upstream of this env is https://: write the upstreams as \
                     \"https://host[:port]\" or remove ca_file",
                );
            }
            return None;
        }
        let path = ca.map(|c| base.join(c.get_ref()));
        // ALPN offers only what the env is spoken to in: an h2 env that cannot agree on `h2`
        // fails the handshake (a failed connect, named in the log) rather than half-working.
        let alpn: &[&[u8]] = match protocol {
            Protocol::Http1 => &[b"http/1.1"],
            Protocol::H2 => &[b"h2"],
        };
        match crate::tls::client_config(path.as_deref(), alpn) {
            Ok(tls) => Some(tls),
            Err(e) => {
                let which = if ca.is_some() { "ca_file" } else { "upstreams" };
                self.problem(at, &format!("{key}.{which}"), e.to_string());
                None
            }
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

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, ConfigProblem};
    use std::time::Duration;

    const ENVS: &str =
        "[listen]\naddr = \"127.0.0.1:0\"\n[envs.old]\nupstreams = [\"127.0.0.1:1\"]\n\
                        [envs.fallback]\nupstreams = [\"127.0.0.1:3\"]\n[envs.new]\n";

    fn problems(new: &str) -> Vec<ConfigProblem> {
        match Config::parse(&format!("{ENVS}{new}"), "c.toml") {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn upstreams_take_a_scheme_and_names_resolve_through_the_hosts_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.2 new.test\n127.0.0.3 new.test\n").expect("write");
        let text = format!(
            "{ENVS}upstreams = [\"https://new.test\", \"http://10.0.0.5:8080\"]\n\
             resolve_interval = \"2s\"\nhost_header = \"new.internal\"\nsni = \"New.Example\"\n\
             [resolve]\nhosts_file = \"{}\"\n",
            hosts.display()
        );
        let c = Config::parse(&text, "c.toml").expect("valid");
        let new = &c.new;
        assert!(new.upstreams[0].target.tls && !new.upstreams[1].target.tls);
        assert_eq!(new.upstreams[0].addrs.len(), 2, "every address of the name");
        assert_eq!(new.addrs().len(), 3);
        assert_eq!(new.resolve_interval, Duration::from_secs(2));
        assert_eq!(
            new.host_header.as_ref().map(|h| h.as_bytes()),
            Some(&b"new.internal"[..])
        );
        assert_eq!(new.sni.as_deref(), Some("new.example"));
        assert!(new.tls.is_some(), "an https upstream gets a TLS client");
        assert!(c.old.tls.is_none());
        assert_eq!(c.old.resolve_interval, super::DEFAULT_RESOLVE_INTERVAL);
    }

    #[test]
    fn each_mistake_names_its_key() {
        let key = |p: &[ConfigProblem]| {
            let mut keys: Vec<String> = p.iter().map(|p| p.key.clone()).collect();
            keys.sort();
            keys
        };
        let p = problems("upstreams = [\"ftp://x:1\", \"no-port\"]\n");
        assert_eq!(
            key(&p),
            ["envs.new.upstreams", "envs.new.upstreams"],
            "{p:?}"
        );
        assert!(p[0].message.contains("unknown scheme"), "{}", p[0]);
        let p = problems("upstreams = [\"127.0.0.1:2\"]\nca_file = \"ca.pem\"\n");
        assert_eq!(key(&p), ["envs.new.ca_file"]);
        assert!(
            p[0].message.contains("no upstream of this env is https://"),
            "{}",
            p[0]
        );
        let p =
            problems("upstreams = [\"https://127.0.0.1:2\"]\nca_file = \"/nonexistent/ca.pem\"\n");
        assert_eq!(key(&p), ["envs.new.ca_file"]);
        assert!(p[0].message.contains("/nonexistent/ca.pem"), "{}", p[0]);
        let p =
            problems("upstreams = [\"127.0.0.1:2\"]\nsni = \"not a name\"\nhost_header = \"\"\n");
        assert_eq!(key(&p), ["envs.new.host_header", "envs.new.sni"]);
        let p = problems("upstreams = [\"127.0.0.1:2\"]\nresolve_interval = \"0s\"\n");
        assert_eq!(key(&p), ["envs.new.resolve_interval"]);
        let p = problems(
            "upstreams = [\"127.0.0.1:2\"]\n[resolve]\nhosts_file = \"/nonexistent/hosts\"\n",
        );
        assert_eq!(key(&p), ["resolve.hosts_file"]);
        assert!(p[0].message.contains("/nonexistent/hosts"), "{}", p[0]);
    }

    #[test]
    fn capacity_is_a_positive_rate() {
        let text = format!("{ENVS}upstreams = [\"127.0.0.1:2\"]\ncapacity_rps = 1200\n");
        let c = Config::parse(&text, "c.toml").expect("valid");
        assert_eq!(
            (c.new.capacity_rps, c.old.capacity_rps),
            (Some(1200.0), None)
        );
        let p = problems("upstreams = [\"127.0.0.1:2\"]\ncapacity_rps = 0\n");
        assert_eq!((p[0].key.as_str(), p[0].line), ("envs.new.capacity_rps", 9));
        assert!(p[0].message.contains("above 0"), "{}", p[0]);
    }
}
