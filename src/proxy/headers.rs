//! Header rules of a proxy: hop-by-hop headers dropped both ways, forwarding headers set.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1) that never cross the proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// True when the request asks to switch protocols (WebSocket and friends).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Remove hop-by-hop headers and every header named in `Connection`. With `keep_upgrade`, the
/// `Upgrade` header and `Connection: upgrade` survive (a tunnel needs them end to end).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|h| !(keep_upgrade && *h == header::UPGRADE))
            .collect();
        for name in listed {
            headers.remove(name);
        }
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

/// Set `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` for a request from `client`.
/// A client-sent `X-Forwarded-For`/`Forwarded` is kept (and appended to) only when
/// `trust_forwarded`; otherwise it is replaced, so clients cannot spoof their address.
///
/// This runs on every request: the values are built with plain byte pushes (no `format!`),
/// which took about a tenth of the proxy's user-space CPU when they went through `core::fmt`
/// (docs/benchmarks.md).
pub fn set_forwarding(
    headers: &mut HeaderMap,
    client: IpAddr,
    host: Option<&HeaderValue>,
    trust_forwarded: bool,
) {
    let xff_name = HeaderName::from_static("x-forwarded-for");
    let mut ip_buf = [0u8; 15];
    let v6_text;
    let client_text: &str = match client {
        IpAddr::V4(v4) => ipv4_text(v4.octets(), &mut ip_buf),
        IpAddr::V6(v6) => {
            v6_text = v6.to_string();
            &v6_text
        }
    };

    let prev_xff = headers
        .get(&xff_name)
        .filter(|_| trust_forwarded)
        .and_then(|v| v.to_str().ok());
    let mut xff = String::with_capacity(prev_xff.map_or(0, |p| p.len() + 2) + client_text.len());
    if let Some(p) = prev_xff {
        xff.push_str(p);
        xff.push_str(", ");
    }
    xff.push_str(client_text);

    let prev_fwd = headers
        .get(header::FORWARDED)
        .filter(|_| trust_forwarded)
        .and_then(|v| v.to_str().ok());
    let host = host.and_then(|h| h.to_str().ok()).filter(|h| {
        h.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b',')
    });
    let mut forwarded = String::with_capacity(
        prev_fwd.map_or(0, |p| p.len() + 2) + client_text.len() + host.map_or(0, str::len) + 28,
    );
    if let Some(p) = prev_fwd {
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
    forwarded.push_str(";proto=http");
    if let Some(h) = host {
        forwarded.push_str(";host=");
        forwarded.push_str(h);
    }

    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(xff_name, v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.insert(header::FORWARDED, v);
    }
}

/// Dotted-quad text of an IPv4 address, written into `buf` (same as `Ipv4Addr`'s `Display`).
fn ipv4_text(octets: [u8; 4], buf: &mut [u8; 15]) -> &str {
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
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
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
        let host = HeaderValue::from_static("app.example");
        set_forwarding(&mut h, "10.0.0.1".parse().expect("ip"), Some(&host), false);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["forwarded"], "for=10.0.0.1;proto=http;host=app.example");
        set_forwarding(&mut h, "::1".parse().expect("ip"), None, true);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, ::1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h["forwarded"],
            "for=10.0.0.1;proto=http;host=app.example, for=\"[::1]\";proto=http"
        );
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
