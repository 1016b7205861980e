//! `[prometheus]`: where query gates ask (docs/config.md). Plans never carry the URL, so the
//! same plan runs against any installation's Prometheus.
//!
//! Owns: the raw shape, the defaults and the positioned checks of the section. Must not touch:
//! the client itself ([`crate::prometheus`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::check::Checker;

/// How long a query may take before it counts as failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long query gates may fail to get an answer before the run pauses.
pub const DEFAULT_PAUSE_AFTER: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrometheus {
    pub(super) url: Option<Spanned<String>>,
    pub(super) bearer_token_file: Option<String>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) pause_after: Option<Spanned<String>>,
}

/// The checked `[prometheus]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusConfig {
    /// `http://prometheus:9090` (the API is under `/api/v1/`).
    pub url: String,
    /// A file holding a bearer token, read again on every query.
    pub bearer_token_file: Option<PathBuf>,
    pub timeout: Duration,
    /// A CA added to the system's roots for an `https://` URL.
    pub ca_file: Option<PathBuf>,
    /// How long a query gate may fail to get an answer before the run pauses.
    pub pause_after: Duration,
}

impl Checker<'_> {
    pub(super) fn prometheus(
        &mut self,
        raw: Option<&RawPrometheus>,
        at: usize,
        base: &Path,
    ) -> Option<PrometheusConfig> {
        let raw = raw?;
        let Some(url) = &raw.url else {
            self.missing(at, "prometheus.url", "[prometheus] has no `url`");
            return None;
        };
        let u = url.get_ref();
        let parsed = u.parse::<http::Uri>().ok().filter(|x| {
            matches!(x.scheme_str(), Some("http" | "https")) && x.authority().is_some()
        });
        if parsed.is_none() {
            self.problem_hint(
                url.span().start,
                "prometheus.url",
                format!("`{u}` is not an http:// or https:// URL"),
                "write e.g. `url = \"http://prometheus:9090\"`",
            );
        }
        let ca_file = raw.ca_file.as_ref().map(|f| base.join(f.get_ref()));
        if let (Some(f), Some(path)) = (&raw.ca_file, &ca_file) {
            if !u.starts_with("https://") {
                self.problem_hint(
                    f.span().start,
                    "prometheus.ca_file",
                    "`ca_file` applies only to an https:// url",
                    "remove it, or use https:// in `url`",
                );
            } else if let Err(e) = crate::tls::client_config(Some(path), &[]) {
                self.problem(f.span().start, "prometheus.ca_file", e.to_string());
            }
        }
        let timeout = self.duration(raw.timeout.as_ref(), "prometheus.timeout", DEFAULT_TIMEOUT);
        let pause_after = self.duration(
            raw.pause_after.as_ref(),
            "prometheus.pause_after",
            DEFAULT_PAUSE_AFTER,
        );
        Some(PrometheusConfig {
            url: u.clone(),
            bearer_token_file: raw.bearer_token_file.as_ref().map(|f| base.join(f)),
            timeout,
            ca_file,
            pause_after,
        })
    }
}
