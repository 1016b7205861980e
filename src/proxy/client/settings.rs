//! What a client may send and hold on the data path (`[limits]` in the config), and how those
//! limits become hyper settings.
//!
//! Owns: the [`Limits`] values and their defaults, and [`Limits::builder`], the one place where
//! the client listener's HTTP/1.1 and HTTP/2 settings are chosen. Must not touch: sockets or
//! requests — [`super::refuse`] and [`super::conn`] enforce what hyper cannot.
//!
//! Why explicit: hyper's defaults are made for a general server, not for a proxy that many
//! untrusted clients reach. Its header timeout costs a timer reset per request, its HTTP/2
//! header list may reach ~16 MB, and it has no body-read, idle or connection-count limit at
//! all. Every value here is set on purpose, and `docs/config.md` / `docs/reliability.md` say
//! which part of the stack answers what.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// The smallest HTTP/1 read buffer hyper accepts (it panics below it).
pub const MIN_HEADER_BYTES: usize = 8192;

/// Limits on client connections and requests. All are reloadable: a reload applies them to
/// connections accepted afterwards (and `max_connections` at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open client connections past this are answered 503 and closed.
    pub max_connections: usize,
    /// Time a client gets to send a whole request head (HTTP/1.1), counted from when the
    /// connection opened or its last answer ended: it also bounds the wait for the next
    /// request on a keep-alive connection.
    pub header_read_timeout: Duration,
    /// Longest pause in a request body while the proxy waits for it; past it, 408.
    pub body_read_timeout: Duration,
    /// Slowest average rate (bytes per second) a request body may arrive at, counted over the
    /// time the proxy waited on the client (not on the env) once [`Limits::body_rate_grace`]
    /// of waiting has passed; slower, 408. 0 turns it off. Bounds a body trickled just fast
    /// enough to dodge `body_read_timeout`.
    pub min_body_rate: u64,
    /// Waiting on a body this long before its rate is judged.
    pub body_rate_grace: Duration,
    /// A connection with nothing in flight and no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Largest HTTP/1 request head (request line + headers) in bytes; past it, 431.
    pub max_header_bytes: usize,
    /// Longest request target (path and query, or absolute URI) in bytes; past it, 414.
    pub max_uri_bytes: usize,
    /// Most header fields in one HTTP/1 request; past it, 431.
    pub max_headers: usize,
    /// HTTP/2: streams open at once per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: largest decoded header list (HPACK-expanded) per request.
    pub h2_max_header_list_size: u32,
    /// HTTP/2: streams reset by the client before the server saw them, before GOAWAY
    /// (the "rapid reset" bound).
    pub h2_max_pending_reset_streams: usize,
    /// HTTP/2: streams the server had to reset for protocol errors, before GOAWAY.
    pub h2_max_local_error_reset_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            min_body_rate: 256,
            body_rate_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_uri_bytes: 8 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 256,
            h2_max_header_list_size: 64 * 1024,
            h2_max_pending_reset_streams: 20,
            h2_max_local_error_reset_streams: 256,
        }
    }
}

impl Limits {
    /// A connection builder (HTTP/1.1 and HTTP/2 cleartext) with these limits.
    pub(crate) fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // No header timer here: `header_read_timeout` is enforced by the connection
            // sweeper (super::supervise), without a timer reset per request.
            .header_read_timeout(None)
            .max_buf_size(self.max_header_bytes.max(MIN_HEADER_BYTES))
            .max_headers(self.max_headers)
            .keep_alive(true)
            .writev(false);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(self.h2_max_header_list_size)
            .max_pending_accept_reset_streams(Some(self.h2_max_pending_reset_streams))
            .max_local_error_reset_streams(Some(self.h2_max_local_error_reset_streams))
            // No keep-alive pings: their traffic would keep an idle connection "active" for
            // the idle watchdog (super::conn), which also ends connections to dead peers.
            .keep_alive_interval(None);
        builder
    }
}
