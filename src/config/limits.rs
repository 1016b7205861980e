//! What a client may send and hold on the data path (`[limits]` in the config).
//!
//! Owns: the [`Limits`] values, their defaults and the floor of `max_header_bytes`. Must not
//! touch: sockets, requests or hyper — the proxy's client room turns these values into
//! hyper's settings (`proxy::client::settings`) and enforces what hyper cannot.

use std::time::Duration;

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
