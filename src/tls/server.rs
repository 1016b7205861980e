//! The certificates cutover presents: on the users' listener (`[listen] tls_cert`, `tls_key`,
//! more in `[[listen.certs]]`) and the admin listener (`[admin] tls_cert`, `tls_key`).
//!
//! Several certificates are chosen by SNI: the first whose names cover the name the client
//! asked for, else the first one (a client without SNI, or asking for a name no certificate
//! has, gets the first). A reload builds a whole new configuration and swaps it in for the
//! connections accepted afterwards; a connection keeps the configuration it shook hands with,
//! and a bad file leaves the old configuration in place.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::{provider, read, read_certs, TlsError, VERSIONS};

/// One certificate chain and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A listener's TLS configuration, swapped whole by a reload.
#[derive(Debug)]
pub struct ServerTls {
    current: ArcSwap<ServerConfig>,
    alpn: Vec<Vec<u8>>,
}

impl ServerTls {
    /// Load `files` (the first is the default certificate) and offer `alpn` in that order.
    pub fn new(files: &[CertFiles], alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(ServerTls {
            current: ArcSwap::new(server_config(files, &alpn)?),
            alpn,
        })
    }

    /// The configuration for a connection accepted now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Load `files` again; on any error the configuration in force stays.
    pub fn reload(&self, files: &[CertFiles]) -> Result<(), TlsError> {
        let next = server_config(files, &self.alpn)?;
        self.current.store(next);
        Ok(())
    }
}

/// A server configuration presenting `files`, TLS 1.2 and 1.3 only, offering `alpn`.
pub fn server_config(files: &[CertFiles], alpn: &[Vec<u8>]) -> Result<Arc<ServerConfig>, TlsError> {
    if files.is_empty() {
        return Err(TlsError::NoCertificates);
    }
    let provider = provider();
    let keys = files
        .iter()
        .map(|f| certified_key(f, &provider).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { keys }));
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
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
