//! Header rules of a proxy: hop-by-hop headers dropped both ways, forwarding headers set.
//!
//! This runs on every request and answer, so it looks before it changes: one pass over the
//! header names ([`scan`]) tells whether anything needs removing — usually nothing does — and
//! the forwarding values, which depend only on the client connection (and its `Host`), are
//! built once per connection ([`ForwardCache`]).

use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Hop-by-hop headers (RFC 9110 §7.6.1) that never cross the proxy (a request's
/// `TE: trailers` goes on as `te: trailers`: [`asks_for_trailers`]). `Trailer` is not one:
/// RFC 9110 §6.6.2 makes it end to end, and hyper sends only the trailers it declares.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
];

/// Which headers of interest a map holds, found by [`scan`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen(u8);

impl Seen {
    const CONNECTION: u8 = 1;
    const UPGRADE: u8 = 2;
    const OTHER_HOP: u8 = 4;
    const WATCHED: u8 = 8;

    /// Some hop-by-hop header (`Connection`, `Upgrade` or another of RFC 9110's) is present.
    pub fn hop_by_hop(self) -> bool {
        self.0 & (Self::CONNECTION | Self::UPGRADE | Self::OTHER_HOP) != 0
    }

    /// Both `Connection` and `Upgrade` are present: the request may ask to switch protocols.
    pub fn may_upgrade(self) -> bool {
        self.0 & (Self::CONNECTION | Self::UPGRADE) == Self::CONNECTION | Self::UPGRADE
    }

    /// One of the `watched` names given to [`scan`] is present.
    pub fn watched(self) -> bool {
        self.0 & Self::WATCHED != 0
    }
}

/// One pass over the header names, comparing (not hashing) each against the hop-by-hop set and
/// `watched`. Standard names compare as one small number each, and other names by length
/// first, so a request's usual headers cost a few comparisons apiece.
pub fn scan(headers: &HeaderMap, watched: &[&HeaderName]) -> Seen {
    let mut seen = 0;
    for name in headers.keys() {
        seen |= if *name == header::CONNECTION {
            Seen::CONNECTION
        } else if *name == header::UPGRADE {
            Seen::UPGRADE
        } else if HOP_BY_HOP[1..].contains(name) {
            Seen::OTHER_HOP
        } else if watched.contains(&name) {
            Seen::WATCHED
        } else {
            0
        };
    }
    Seen(seen)
}

/// True when the request asks to switch protocols (WebSocket and friends).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| has_token(s.as_bytes(), token.as_bytes()))
    })
}

/// Whether the comma-separated list `value` (`Connection`, say) holds `token`, ignoring case
/// and the spaces around each item.
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether the request's `TE` accepts trailers (`TE: trailers`, as gRPC clients send it).
/// A proxy must not forward `TE` as it came, but an env may send trailers only to a client
/// that said so, and gRPC servers refuse a request without it: the handler sends
/// `te: trailers` on alone (RFC 9113 §8.2.2 allows nothing else in HTTP/2 anyway).
pub fn asks_for_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"trailers"))
}

/// Headers a `Connection` list never removes: the `Host` the env routes by, the framing of the
/// message, and the forwarding headers the proxy owns (with `trust_forwarded`, a client could
/// otherwise erase the chain a trusted balancer wrote). RFC 9110 §7.6.1 forbids a sender to
/// list end-to-end fields; NGINX ignores such lists altogether, so keeping these is the
/// stricter of the two readings that breaks nothing.
const NEVER_LISTED: [HeaderName; 5] = [
    header::HOST,
    header::CONTENT_LENGTH,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    header::FORWARDED,
];

/// Remove hop-by-hop headers and every header named in `Connection` (but the
/// [`NEVER_LISTED`] ones). With `keep_upgrade`, the `Upgrade` header and
/// `Connection: upgrade` survive (a tunnel needs them end to end). A message that came with
/// `Transfer-Encoding` loses its `Content-Length` too (RFC 9112 §6.3: the coding wins, and
/// the length is wrong for what is passed on).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let seen = scan(headers, &[]);
    strip_seen_hop_by_hop(headers, keep_upgrade, seen);
}

/// [`strip_hop_by_hop`] with the [`scan`] of `headers` already done: nothing is looked up
/// when it found no hop-by-hop header.
pub fn strip_seen_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool, seen: Seen) {
    if !keep_upgrade && !seen.hop_by_hop() {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|h| !(NEVER_LISTED.contains(h) || keep_upgrade && *h == header::UPGRADE))
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// The forwarding values of one client connection, built on its first request and reused:
/// they depend only on the client's address and the `Host` asked for (usually the same on
/// every request of a connection). Values extending what a trusted client sent are built
/// per request.
#[derive(Debug, Default)]
pub struct ForwardCache {
    /// The client reached cutover over TLS: `X-Forwarded-Proto: https` and `proto=https`.
    https: bool,
    xff: OnceLock<HeaderValue>,
    /// `Forwarded` and the `Host` it names.
    forwarded: OnceLock<(Option<HeaderValue>, HeaderValue)>,
}

impl ForwardCache {
    /// The cache of a connection that came over TLS (`https`) or plain HTTP.
    pub fn new(https: bool) -> ForwardCache {
        ForwardCache {
            https,
            ..ForwardCache::default()
        }
    }

    fn proto(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }
}

/// Set `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` for a request from `client`
/// (`Forwarded` names the request's `Host`). A client-sent `X-Forwarded-For`/`Forwarded` is
/// kept (and appended to) only when `trust_forwarded`; otherwise it is replaced, so clients
/// cannot spoof their address.
///
/// The values are built with plain byte pushes (no `format!`, which took about a tenth of the
/// proxy's user-space CPU, docs/benchmarks.md), and only once per connection when `cache`
/// allows.
pub fn set_forwarding(
    headers: &mut HeaderMap,
    client: IpAddr,
    trust_forwarded: bool,
    cache: &ForwardCache,
) {
    // Room for the three inserts below at once (a map parsed from a small head is full).
    headers.reserve(3);
    let prev = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let (prev_xff, prev_fwd) = if trust_forwarded {
        (prev(&X_FORWARDED_FOR), prev(&header::FORWARDED))
    } else {
        (None, None)
    };
    let xff = match prev_xff {
        None => Some(
            cache
                .xff
                .get_or_init(|| value(xff_text(None, client)))
                .clone(),
        ),
        Some(p) => Some(value(xff_text(Some(p), client))),
    };
    let host = headers.get(header::HOST);
    let forwarded = match (prev_fwd, cache.forwarded.get()) {
        (None, Some((h, v))) if h.as_ref() == host => v.clone(),
        (None, cached) => {
            let v = value(forwarded_text(None, client, host, cache.proto()));
            if cached.is_none() {
                let _ = cache.forwarded.set((host.cloned(), v.clone()));
            }
            v
        }
        (Some(p), _) => value(forwarded_text(Some(p), client, host, cache.proto())),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(cache.proto()));
    headers.insert(header::FORWARDED, forwarded);
}

/// A header value from text built of header-safe parts (an address, a checked host, and what
/// a client sent as a valid value), without copying it.
fn value(text: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from(text.into_bytes()))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn xff_text(prev: Option<&str>, client: IpAddr) -> String {
    let mut ip_buf = [0u8; 39];
    let client_text = ip_text(client, &mut ip_buf);
    let mut xff = String::with_capacity(prev.map_or(0, |p| p.len() + 2) + client_text.len());
    if let Some(p) = prev {
        xff.push_str(p);
        xff.push_str(", ");
    }
    xff.push_str(client_text);
    xff
}

fn forwarded_text(
    prev: Option<&str>,
    client: IpAddr,
    host: Option<&HeaderValue>,
    proto: &str,
) -> String {
    let mut ip_buf = [0u8; 39];
    let client_text = ip_text(client, &mut ip_buf);
    let host = host.and_then(|h| h.to_str().ok()).filter(|h| {
        h.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b',')
    });
    let mut forwarded = String::with_capacity(
        prev.map_or(0, |p| p.len() + 2) + client_text.len() + host.map_or(0, str::len) + 28,
    );
    if let Some(p) = prev {
        forwarded.push_str(p);
        forwarded.push_str(", ");
    }
    forwarded.push_str("for=");
    if client.is_ipv6() {
        forwarded.push_str("\"[");
        forwarded.push_str(client_text);
        forwarded.push_str("]\"");
    } else {
        forwarded.push_str(client_text);
    }
    forwarded.push_str(";proto=");
    forwarded.push_str(proto);
    if let Some(h) = host {
        forwarded.push_str(";host=");
        forwarded.push_str(h);
    }
    forwarded
}

/// The address as text, written into `buf` when it fits (IPv4 always does).
fn ip_text(client: IpAddr, buf: &mut [u8; 39]) -> &str {
    match client {
        IpAddr::V4(v4) => ipv4_text(v4.octets(), buf),
        IpAddr::V6(v6) => {
            use std::io::Write;
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let n = match write!(cur, "{v6}") {
                Ok(()) => cur.position() as usize,
                Err(_) => 0,
            };
            std::str::from_utf8(&buf[..n]).unwrap_or("::")
        }
    }
}

/// Dotted-quad text of an IPv4 address, written into `buf` (at least 15 bytes; same as
/// `Ipv4Addr`'s `Display`).
fn ipv4_text(octets: [u8; 4], buf: &mut [u8]) -> &str {
    let mut n = 0;
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            buf[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            buf[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + o % 10;
        n += 1;
    }
    // Only ASCII digits and dots were written.
    std::str::from_utf8(&buf[..n]).unwrap_or("0.0.0.0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_listed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert(header::TRAILER, HeaderValue::from_static("x-checksum"));
        assert!(asks_for_trailers(&h));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
        assert!(h.contains_key("x-kept"));
        assert!(h.contains_key(header::TRAILER), "end to end");
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers;q=1"));
        assert!(!asks_for_trailers(&h), "a parameter is not the bare token");
        h.insert(header::TE, HeaderValue::from_static("gzip, Trailers"));
        assert!(asks_for_trailers(&h));
    }

    #[test]
    fn a_connection_list_never_removes_host_framing_or_forwarding() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static(
                "host, content-length, x-forwarded-for, forwarded, x-forwarded-proto, cookie",
            ),
        );
        for name in ["host", "content-length", "x-forwarded-for", "forwarded"] {
            h.insert(name, HeaderValue::from_static("5"));
        }
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        h.insert(header::COOKIE, HeaderValue::from_static("a=1"));
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "content-length",
                "forwarded",
                "host",
                "x-forwarded-for",
                "x-forwarded-proto"
            ]
        );
    }

    #[test]
    fn transfer_encoding_drops_content_length() {
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn keeps_upgrade_for_tunnels() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get(header::UPGRADE).map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            h.get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
    }

    #[test]
    fn forwarding_headers_do_not_trust_clients_by_default() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert(header::HOST, HeaderValue::from_static("app.example"));
        let cache = ForwardCache::default();
        set_forwarding(&mut h, "10.0.0.1".parse().expect("ip"), false, &cache);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["forwarded"], "for=10.0.0.1;proto=http;host=app.example");
        h.remove(header::HOST);
        set_forwarding(&mut h, "::1".parse().expect("ip"), true, &cache);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, ::1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h["forwarded"],
            "for=10.0.0.1;proto=http;host=app.example, for=\"[::1]\";proto=http"
        );
    }

    #[test]
    fn a_tls_connection_forwards_https() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app.example"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        let cache = ForwardCache::new(true);
        set_forwarding(&mut h, "10.0.0.1".parse().expect("ip"), false, &cache);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=10.0.0.1;proto=https;host=app.example");
    }

    #[test]
    fn scan_finds_hop_by_hop_and_watched_names_without_lookups() {
        let watched = HeaderName::from_static("x-cutover-env");
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert("x-user-id", HeaderValue::from_static("u1"));
        let seen = scan(&h, &[&watched]);
        assert!(!seen.hop_by_hop() && !seen.may_upgrade() && !seen.watched());
        h.insert("x-cutover-env", HeaderValue::from_static("new"));
        assert!(scan(&h, &[&watched]).watched());
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        let seen = scan(&h, &[&watched]);
        assert!(seen.hop_by_hop() && !seen.may_upgrade());
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!scan(&h, &[]).may_upgrade(), "Upgrade without Connection");
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        assert!(scan(&h, &[]).may_upgrade());
    }

    #[test]
    fn forwarding_values_are_reused_for_the_same_host_only() {
        let cache = ForwardCache::default();
        let client = "10.0.0.7".parse().expect("ip");
        let mut first = HeaderMap::new();
        first.insert(header::HOST, HeaderValue::from_static("a.example"));
        set_forwarding(&mut first, client, false, &cache);
        let mut again = HeaderMap::new();
        again.insert(header::HOST, HeaderValue::from_static("a.example"));
        again.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        set_forwarding(&mut again, client, false, &cache);
        assert_eq!(again["x-forwarded-for"], "10.0.0.7");
        assert_eq!(again["forwarded"], "for=10.0.0.7;proto=http;host=a.example");
        let mut other = HeaderMap::new();
        other.insert(header::HOST, HeaderValue::from_static("b.example"));
        set_forwarding(&mut other, client, false, &cache);
        assert_eq!(other["forwarded"], "for=10.0.0.7;proto=http;host=b.example");
        let mut trusted = HeaderMap::new();
        trusted.insert(header::HOST, HeaderValue::from_static("a.example"));
        trusted.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        trusted.insert(header::FORWARDED, HeaderValue::from_static("for=1.2.3.4"));
        set_forwarding(&mut trusted, client, true, &cache);
        assert_eq!(trusted["x-forwarded-for"], "1.2.3.4, 10.0.0.7");
        assert_eq!(
            trusted["forwarded"],
            "for=1.2.3.4, for=10.0.0.7;proto=http;host=a.example"
        );
    }

    #[test]
    fn ipv6_text_matches_display() {
        let mut buf = [0u8; 39];
        for ip in [
            "::1",
            "2001:db8::7",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let addr: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_text(addr, &mut buf), addr.to_string());
        }
    }

    #[test]
    fn ipv4_text_matches_display() {
        let mut buf = [0u8; 15];
        for octets in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [127, 0, 0, 1],
            [10, 9, 99, 100],
            [1, 20, 200, 249],
        ] {
            let expected = std::net::Ipv4Addr::from(octets).to_string();
            assert_eq!(ipv4_text(octets, &mut buf), expected);
        }
        for o in 0..=255u8 {
            let octets = [o, o.wrapping_mul(7), o.wrapping_add(100), 255 - o];
            let expected = std::net::Ipv4Addr::from(octets).to_string();
            assert_eq!(ipv4_text(octets, &mut buf), expected);
        }
    }
}
