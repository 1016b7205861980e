//! `[routing]`: how a request's user is identified and how a request forces its env.
//!
//! Owns: the raw shape, the user-key sources, the override headers and their positioned
//! checks. Must not touch: the routing rule itself ([`crate::router`]).

use serde::Deserialize;
use toml::Spanned;

use super::check::Checker;
use crate::router::KeySource;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    pub(super) user_key: Option<Vec<Spanned<String>>>,
    pub(super) override_header: Option<Spanned<String>>,
    pub(super) override_secret_header: Option<Spanned<String>>,
    pub(super) override_secret: Option<String>,
    pub(super) salt: Option<String>,
    pub(super) trust_forwarded: Option<bool>,
}

/// The checked `[routing]` keys, with their defaults.
pub(super) struct Routing {
    pub(super) user_key: Vec<KeySource>,
    pub(super) override_header: http::HeaderName,
    pub(super) override_secret_header: http::HeaderName,
    pub(super) override_secret: Option<String>,
    pub(super) salt: String,
    pub(super) trust_forwarded: bool,
}

impl Checker<'_> {
    pub(super) fn routing(&mut self, routing: Option<&RawRouting>) -> Routing {
        let mut user_key = Vec::new();
        let sources = routing.and_then(|r| r.user_key.clone()).unwrap_or_else(|| {
            ["header:x-user-id", "cookie:uid", "client_ip"]
                .iter()
                .map(|s| Spanned::new(0..0, (*s).to_owned()))
                .collect()
        });
        for s in &sources {
            match s.get_ref().parse::<KeySource>() {
                Ok(k) => user_key.push(k),
                Err(e) => self.problem(s.span().start, "routing.user_key", e.to_string()),
            }
        }
        let override_header = self.header(
            routing.and_then(|r| r.override_header.as_ref()),
            "routing.override_header",
            "x-cutover-env",
        );
        let override_secret_header = self.header(
            routing.and_then(|r| r.override_secret_header.as_ref()),
            "routing.override_secret_header",
            "x-cutover-key",
        );
        Routing {
            user_key,
            override_header,
            override_secret_header,
            override_secret: routing.and_then(|r| r.override_secret.clone()),
            salt: routing
                .and_then(|r| r.salt.clone())
                .unwrap_or_else(|| "cutover".to_owned()),
            trust_forwarded: routing.and_then(|r| r.trust_forwarded).unwrap_or(false),
        }
    }

    fn header(
        &mut self,
        v: Option<&Spanned<String>>,
        key: &str,
        default: &'static str,
    ) -> http::HeaderName {
        let Some(v) = v else {
            return http::HeaderName::from_static(default);
        };
        match http::HeaderName::from_bytes(v.get_ref().to_ascii_lowercase().as_bytes()) {
            Ok(h) => h,
            Err(_) => {
                self.problem(
                    v.span().start,
                    key,
                    format!("`{}` is not a valid header name", v.get_ref()),
                );
                http::HeaderName::from_static(default)
            }
        }
    }
}
