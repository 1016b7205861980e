//! Connecting to one upstream address: TCP (within the env's connect timeout, with no-delay
//! and keep-alive probes) and, for an `https://` upstream, the TLS handshake that checks the
//! env's certificate. The result is an [`UpStream`], which any HTTP connection (hyper's
//! HTTP/1.1 or HTTP/2 client) speaks over.
//!
//! Owns: [`Link`] (how to reach the addresses of one configured upstream: timeout, TLS name
//! and trust, the `Host` to send) and [`ConnectError`] (what failed). Must not touch: pools,
//! requests, metrics — a failed handshake is reported to the caller, which counts it.
//!
//! A certificate that fails verification (unknown CA, wrong name, expired) fails the connect:
//! nothing of the request was sent, so it is an env's failed connect ([`ConnectError::Tls`]),
//! like a refused one.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::{EnvConfig, UpstreamConfig};

/// TCP keep-alive probes on upstream connections after this much silence.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Why no connection was made. Nothing of a request has been sent in any case.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot connect: {0}")]
    Io(io::Error),
    #[error("no connection within the connect timeout")]
    TimedOut,
    /// The TLS handshake failed: most often the env's certificate did not verify.
    #[error("TLS handshake with {name} failed: {source}")]
    Tls { name: String, source: io::Error },
}

/// How to reach the addresses of one configured upstream.
pub(crate) struct Link {
    pub(crate) connect_timeout: Duration,
    /// For an `https://` upstream: the checked TLS client and the name it checks.
    pub(crate) tls: Option<TlsTo>,
    /// `[envs.X] host_header`: the `Host` the env receives instead of the client's.
    pub(crate) host: Option<HeaderValue>,
    /// `[envs.X] protocol = "h2"`: requests go out in HTTP/2 (over TLS, ALPN offers `h2`).
    pub(crate) h2: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("tls", &self.tls.as_ref().map(|t| &t.name))
            .field("host", &self.host)
            .finish()
    }
}

/// The TLS side of a [`Link`].
pub(crate) struct TlsTo {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Link {
    /// The link of `upstream`, one of `env`'s. An `https://` upstream of an env without a TLS
    /// configuration (which the config check never lets through) gets no TLS and is logged.
    pub(crate) fn new(env: &EnvConfig, upstream: &UpstreamConfig) -> Arc<Link> {
        let tls = match (upstream.target.tls, env.tls.as_ref()) {
            (false, _) => None,
            (true, Some(tls)) => {
                let name = env
                    .sni
                    .clone()
                    .unwrap_or_else(|| upstream.target.host.to_string());
                // An IPv6 host prints in brackets; a server name is without them.
                let name = name.trim_matches(|c| c == '[' || c == ']').to_owned();
                match ServerName::try_from(name) {
                    Ok(name) => Some(TlsTo {
                        connector: TlsConnector::from(tls.config.clone()),
                        name,
                    }),
                    Err(e) => {
                        tracing::error!(upstream = %upstream.target, error = %e,
                            "not a TLS server name; connecting without TLS");
                        None
                    }
                }
            }
            (true, None) => {
                tracing::error!(upstream = %upstream.target,
                    "https upstream without a TLS configuration; connecting without TLS");
                None
            }
        };
        Arc::new(Link {
            connect_timeout: env.connect_timeout,
            tls,
            host: env.host_header.clone(),
            h2: env.protocol == crate::config::Protocol::H2,
        })
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A connection to `addr`: TCP, then TLS if the upstream is `https://`, all within the
    /// connect timeout.
    pub(crate) async fn connect(&self, addr: SocketAddr) -> Result<UpStream, ConnectError> {
        let connect = async {
            let tcp = tcp(addr).await.map_err(ConnectError::Io)?;
            let Some(tls) = &self.tls else {
                return Ok(UpStream::Plain(tcp));
            };
            match tls.connector.connect(tls.name.clone(), tcp).await {
                Ok(s) => Ok(UpStream::Tls(Box::new(s))),
                Err(source) => Err(ConnectError::Tls {
                    name: tls.name.to_str().into_owned(),
                    source,
                }),
            }
        };
        tokio::time::timeout(self.connect_timeout, connect)
            .await
            .unwrap_or(Err(ConnectError::TimedOut))
    }

    /// A plain TCP connection to `addr` within the connect timeout (the hand-spoken path,
    /// which never carries TLS).
    pub(crate) async fn connect_tcp(&self, addr: SocketAddr) -> Result<TcpStream, ConnectError> {
        match tokio::time::timeout(self.connect_timeout, tcp(addr)).await {
            Ok(r) => r.map_err(ConnectError::Io),
            Err(_) => Err(ConnectError::TimedOut),
        }
    }
}

async fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    Ok(stream)
}

/// A connection to an upstream, in clear or over TLS.
#[derive(Debug)]
pub(crate) enum UpStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpStream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpStream::Plain(s) => s.is_write_vectored(),
            UpStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
