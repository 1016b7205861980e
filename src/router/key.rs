//! User-key extraction: header, cookie, query parameter, then client IP, in configured order.
//!
//! Borrowing only: the key is a slice of the request (or the client address's octets), so the
//! hot path allocates nothing to find it.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, COOKIE};
use thiserror::Error;

/// One configured source of the user key, e.g. `header:x-user-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Header(HeaderName),
    Cookie(String),
    Query(String),
    ClientIp,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeySourceError {
    #[error(
        "unknown user key source `{0}`: use header:NAME, cookie:NAME, query:NAME or client_ip"
    )]
    Unknown(String),
    #[error("`{0}` names no {1}: write {1}:NAME")]
    MissingName(String, &'static str),
    #[error("`{0}` is not a valid header name")]
    BadHeader(String),
}

impl std::str::FromStr for KeySource {
    type Err = KeySourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "client_ip" {
            return Ok(KeySource::ClientIp);
        }
        let (kind, name) = s
            .split_once(':')
            .ok_or_else(|| KeySourceError::Unknown(s.to_owned()))?;
        let kind_name: &'static str = match kind {
            "header" => "header",
            "cookie" => "cookie",
            "query" => "query",
            _ => return Err(KeySourceError::Unknown(s.to_owned())),
        };
        if name.is_empty() {
            return Err(KeySourceError::MissingName(s.to_owned(), kind_name));
        }
        Ok(match kind_name {
            "header" => KeySource::Header(
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| KeySourceError::BadHeader(name.to_owned()))?,
            ),
            "cookie" => KeySource::Cookie(name.to_owned()),
            _ => KeySource::Query(name.to_owned()),
        })
    }
}

/// A user key borrowed from the request, or the client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKey<'a> {
    Borrowed(&'a [u8]),
    Ip { octets: [u8; 16], len: u8 },
}

impl<'a> UserKey<'a> {
    pub fn from_ip(ip: IpAddr) -> Self {
        let mut octets = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => {
                octets[..4].copy_from_slice(&v4.octets());
                UserKey::Ip { octets, len: 4 }
            }
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return Self::from_ip(IpAddr::V4(v4));
                }
                octets.copy_from_slice(&v6.octets());
                UserKey::Ip { octets, len: 16 }
            }
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            UserKey::Borrowed(b) => b,
            UserKey::Ip { octets, len } => &octets[..usize::from(*len)],
        }
    }
}

/// The first key found in `sources` order; falls back to the client address when none matches
/// (a request with no key at all is still routed, stickily, by where it comes from).
pub fn extract<'a>(
    sources: &[KeySource],
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    client_ip: IpAddr,
) -> UserKey<'a> {
    for source in sources {
        let found = match source {
            KeySource::Header(name) => headers
                .get(name)
                .map(|v| v.as_bytes())
                .filter(|v| !v.is_empty()),
            KeySource::Cookie(name) => cookie(headers, name),
            KeySource::Query(name) => query.and_then(|q| query_param(q, name)),
            KeySource::ClientIp => return UserKey::from_ip(client_ip),
        };
        if let Some(bytes) = found {
            return UserKey::Borrowed(bytes);
        }
    }
    UserKey::from_ip(client_ip)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    for value in headers.get_all(COOKIE) {
        for pair in value.as_bytes().split(|b| *b == b';') {
            let pair = trim(pair);
            if let Some(rest) = pair.strip_prefix(name.as_bytes()) {
                if let Some(v) = rest.strip_prefix(b"=") {
                    let v = trim_quotes(v);
                    if !v.is_empty() {
                        return Some(v);
                    }
                }
            }
        }
    }
    None
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a [u8]> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name && !v.is_empty()).then_some(v.as_bytes())
    })
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

fn trim_quotes(b: &[u8]) -> &[u8] {
    match b {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn sources() -> Vec<KeySource> {
        ["header:X-User-Id", "cookie:uid", "query:u", "client_ip"]
            .iter()
            .map(|s| s.parse().expect("valid source"))
            .collect()
    }

    #[test]
    fn parses_sources_and_rejects_bad_ones() {
        assert_eq!("client_ip".parse::<KeySource>(), Ok(KeySource::ClientIp));
        assert!(matches!(
            "cookie:".parse::<KeySource>(),
            Err(KeySourceError::MissingName(..))
        ));
        assert!(matches!(
            "hdr:x".parse::<KeySource>(),
            Err(KeySourceError::Unknown(..))
        ));
        assert!(matches!(
            "header:a b".parse::<KeySource>(),
            Err(KeySourceError::BadHeader(..))
        ));
    }

    #[test]
    fn sources_are_tried_in_order() {
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=1; uid=\"bob\"; z=2"));
        assert_eq!(
            extract(&sources(), &h, Some("u=carol"), ip).as_bytes(),
            b"bob"
        );
        h.insert("x-user-id", HeaderValue::from_static("alice"));
        assert_eq!(extract(&sources(), &h, None, ip).as_bytes(), b"alice");
        let empty = HeaderMap::new();
        assert_eq!(
            extract(&sources(), &empty, Some("x=1&u=carol"), ip).as_bytes(),
            b"carol"
        );
        assert_eq!(
            extract(&sources(), &empty, Some("u="), ip).as_bytes(),
            &[10, 1, 2, 3]
        );
        assert_eq!(extract(&[], &empty, None, ip).as_bytes(), &[10, 1, 2, 3]);
    }

    #[test]
    fn mapped_v6_is_the_same_user_as_v4() {
        let v4: IpAddr = "10.1.2.3".parse().expect("ip");
        let v6: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(UserKey::from_ip(v4), UserKey::from_ip(v6));
    }
}
