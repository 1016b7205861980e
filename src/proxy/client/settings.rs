//! How the client limits (`[limits]`, [`Limits`]) become hyper's server settings.
//!
//! Owns: [`builder`], the one place where the client listener's HTTP/1.1 and HTTP/2 settings
//! are chosen. Must not touch: the values themselves (the config's) or sockets —
//! [`super::refuse`] and [`super::conn`] enforce what hyper cannot.
//!
//! Why explicit: hyper's defaults are made for a general server, not for a proxy that many
//! untrusted clients reach. Its header timeout costs a timer reset per request, its HTTP/2
//! header list may reach ~16 MB, and it has no body-read, idle or connection-count limit at
//! all. Every value here is set on purpose, and `docs/config.md` / `docs/reliability.md` say
//! which part of the stack answers what.

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use crate::config::{Limits, MIN_HEADER_BYTES};

/// A connection builder (HTTP/1.1 and HTTP/2 cleartext) with `limits`.
pub(crate) fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // No header timer here: `header_read_timeout` is enforced by the connection
        // sweeper (super::supervise), without a timer reset per request.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
        .max_headers(limits.max_headers)
        .keep_alive(true)
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.h2_max_header_list_size)
        .max_pending_accept_reset_streams(Some(limits.h2_max_pending_reset_streams))
        .max_local_error_reset_streams(Some(limits.h2_max_local_error_reset_streams))
        // No keep-alive pings: their traffic would keep an idle connection "active" for
        // the idle watchdog (super::conn), which also ends connections to dead peers.
        .keep_alive_interval(None);
    builder
}
