//! `[listen]`, `[admin]` and `[store]`: where the server listens and keeps its state.
//!
//! Owns: their raw shapes and positioned checks, including the listeners' certificate files
//! (`tls_cert`, `tls_key`, `[[listen.certs]]`). Must not touch: what the server does with
//! them (`serve` binds and opens them; `crate::tls` reads the files).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::check::Checker;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub(super) addr: Option<Spanned<String>>,
    pub(super) workers: Option<Spanned<i64>>,
    pub(super) tls_cert: Option<Spanned<String>>,
    pub(super) tls_key: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) certs: Vec<RawCert>,
}

/// One more certificate of the users' listener (`[[listen.certs]]`), chosen by SNI.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCert {
    pub(super) cert: String,
    pub(super) key: String,
}

/// One certificate chain and its private key, as PEM files (relative paths are relative to
/// the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) addr: Option<Spanned<String>>,
    pub(super) token_file: Option<String>,
    /// Named operators and their roles (`control::tokens`); read and checked by `serve`.
    pub(super) tokens_file: Option<String>,
    pub(super) tls_cert: Option<Spanned<String>>,
    pub(super) tls_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    /// Default `cutover-data`, beside the config file.
    pub(super) path: Option<String>,
    /// How long recorded analysis ticks are kept (default 1 day; docs/config.md).
    pub(super) ticks_retention: Option<toml::Spanned<String>>,
}

impl Checker<'_> {
    /// `listen.addr` and `listen.workers` (default: one per core).
    pub(super) fn listen(&mut self, raw: Option<&RawListen>) -> (Option<SocketAddr>, usize) {
        let listen = match raw.and_then(|l| l.addr.as_ref()) {
            Some(addr) => self.addr(addr, "listen.addr"),
            None => {
                let at = self.text.find("[listen]").unwrap_or(0);
                self.missing(
                    at,
                    "listen.addr",
                    "missing: add `[listen]` with `addr = \"0.0.0.0:8080\"` (where users connect)",
                );
                None
            }
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = raw.and_then(|l| l.workers.as_ref());
        let workers = self.count(workers, "listen.workers", 1, 256, cores as u64) as usize;
        (listen, workers)
    }

    /// `admin.addr` (default 127.0.0.1:9900).
    pub(super) fn admin(&mut self, raw: Option<&RawAdmin>) -> Option<SocketAddr> {
        match raw.and_then(|a| a.addr.as_ref()) {
            Some(a) => self.addr(a, "admin.addr"),
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9900))),
        }
    }
}

impl Checker<'_> {
    /// A listener's certificates: `tls_cert` and `tls_key` (both or neither; the default
    /// certificate, first) then `extra` (`[[listen.certs]]`, which need the pair). Empty: the
    /// listener speaks plain HTTP. Files are read when the listener starts or reloads.
    pub(super) fn certs(
        &mut self,
        section: &str,
        cert: Option<&Spanned<String>>,
        key: Option<&Spanned<String>>,
        extra: &[RawCert],
        base: &Path,
    ) -> Vec<CertFiles> {
        let at = |v: &Spanned<String>| v.span().start;
        let (cert, key) = match (cert, key) {
            (Some(c), Some(k)) => (c, k),
            (None, None) => {
                if !extra.is_empty() {
                    let offset = self.text.find("[[listen.certs]]").unwrap_or(0);
                    self.problem(
                        offset,
                        "listen.certs",
                        "more certificates need a default one: set listen.tls_cert and \
                         listen.tls_key too",
                    );
                }
                return Vec::new();
            }
            (Some(c), None) => {
                let msg = format!("{section}.tls_cert needs {section}.tls_key (its private key)");
                self.problem(at(c), &format!("{section}.tls_key"), msg);
                return Vec::new();
            }
            (None, Some(k)) => {
                let msg = format!("{section}.tls_key needs {section}.tls_cert (its certificate)");
                self.problem(at(k), &format!("{section}.tls_cert"), msg);
                return Vec::new();
            }
        };
        let path = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_relative() {
                base.join(p)
            } else {
                p
            }
        };
        let mut files = vec![CertFiles {
            cert: path(cert.get_ref()),
            key: path(key.get_ref()),
        }];
        files.extend(extra.iter().map(|c| CertFiles {
            cert: path(&c.cert),
            key: path(&c.key),
        }));
        for (key, v) in [("tls_cert", cert), ("tls_key", key)] {
            if v.get_ref().trim().is_empty() {
                self.problem(
                    at(v),
                    &format!("{section}.{key}"),
                    "give the path of a PEM file",
                );
            }
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};
    use super::*;

    const ENVS: &str = "[envs.old]\nupstreams = [\"127.0.0.1:1\"]\n[envs.new]\n\
                        upstreams = [\"127.0.0.1:2\"]\n[envs.fallback]\nupstreams = [\"127.0.0.1:3\"]\n";

    fn parse(listen: &str, admin: &str) -> Result<Config, Vec<String>> {
        let text = format!("[listen]\naddr = \"127.0.0.1:0\"\n{listen}\n[admin]\n{admin}\n{ENVS}");
        Config::parse_in(&text, "c.toml", Path::new("/etc/cutover")).map_err(|e| match e {
            ConfigError::Invalid(p) => p.iter().map(ToString::to_string).collect(),
            e => vec![e.to_string()],
        })
    }

    #[test]
    fn certificates_are_paths_relative_to_the_config_default_first() {
        let c = parse(
            "tls_cert = \"a.pem\"\ntls_key = \"/keys/a.key\"\n\
             [[listen.certs]]\ncert = \"b.pem\"\nkey = \"b.key\"\n",
            "tls_cert = \"admin.pem\"\ntls_key = \"admin.key\"\n",
        )
        .expect("valid");
        let f = |cert: &str, key: &str| CertFiles {
            cert: cert.into(),
            key: key.into(),
        };
        assert_eq!(
            c.listen_tls,
            [
                f("/etc/cutover/a.pem", "/keys/a.key"),
                f("/etc/cutover/b.pem", "/etc/cutover/b.key")
            ]
        );
        assert_eq!(
            c.admin_tls,
            [f("/etc/cutover/admin.pem", "/etc/cutover/admin.key")]
        );
        let plain = parse("", "").expect("valid");
        assert!(plain.listen_tls.is_empty() && plain.admin_tls.is_empty());
    }

    #[test]
    fn a_certificate_without_its_key_or_more_certificates_without_a_default_are_named() {
        let p = parse("tls_cert = \"a.pem\"\n", "tls_key = \"k.pem\"\n").expect_err("invalid");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("`listen.tls_key`: listen.tls_cert needs"),
            "{p:?}"
        );
        assert!(
            p[1].contains("`admin.tls_cert`: admin.tls_key needs"),
            "{p:?}"
        );
        let p = parse("[[listen.certs]]\ncert = \"b.pem\"\nkey = \"b.key\"\n", "")
            .expect_err("invalid");
        assert!(p[0].contains("need a default one"), "{p:?}");
        let p = parse("tls_cert = \"\"\ntls_key = \"k\"\n", "").expect_err("invalid");
        assert!(p[0].contains("`listen.tls_cert`: give the path"), "{p:?}");
    }
}
