//! How cutover checks an env's certificate when its upstream is `https://`.
//!
//! Trust: the system's CA certificates (what `update-ca-certificates` manages, or the files
//! named by `SSL_CERT_FILE`/`SSL_CERT_DIR`), plus an env's own `ca_file` when it has one — an
//! internal CA is the common case for a NEW behind a private ingress. System roots rather than
//! a bundle compiled into the binary: an operator's organisation installs its CAs there, and
//! the OS keeps them current without a new cutover build. The system's roots are read once per
//! process. Names are checked against the SNI name (`[envs.X] sni`, else the upstream's host).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};

use super::{provider, read_certs, TlsError, VERSIONS};

/// An env's TLS client configuration.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    /// The CA file added to the system's roots, if any.
    pub ca_file: Option<PathBuf>,
}

/// Two configurations are the same setting when they trust the same CA file (what a config
/// reload compares; the file is read again whenever the config is).
impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        self.ca_file == other.ca_file
    }
}

/// The system's CA certificates, read once, and a note of what went wrong reading them.
fn system_roots() -> &'static (Vec<rustls::pki_types::CertificateDer<'static>>, String) {
    static ROOTS: OnceLock<(Vec<rustls::pki_types::CertificateDer<'static>>, String)> =
        OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let note = match (found.certs.len(), found.errors.first()) {
            (0, Some(e)) => e.to_string(),
            (0, None) => "none found".to_owned(),
            (n, _) => format!("{n} certificates"),
        };
        for e in &found.errors {
            tracing::warn!(error = %e, "a system CA certificate could not be read");
        }
        (found.certs, note)
    })
}

/// A client configuration trusting the system's roots plus `ca_file`, offering `alpn`.
pub fn client_config(ca_file: Option<&Path>, alpn: &[&[u8]]) -> Result<ClientTls, TlsError> {
    let mut roots = RootCertStore::empty();
    let (system, note) = system_roots();
    // A system certificate rustls cannot use is skipped, as a browser would.
    let _ = roots.add_parsable_certificates(system.iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_certs("CA", path)? {
            roots.add(cert).map_err(|e| TlsError::BadPem {
                what: "CA",
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots {
            system: note.clone(),
        });
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(ClientTls {
        config: Arc::new(config),
        ca_file: ca_file.map(Path::to_owned),
    })
}

/// A configuration trusting no one, for a connector that is only ever given `http://` URLs
/// (hyper-rustls needs one either way).
pub fn client_config_without_roots() -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    Ok(Arc::new(config))
}
