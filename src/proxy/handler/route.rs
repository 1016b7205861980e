//! The route layer: which env a request goes to, and its head made fit for the upstream.
//!
//! Owns: the override header (a smoke test forcing an env, only with the secret), the user
//! key's routing through one snapshot of the table, and the upstream head (hop-by-hop headers
//! dropped, `Host` kept, forwarding headers set). Must not touch: admission, attempts or
//! metrics.

use std::net::SocketAddr;

use http::header::{self, HeaderValue};
use http::Request;
use hyper::body::Body;
use subtle::ConstantTimeEq;

use super::Proxy;
use crate::proxy::headers::{self, set_forwarding, strip_seen_hop_by_hop, ForwardCache, Seen};
use crate::proxy::upstream::body::ClientBody;
use crate::router::{key, Env};

impl Proxy {
    /// Scan `req`'s headers once and take the override headers off it: the scan, and the env
    /// a valid override forces (`None` without one, or without the secret).
    #[inline]
    pub(super) fn take_override(&self, req: &mut Request<ClientBody>) -> (Seen, Option<Env>) {
        // One pass over the names; the lookups below run only for what is there.
        let seen = headers::scan(
            req.headers(),
            &[&self.override_header, &self.override_secret_header],
        );
        if !seen.watched() {
            return (seen, None);
        }
        let forced = self.forced_env(req.headers());
        req.headers_mut().remove(&self.override_header);
        req.headers_mut().remove(&self.override_secret_header);
        (seen, forced)
    }

    /// The env the routing table gives `req`'s user; whether the request is also copied to
    /// NEW (`Some(compare)`: a mirrored user, never for an upgrade); and for an upgrade its
    /// user key (tunnels remember their user so the drain can move them later).
    #[inline]
    pub(super) fn route(
        &self,
        req: &Request<ClientBody>,
        client: SocketAddr,
        upgrade: bool,
    ) -> (Env, Option<bool>, Option<Box<[u8]>>) {
        let table = self.router.load();
        let user = key::extract(
            &self.key_sources,
            req.headers(),
            req.uri().query(),
            client.ip(),
        );
        let (env, mirrored) = table.route_mirrored(user.as_bytes());
        let copy = (mirrored && !upgrade).then(|| table.compare());
        (
            env,
            copy,
            upgrade.then(|| Box::<[u8]>::from(user.as_bytes())),
        )
    }

    /// The env named by a valid override header, if the request carries the secret.
    fn forced_env(&self, headers: &http::HeaderMap) -> Option<Env> {
        let secret = self.override_secret.as_deref()?;
        let wanted = headers.get(&self.override_header)?;
        let given = headers.get(&self.override_secret_header)?;
        if bool::from(given.as_bytes().ct_eq(secret)) {
            wanted.to_str().ok().and_then(Env::parse)
        } else {
            None
        }
    }

    /// Make a client's request head fit for the upstream (hop-by-hop headers dropped but
    /// `te: trailers`, Host kept, forwarding headers set) and return the path and query to send it to. `seen` is
    /// the [`headers::scan`] of its headers.
    pub(super) fn prepare(
        &self,
        parts: &mut http::request::Parts,
        client: SocketAddr,
        forwarding: &ForwardCache,
        seen: Seen,
        upgrade: bool,
    ) -> http::uri::PathAndQuery {
        let trailers = seen.hop_by_hop() && headers::asks_for_trailers(&parts.headers);
        strip_seen_hop_by_hop(&mut parts.headers, upgrade, seen);
        if trailers {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        // The target's authority wins over `Host` (RFC 9112 §3.2.2, absolute form); HTTP/2
        // clients send :authority instead of Host, and upstreams speak HTTP/1.1.
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, v);
        }
        set_forwarding(
            &mut parts.headers,
            client.ip(),
            self.trust_forwarded,
            forwarding,
        );
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"))
    }
}

/// A body of unknown length goes on chunked, as it came. Said explicitly: hyper's client
/// sends a GET's or HEAD's body of unknown length as no body at all. (An HTTP/2 body with a
/// `Content-Length` keeps it: h2 holds the stream to it.)
pub(super) fn frame_unknown_length(headers: &mut http::HeaderMap, body: &ClientBody) {
    if body
        .as_ref()
        .is_some_and(|b| !b.is_end_stream() && b.size_hint().exact().is_none())
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
}
