//! The positioned checks every section of `cutover.toml` is read with.
//!
//! Owns: [`Checker`] (the problems found so far, each with file, line, column and key), its
//! checks of addresses, durations and whole numbers, and the duration bounds. Must not touch:
//! any one section's keys — those live in the section's own file.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::ConfigProblem;
use crate::diag::line_col;

/// The longest value each duration key of the config takes (every one must also be above 0);
/// documented in docs/config.md. Keys are matched by their last part (`envs.new.connect_timeout`
/// → `connect_timeout`). The bounds keep every timer a task arms far from `Instant` overflow
/// and every per-second table (the retry budget's window) small.
pub const DURATION_BOUNDS: &[(&str, Duration)] = &[
    ("connect_timeout", Duration::from_secs(5 * 60)),
    ("request_timeout", Duration::from_secs(3600)),
    ("header_read_timeout", Duration::from_secs(3600)),
    ("body_read_timeout", Duration::from_secs(3600)),
    ("body_rate_grace", Duration::from_secs(3600)),
    ("idle_timeout", Duration::from_secs(24 * 3600)),
    ("drain_timeout", Duration::from_secs(3600)),
    ("window", Duration::from_secs(600)),
    ("interval", Duration::from_secs(3600)),
    ("timeout", Duration::from_secs(5 * 60)),
    ("lease_ttl", Duration::from_secs(60)),
    ("ticks_retention", Duration::from_secs(30 * 24 * 3600)),
];

/// The longest value `key` takes (see [`DURATION_BOUNDS`]); one hour for a key not listed.
pub fn duration_max(key: &str) -> Duration {
    let last = key.rsplit('.').next().unwrap_or(key);
    DURATION_BOUNDS
        .iter()
        .find(|(k, _)| *k == last)
        .map_or(Duration::from_secs(3600), |(_, d)| *d)
}

/// Collects problems while building a [`Config`] so all of them are reported at once.
pub(super) struct Checker<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) problems: Vec<ConfigProblem>,
    /// Dotted keys whose entries could not be read (already reported): never "missing" too.
    pub(super) blanked: Vec<String>,
}

impl Checker<'_> {
    pub(super) fn problem(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        self.problem_hint(offset, key, message, String::new());
    }

    /// A problem with a separate "how to fix it".
    pub(super) fn problem_hint(
        &mut self,
        offset: usize,
        key: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let (line, col) = line_col(self.text, offset);
        self.problems.push(ConfigProblem {
            file: self.file.to_owned(),
            line,
            col,
            key: key.to_owned(),
            message: message.into(),
            hint: hint.into(),
        });
    }

    /// A required key is absent: reported at `offset` unless it (or its table) was written
    /// but could not be read, which is reported already.
    pub(super) fn missing(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        let reported = self.blanked.iter().any(|b| {
            key == b
                || key
                    .strip_prefix(b.as_str())
                    .is_some_and(|r| r.starts_with('.'))
        });
        if !reported {
            self.problem(offset, key, message);
        }
    }

    pub(super) fn addr(&mut self, v: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        use std::net::ToSocketAddrs;
        match v.get_ref().to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => Some(a),
            _ => {
                self.problem(
                    v.span().start,
                    key,
                    format!(
                        "`{}` is not a host:port address (e.g. \"127.0.0.1:8080\")",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        v: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(v) = v else { return default };
        let max = duration_max(key);
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() && d <= max => d,
            Ok(d) if d.is_zero() => {
                self.problem(v.span().start, key, "must be longer than 0 (e.g. \"2s\")");
                default
            }
            Ok(_) => {
                self.problem(
                    v.span().start,
                    key,
                    format!(
                        "`{}` is longer than the most this key allows, {}",
                        v.get_ref(),
                        humantime::format_duration(max)
                    ),
                );
                default
            }
            Err(e) => {
                self.problem(
                    v.span().start,
                    key,
                    format!(
                        "`{}` is not a duration ({e}); write e.g. \"500ms\", \"30s\", \"5m\"",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// A whole number in `min..=max`, else a positioned problem and `default`.
    pub(super) fn count(
        &mut self,
        v: Option<&Spanned<i64>>,
        key: &str,
        min: i64,
        max: i64,
        default: u64,
    ) -> u64 {
        let Some(v) = v else { return default };
        if (min..=max).contains(v.get_ref()) {
            *v.get_ref() as u64
        } else {
            self.problem(
                v.span().start,
                key,
                format!(
                    "{} is out of range: give a whole number from {min} to {max}",
                    v.get_ref()
                ),
            );
            default
        }
    }
}
