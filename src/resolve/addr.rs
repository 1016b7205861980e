//! An upstream as the config writes it: `"10.0.0.5:8080"`, `"new.internal:8080"`,
//! `"http://new.internal"` or `"https://new.example.com"` (port 80 / 443 by default with a
//! scheme; required without one). Pure: text in, target or a message out.

use std::fmt;
use std::net::IpAddr;

/// Where an env's upstream is, before any name is resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// `https://`: speak TLS to it, with SNI and certificate checks for `host`.
    pub tls: bool,
    pub host: Host,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    /// A DNS name, lower-cased, without a trailing dot.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https://" } else { "" };
        write!(f, "{scheme}{}:{}", self.host, self.port)
    }
}

impl Target {
    /// Parse one entry of `upstreams`; the error says what is wrong and what is expected.
    pub fn parse(text: &str) -> Result<Target, String> {
        const EXPECTED: &str =
            "expected \"host:port\", \"http://host[:port]\" or \"https://host[:port]\"";
        let (tls, rest, default_port) = match text.split_once("://") {
            None => (false, text, None),
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "http" => (false, rest, Some(80)),
                "https" => (true, rest, Some(443)),
                _ => return Err(format!("unknown scheme `{scheme}://`: {EXPECTED}")),
            },
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{text}` has a path, query or user part: an upstream is only a host and a port \
                 (the request's path is kept as the client sent it)"
            ));
        }
        let (host, port) = split_host_port(rest)
            .ok_or_else(|| format!("`{text}` is not a host and port: {EXPECTED}"))?;
        let port = match (port, default_port) {
            (Some(p), _) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{p}` is not a port (1-65535) in `{text}`"))?,
            (None, Some(d)) => d,
            (None, None) => {
                return Err(format!(
                "`{text}` has no port: write \"{text}:PORT\" (or a scheme, http:// or https://, \
                     for the default port)"
            ))
            }
        };
        let host = parse_host(host)
            .ok_or_else(|| format!("`{host}` is not a host name or IP address in `{text}`"))?;
        Ok(Target { tls, host, port })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return match after {
            "" => Some((ip, None)),
            _ => Some((ip, Some(after.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        // A bare IPv6 address without brackets is ambiguous with a port.
        Some((h, _)) if h.contains(':') => None,
        Some((h, p)) => Some((h, Some(p))),
        None => Some((s, None)),
    }
}

fn parse_host(h: &str) -> Option<Host> {
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(Host::Ip(ip));
    }
    let name = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (!name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok))
        .then_some(Host::Name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        Target::parse(s)
            .map(|t| t.to_string())
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_written_form_parses_to_scheme_host_and_port() {
        assert_eq!(ok("10.0.0.5:8080"), "10.0.0.5:8080");
        assert_eq!(ok("New.Internal.:8080"), "new.internal:8080");
        assert_eq!(ok("http://new.internal"), "new.internal:80");
        assert_eq!(ok("https://new.example.com"), "https://new.example.com:443");
        assert_eq!(
            ok("HTTPS://new.example.com:8443/"),
            "https://new.example.com:8443"
        );
        assert_eq!(ok("[::1]:9000"), "[::1]:9000");
        assert_eq!(ok("https://[2001:db8::1]"), "https://[2001:db8::1]:443");
        let t = Target::parse("https://10.1.2.3").expect("ip");
        assert!(t.tls);
        assert_eq!(t.host, Host::Ip("10.1.2.3".parse().expect("ip")));
    }

    #[test]
    fn each_mistake_is_named() {
        for (bad, says) in [
            ("new.internal", "has no port"),
            ("ftp://x:1", "unknown scheme `ftp://`"),
            ("https://x/api", "has a path"),
            ("https://user@x", "has a path, query or user part"),
            ("x:0", "is not a port"),
            ("x:99999", "is not a port"),
            ("x:http", "is not a port"),
            ("::1:80", "is not a host and port"),
            ("[::1", "is not a host and port"),
            ("bad_host!:80", "is not a host name"),
            (":80", "is not a host name"),
            ("-x.com:80", "is not a host name"),
        ] {
            let err = Target::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
