//! The certificates cutover presents: on the users' listener (`[listen] tls_cert`, `tls_key`,
//! more in `[[listen.certs]]`) and the admin listener (`[admin] tls_cert`, `tls_key`).
//!
//! Several certificates are chosen by SNI: the first whose names cover the name the client
//! asked for, else the first one (a client without SNI, or asking for a name no certificate
//! has, gets the first). A reload builds a whole new configuration and swaps it in for the
//! connections accepted afterwards; a connection keeps the configuration it shook hands with,
//! and a bad file leaves the old configuration in place.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::{provider, read, read_certs, TlsError, VERSIONS};

/// One certificate chain and its key, as PEM files (the config's type: `[listen] tls_cert`).
pub use crate::config::CertFiles;

/// A listener's TLS configuration, swapped whole by a reload.
#[derive(Debug)]
pub struct ServerTls {
    current: ArcSwap<Loaded>,
    alpn: Vec<Vec<u8>>,
}

/// A configuration built from files, not in force yet ([`ServerTls::prepare`]).
#[derive(Debug)]
pub struct Loaded {
    config: Arc<ServerConfig>,
    /// The end-entity certificate of each file pair, in order: what a reload compares.
    leaves: Vec<Vec<u8>>,
}

impl ServerTls {
    /// Load `files` (the first is the default certificate) and offer `alpn` in that order.
    pub fn new(files: &[CertFiles], alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(ServerTls {
            current: ArcSwap::from_pointee(load(files, &alpn)?),
            alpn,
        })
    }

    /// The configuration for a connection accepted now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load().config.clone()
    }

    /// Load `files` again; on any error the configuration in force stays.
    pub fn reload(&self, files: &[CertFiles]) -> Result<(), TlsError> {
        let next = self.prepare(files)?;
        self.install(next);
        Ok(())
    }

    /// Build the configuration `files` describe without putting it in force: a reload that
    /// changes several things prepares them all first and installs none if one fails.
    pub fn prepare(&self, files: &[CertFiles]) -> Result<Loaded, TlsError> {
        load(files, &self.alpn)
    }

    /// Whether `next` presents other certificates than the configuration in force.
    pub fn differs(&self, next: &Loaded) -> bool {
        self.current.load().leaves != next.leaves
    }

    /// Put `next` in force for the connections accepted from now on.
    pub fn install(&self, next: Loaded) {
        self.current.store(Arc::new(next));
    }
}

/// A server configuration presenting `files`, TLS 1.2 and 1.3 only, offering `alpn`.
pub fn server_config(files: &[CertFiles], alpn: &[Vec<u8>]) -> Result<Arc<ServerConfig>, TlsError> {
    load(files, alpn).map(|l| l.config)
}

fn load(files: &[CertFiles], alpn: &[Vec<u8>]) -> Result<Loaded, TlsError> {
    if files.is_empty() {
        return Err(TlsError::NoCertificates);
    }
    let provider = provider();
    let keys = files
        .iter()
        .map(|f| certified_key(f, &provider).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let leaves = keys
        .iter()
        .map(|k| k.cert.first().map_or_else(Vec::new, |c| c.to_vec()))
        .collect();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { keys }));
    config.alpn_protocols = alpn.to_vec();
    Ok(Loaded {
        config: Arc::new(config),
        leaves,
    })
}

fn certified_key(
    files: &CertFiles,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs("certificate", &files.cert)?;
    let pem = read("key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: files.key.clone(),
        },
        e => TlsError::BadPem {
            what: "key",
            path: files.key.clone(),
            reason: e.to_string(),
        },
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::KeyMismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    })
}

/// Picks the first certificate valid for the client's SNI name, else the first.
#[derive(Debug)]
struct BySni {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.keys.len() > 1 {
            if let Some(name) = hello
                .server_name()
                .and_then(|n| ServerName::try_from(n).ok())
            {
                let fits = |k: &&Arc<CertifiedKey>| {
                    k.end_entity_cert().is_ok_and(|der| {
                        webpki::EndEntityCert::try_from(der)
                            .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
                    })
                };
                if let Some(k) = self.keys.iter().find(fits) {
                    return Some(k.clone());
                }
            }
        }
        self.keys.first().cloned()
    }
}
