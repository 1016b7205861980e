//! The single shared bearer token of the control API: where it comes from.
//!
//! Order: `admin.token_file` from the config, else `CUTOVER_TOKEN`, else (only without a
//! tokens file) a token generated at first start into `<store>/admin.token` (mode 0600) and
//! reused after. An admin listener on a non-loopback address needs an explicitly configured
//! token or a tokens file. The token is one admin operator named [`SHARED_NAME`] among the
//! named ones ([`super::access`]); comparison is constant time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rand::Rng;
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::tokens::{Operator, Role};

/// The operator name of the single shared token, in the event log and in refusals.
pub const SHARED_NAME: &str = "admin-token";

#[derive(Debug, Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the token file {0} is empty: put a long random secret in it")]
    Empty(String),
    #[error("cannot write a generated token to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the admin listener {0} is not on loopback and no token is configured: set admin.token_file \
         or CUTOVER_TOKEN, or listen on 127.0.0.1"
    )]
    ExposedWithoutToken(SocketAddr),
}

/// Where the token came from, for the start-up message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env,
    Generated(PathBuf),
}

#[derive(Clone)]
pub struct Token {
    secret: Vec<u8>,
    pub source: TokenSource,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub fn from_secret(secret: &str, source: TokenSource) -> Token {
        Token {
            secret: secret.trim().as_bytes().to_vec(),
            source,
        }
    }

    /// The token configured explicitly: `token_file`, else a non-blank `env_token`.
    pub fn configured(
        token_file: Option<&Path>,
        env_token: Option<String>,
    ) -> Result<Option<Token>, TokenError> {
        if let Some(path) = token_file {
            return read_token(path)
                .map(|s| Some(Token::from_secret(&s, TokenSource::File(path.to_owned()))));
        }
        Ok(env_token
            .filter(|t| !t.trim().is_empty())
            .map(|t| Token::from_secret(&t, TokenSource::Env)))
    }

    /// Resolve the token for an admin listener at `admin`.
    pub fn resolve(
        token_file: Option<&Path>,
        env_token: Option<String>,
        store_dir: &Path,
        admin: SocketAddr,
    ) -> Result<Token, TokenError> {
        if let Some(t) = Token::configured(token_file, env_token)? {
            return Ok(t);
        }
        if !admin.ip().is_loopback() {
            return Err(TokenError::ExposedWithoutToken(admin));
        }
        let path = store_dir.join("admin.token");
        if path.exists() {
            return read_token(&path).map(|s| Token::from_secret(&s, TokenSource::Generated(path)));
        }
        let secret: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        write_private(&path, &secret).map_err(|source| TokenError::Write {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Token::from_secret(&secret, TokenSource::Generated(path)))
    }

    /// This token as the admin operator [`SHARED_NAME`].
    pub fn operator(&self) -> Operator {
        Operator::with_secret(
            SHARED_NAME,
            Role::Admin,
            &String::from_utf8_lossy(&self.secret),
        )
    }

    /// Check an `Authorization` header value (`Bearer SECRET`) in constant time.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|a| a.strip_prefix(b"Bearer ")) else {
            return false;
        };
        bool::from(given.ct_eq(&self.secret))
    }
}

fn read_token(path: &Path) -> Result<String, TokenError> {
    let s = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.display().to_string(),
        source,
    })?;
    if s.trim().is_empty() {
        return Err(TokenError::Empty(path.display().to_string()));
    }
    Ok(s.trim().to_owned())
}

fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin: SocketAddr = "127.0.0.1:9900".parse().expect("addr");
        let t1 = Token::resolve(None, None, dir.path(), admin).expect("generated");
        let t2 = Token::resolve(None, None, dir.path(), admin).expect("reused");
        assert_eq!(t1.secret, t2.secret);
        assert_eq!(t1.secret.len(), 40);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("admin.token"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut header = b"Bearer ".to_vec();
        header.extend_from_slice(&t1.secret);
        assert!(t1.accepts(Some(&header)));
        assert!(!t1.accepts(Some(b"Bearer wrong")));
        assert!(!t1.accepts(None));
    }

    #[test]
    fn exposed_admin_needs_a_configured_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin: SocketAddr = "0.0.0.0:9900".parse().expect("addr");
        assert!(matches!(
            Token::resolve(None, None, dir.path(), admin),
            Err(TokenError::ExposedWithoutToken(_))
        ));
        assert!(Token::resolve(None, Some("s3cret".into()), dir.path(), admin).is_ok());
    }
}
