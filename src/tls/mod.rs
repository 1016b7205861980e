//! TLS at both edges of cutover: the certificates it presents to users and operators
//! ([`server`]) and the handshake on an accepted socket ([`accept`]), and how it checks the
//! envs' certificates ([`client`]).
//!
//! Owns: reading PEM files (certificates, keys, CA bundles) with errors that name the file and
//! say how to fix it, building rustls configurations (TLS 1.2 and 1.3 only, ring as the crypto
//! provider), choosing a certificate by SNI, and the trust roots for envs. Must not touch: the
//! listeners, the upstream pools or the config format — they hand in paths and take back
//! ready configurations, which a reload swaps whole.

pub mod accept;
pub mod client;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use thiserror::Error;

pub use client::{client_config, client_config_without_roots, ClientTls};
pub use server::{server_config, CertFiles, ServerTls};

/// ALPN protocols cutover offers to clients, in order of preference.
pub const ALPN_H2_H1: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// ALPN of the admin listener (its server speaks HTTP/1.1 only).
pub const ALPN_H1: [&[u8]; 1] = [b"http/1.1"];

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"): give the server's certificate first, then its chain")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a valid PEM {what}: {reason}")]
    BadPem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{path} holds no private key: give a PEM \"PRIVATE KEY\" (PKCS#8), \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\"")]
    NoKey { path: PathBuf },
    #[error("the key {key} does not belong to the certificate {cert} (or cannot sign): {reason}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("no certificate configured for a TLS listener: set tls_cert and tls_key")]
    NoCertificates,
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("no trusted root: the system has no CA certificates ({system}) and no ca_file is set")]
    NoRoots { system: String },
}

/// The crypto provider of every configuration cutover builds: ring, chosen over aws-lc-rs
/// because it builds with nothing but a C compiler (no cmake, no Go).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol versions cutover speaks: TLS 1.3 and 1.2, nothing older.
pub const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file, in file order; at least one.
pub fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}
