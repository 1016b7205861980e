//! Names of scopes and metrics, as written in plans (`<scope>.<metric>`) and shown everywhere.

use serde::{Deserialize, Serialize};

use crate::router::Env;

/// Where a number is measured. `Users` is what users finally got, after any fallback;
/// `Mirror` is NEW's answers to the copies of OLD's users' requests (shadow traffic), which no
/// user ever sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Old,
    New,
    Fallback,
    Users,
    Mirror,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Old,
        Scope::New,
        Scope::Fallback,
        Scope::Users,
        Scope::Mirror,
    ];
    pub const NAMES: [&'static str; 5] = ["old", "new", "fallback", "users", "mirror"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self.index()]
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl From<Env> for Scope {
    fn from(env: Env) -> Scope {
        match env {
            Env::Old => Scope::Old,
            Env::New => Scope::New,
            Env::Fallback => Scope::Fallback,
        }
    }
}

/// A metric that gates can judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Rps,
    ErrorRate,
    P50Ms,
    P99Ms,
    Active,
    Share,
    ProbeSuccess,
    /// Requests shed by admission control, per second.
    ShedRate,
    /// Requests this env could not answer (answered by FALLBACK or failed) over its requests.
    DisplacedRate,
    /// `mirror` only: copies dropped (the per-worker bound was full) over copies chosen.
    DroppedRate,
    /// `mirror` only: compared copies whose answer differed from OLD's, over compared copies.
    MismatchRate,
}

impl MetricKind {
    pub const ALL: [MetricKind; 11] = [
        MetricKind::Rps,
        MetricKind::ErrorRate,
        MetricKind::P50Ms,
        MetricKind::P99Ms,
        MetricKind::Active,
        MetricKind::Share,
        MetricKind::ProbeSuccess,
        MetricKind::ShedRate,
        MetricKind::DisplacedRate,
        MetricKind::DroppedRate,
        MetricKind::MismatchRate,
    ];
    pub const NAMES: [&'static str; 11] = [
        "rps",
        "error_rate",
        "p50_ms",
        "p99_ms",
        "active",
        "share",
        "probe_success",
        "shed_rate",
        "displaced_rate",
        "dropped_rate",
        "mismatch_rate",
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(s: &str) -> Option<MetricKind> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Metrics whose value is a fraction of requests (0..=1).
    pub fn is_rate(self) -> bool {
        matches!(
            self,
            MetricKind::ErrorRate
                | MetricKind::Share
                | MetricKind::ProbeSuccess
                | MetricKind::DisplacedRate
                | MetricKind::DroppedRate
                | MetricKind::MismatchRate
        )
    }

    /// Metrics only the `mirror` scope has.
    pub fn mirror_only(self) -> bool {
        matches!(self, MetricKind::DroppedRate | MetricKind::MismatchRate)
    }
}

/// `<scope>.<metric>`, e.g. `new.error_rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MetricRef {
    pub scope: Scope,
    pub metric: MetricKind,
}

impl MetricRef {
    pub fn parse(s: &str) -> Option<MetricRef> {
        let (scope, metric) = s.split_once('.')?;
        Some(MetricRef {
            scope: Scope::parse(scope)?,
            metric: MetricKind::parse(metric)?,
        })
    }
}

impl std::fmt::Display for MetricRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.scope.as_str(), self.metric.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Scope::ALL {
            for m in MetricKind::ALL {
                let r = MetricRef {
                    scope: s,
                    metric: m,
                };
                assert_eq!(MetricRef::parse(&r.to_string()), Some(r));
            }
        }
        assert_eq!(MetricRef::parse("new.errors"), None);
        assert_eq!(MetricRef::parse("neww.error_rate"), None);
    }
}
