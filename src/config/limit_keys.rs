//! `[limits]`: the keys of what clients may send and hold, read into [`Limits`].
//!
//! Owns: the raw shape and the positioned checks of each key (range, duration). Must not
//! touch: the [`Limits`] type and its defaults, which belong to where `Limits` is defined.

use serde::Deserialize;
use toml::Spanned;

use super::check::Checker;
use super::Limits;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) header_read_timeout: Option<Spanned<String>>,
    pub(super) body_read_timeout: Option<Spanned<String>>,
    pub(super) min_body_rate: Option<Spanned<i64>>,
    pub(super) body_rate_grace: Option<Spanned<String>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
    pub(super) max_header_bytes: Option<Spanned<i64>>,
    pub(super) max_uri_bytes: Option<Spanned<i64>>,
    pub(super) max_headers: Option<Spanned<i64>>,
    h2_max_concurrent_streams: Option<Spanned<i64>>,
    h2_max_header_list_size: Option<Spanned<i64>>,
    h2_max_pending_reset_streams: Option<Spanned<i64>>,
    h2_max_local_error_reset_streams: Option<Spanned<i64>>,
}

impl Checker<'_> {
    pub(super) fn limits(&mut self, raw: Option<&RawLimits>) -> Limits {
        let d = Limits::default();
        let Some(raw) = raw else { return d };
        let u32_max = i64::from(u32::MAX);
        Limits {
            max_connections: self.count(
                raw.max_connections.as_ref(),
                "limits.max_connections",
                1,
                10_000_000,
                d.max_connections as u64,
            ) as usize,
            header_read_timeout: self.duration(
                raw.header_read_timeout.as_ref(),
                "limits.header_read_timeout",
                d.header_read_timeout,
            ),
            body_read_timeout: self.duration(
                raw.body_read_timeout.as_ref(),
                "limits.body_read_timeout",
                d.body_read_timeout,
            ),
            min_body_rate: self.count(
                raw.min_body_rate.as_ref(),
                "limits.min_body_rate",
                0,
                1 << 30,
                d.min_body_rate,
            ),
            body_rate_grace: self.duration(
                raw.body_rate_grace.as_ref(),
                "limits.body_rate_grace",
                d.body_rate_grace,
            ),
            idle_timeout: self.duration(
                raw.idle_timeout.as_ref(),
                "limits.idle_timeout",
                d.idle_timeout,
            ),
            max_header_bytes: self.count(
                raw.max_header_bytes.as_ref(),
                "limits.max_header_bytes",
                super::MIN_HEADER_BYTES as i64,
                16 * 1024 * 1024,
                d.max_header_bytes as u64,
            ) as usize,
            max_uri_bytes: self.count(
                raw.max_uri_bytes.as_ref(),
                "limits.max_uri_bytes",
                16,
                64 * 1024,
                d.max_uri_bytes as u64,
            ) as usize,
            max_headers: self.count(
                raw.max_headers.as_ref(),
                "limits.max_headers",
                1,
                10_000,
                d.max_headers as u64,
            ) as usize,
            h2_max_concurrent_streams: self.count(
                raw.h2_max_concurrent_streams.as_ref(),
                "limits.h2_max_concurrent_streams",
                1,
                u32_max,
                u64::from(d.h2_max_concurrent_streams),
            ) as u32,
            h2_max_header_list_size: self.count(
                raw.h2_max_header_list_size.as_ref(),
                "limits.h2_max_header_list_size",
                1024,
                16 * 1024 * 1024,
                u64::from(d.h2_max_header_list_size),
            ) as u32,
            h2_max_pending_reset_streams: self.count(
                raw.h2_max_pending_reset_streams.as_ref(),
                "limits.h2_max_pending_reset_streams",
                1,
                100_000,
                d.h2_max_pending_reset_streams as u64,
            ) as usize,
            h2_max_local_error_reset_streams: self.count(
                raw.h2_max_local_error_reset_streams.as_ref(),
                "limits.h2_max_local_error_reset_streams",
                1,
                100_000,
                d.h2_max_local_error_reset_streams as u64,
            ) as usize,
        }
    }
}
