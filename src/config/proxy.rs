//! `[proxy]` and `[retry_budget]`: how the data path drains and retries.
//!
//! Owns: [`RetryBudgetConfig`], the raw shapes and their positioned checks. Must not touch:
//! the proxy itself (it reads the checked values).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::check::Checker;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries allowed as a fraction of requests over the window.
    pub ratio: f64,
    pub window: Duration,
    /// Retries per second always allowed on top of the ratio.
    pub min_per_sec: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: 0.2,
            window: Duration::from_secs(10),
            min_per_sec: 5,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub(super) drain_timeout: Option<Spanned<String>>,
    pub(super) client_lane: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    pub(super) ratio: Option<Spanned<f64>>,
    pub(super) window: Option<Spanned<String>>,
    pub(super) min_per_sec: Option<u32>,
}

/// The checked `[proxy]` keys, with their defaults.
pub(super) struct ProxyKeys {
    pub(super) drain_timeout: Duration,
    pub(super) client_lane: bool,
}

impl Checker<'_> {
    pub(super) fn proxy(&mut self, proxy: Option<&RawProxy>) -> ProxyKeys {
        let drain_timeout = self.duration(
            proxy.and_then(|p| p.drain_timeout.as_ref()),
            "proxy.drain_timeout",
            Duration::from_secs(10),
        );
        ProxyKeys {
            drain_timeout,
            client_lane: proxy.and_then(|p| p.client_lane).unwrap_or(true),
        }
    }

    pub(super) fn retry_budget(&mut self, raw: Option<&RawBudget>) -> RetryBudgetConfig {
        let mut retry_budget = RetryBudgetConfig::default();
        if let Some(b) = raw {
            if let Some(r) = &b.ratio {
                if (0.0..=1.0).contains(r.get_ref()) {
                    retry_budget.ratio = *r.get_ref();
                } else {
                    self.problem(
                        r.span().start,
                        "retry_budget.ratio",
                        "must be between 0.0 and 1.0 (e.g. 0.2)",
                    );
                }
            }
            retry_budget.window = self.duration(
                b.window.as_ref(),
                "retry_budget.window",
                retry_budget.window,
            );
            if let Some(m) = b.min_per_sec {
                retry_budget.min_per_sec = m;
            }
        }
        retry_budget
    }
}
