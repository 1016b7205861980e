//! The TLS handshake on a socket a listener accepted: the users' listener and the admin
//! listener both call [`accept`].
//!
//! Owns: telling a TLS client from a plain-HTTP one by the first byte, the `400` a plain-HTTP
//! request on a TLS listener gets, and the handshake itself, all within one deadline. Must not
//! touch: the accept loop, the connection cap or what is served over the connection (the
//! caller's), nor the certificates (a [`ServerTls`] hands in the configuration in force).
//!
//! Why a `400` rather than a silent close: an operator who typed `http://` (or a health check
//! left on plain HTTP) gets an answer saying what to change, as NGINX does, instead of an
//! "empty reply" to puzzle over. The first byte of every TLS connection is `0x16` (a handshake
//! record); peeking it costs one system call per connection, next to a handshake's thousands.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::ServerTls;
use crate::proxy::client::conn::answer_and_close;

/// The first byte of a TLS record carrying a handshake message (RFC 8446 §5.1).
const HANDSHAKE_RECORD: u8 = 0x16;

/// The answer to a plain-HTTP request on a TLS listener.
pub const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 62\r\n\
connection: close\r\n\
\r\n\
This port speaks HTTPS: send the request again with https://.\n";

/// Why a connection did not become a TLS connection.
#[derive(Debug, thiserror::Error)]
pub enum NotTls {
    #[error("no TLS handshake within {0:?}")]
    Timeout(Duration),
    #[error("a plain-HTTP request on a TLS listener (answered 400)")]
    PlainHttp,
    #[error("the client closed before its hello")]
    Closed,
    #[error("TLS handshake failed: {0}")]
    Failed(io::Error),
}

/// Shake hands on `tcp` within `deadline`, with the configuration `tls` has in force now.
/// `wrap` turns the socket into what the TLS layer runs over (the proxy's watched socket)
/// once it is known to be a TLS client. A plain-HTTP client is answered `400` in a task of
/// its own (so the caller's slot is freed at once) and `Err(NotTls::PlainHttp)` returned.
pub async fn accept<S, W>(
    tls: &ServerTls,
    tcp: TcpStream,
    wrap: W,
    deadline: Duration,
) -> Result<TlsStream<S>, NotTls>
where
    S: AsyncRead + AsyncWrite + Unpin,
    W: FnOnce(TcpStream) -> S,
{
    let config = tls.config();
    let shake = async move {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) => return Err(NotTls::Closed),
            Ok(_) if first[0] != HANDSHAKE_RECORD => {
                tokio::spawn(answer_and_close(tcp, PLAIN_HTTP_ANSWER));
                return Err(NotTls::PlainHttp);
            }
            Ok(_) => {}
            Err(e) => return Err(NotTls::Failed(e)),
        }
        TlsAcceptor::from(config)
            .accept(wrap(tcp))
            .await
            .map_err(NotTls::Failed)
    };
    tokio::time::timeout(deadline, shake)
        .await
        .map_err(|_| NotTls::Timeout(deadline))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_http_answer_is_framed_right() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).expect("utf8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        assert_eq!(body.len(), len);
    }
}
