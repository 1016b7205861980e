//! The client-side history behind the console's sparklines: error rate and p99 per scope,
//! recorded from successive statuses and binned for drawing.
//!
//! Owns: retention (the last few minutes) and binning. Must not touch: clocks — sample times
//! and "now" are arguments. The server keeps no such history; the console builds it while it
//! runs, so a fresh console starts with short lines that grow.

use std::collections::VecDeque;

use crate::api::{EnvStats, Status};

/// How far back the sparklines reach.
pub const HISTORY_SPAN_MS: u64 = 180_000;
/// Upper bound on kept history samples (polling twice a second fills the span with ~360).
const HISTORY_MAX_SAMPLES: usize = 2_000;

/// The rows of the env table (old, new, fallback, users, and the mirror while shadow traffic
/// is copied) in the order it shows them; the console's own name for what the metrics call a
/// scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvRow {
    Old,
    New,
    Fallback,
    Users,
    /// NEW's answers to shadow traffic.
    Mirror,
}

impl EnvRow {
    pub const ALL: [EnvRow; 5] = [
        EnvRow::Old,
        EnvRow::New,
        EnvRow::Fallback,
        EnvRow::Users,
        EnvRow::Mirror,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EnvRow::Old => "old",
            EnvRow::New => "new",
            EnvRow::Fallback => "fallback",
            EnvRow::Users => "users",
            EnvRow::Mirror => "mirror",
        }
    }

    pub fn stats(self, status: &Status) -> &EnvStats {
        let envs = &status.envs;
        match self {
            EnvRow::Old => &envs.old,
            EnvRow::New => &envs.new,
            EnvRow::Fallback => &envs.fallback,
            EnvRow::Users => &envs.users,
            EnvRow::Mirror => &status.mirror.stats,
        }
    }

    /// The rows `status` calls for: the mirror's only while users are, or were, copied.
    pub fn shown(status: &Status) -> impl Iterator<Item = EnvRow> + '_ {
        let mirror = status.mirror.in_play();
        EnvRow::ALL
            .into_iter()
            .filter(move |r| *r != EnvRow::Mirror || mirror)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One status poll's worth of the numbers the sparklines draw.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at_ms: u64,
    error_rate: [f64; EnvRow::ALL.len()],
    p99_ms: [f64; EnvRow::ALL.len()],
}

/// Error rate and p99 per scope over the last [`HISTORY_SPAN_MS`], kept from successive statuses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    samples: VecDeque<Sample>,
}

/// Which series of a scope's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    ErrorRate,
    P99,
}

impl History {
    pub fn record(&mut self, at_ms: u64, status: &Status) {
        let mut s = Sample {
            at_ms,
            error_rate: [0.0; EnvRow::ALL.len()],
            p99_ms: [0.0; EnvRow::ALL.len()],
        };
        for scope in EnvRow::ALL {
            let st = scope.stats(status);
            s.error_rate[scope.index()] = st.error_rate;
            s.p99_ms[scope.index()] = st.p99_ms;
        }
        self.samples.push_back(s);
        let oldest = at_ms.saturating_sub(HISTORY_SPAN_MS);
        while self
            .samples
            .front()
            .is_some_and(|f| f.at_ms < oldest || self.samples.len() > HISTORY_MAX_SAMPLES)
        {
            self.samples.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The series split into `width` equal time bins ending at `now_ms`, the worst (largest)
    /// value per bin; `None` before the first and after the last sample. The bins cover the last
    /// [`HISTORY_SPAN_MS`], or less while the console has not been running that long, so the
    /// line fills the cell from the first minute.
    pub fn binned(
        &self,
        scope: EnvRow,
        series: Series,
        now_ms: u64,
        width: usize,
    ) -> Vec<Option<f64>> {
        let mut out = vec![None; width];
        if width == 0 {
            return out;
        }
        let oldest = self.samples.front().map_or(now_ms, |s| s.at_ms);
        let start = now_ms
            .saturating_sub(HISTORY_SPAN_MS)
            .max(oldest)
            .min(now_ms);
        // Bins of whole milliseconds that together just cover [start, now_ms].
        let bin = (now_ms - start) / width as u64 + 1;
        for s in self
            .samples
            .iter()
            .filter(|s| s.at_ms >= start && s.at_ms <= now_ms)
        {
            let i = (((s.at_ms - start) / bin) as usize).min(width - 1);
            let v = match series {
                Series::ErrorRate => s.error_rate[scope.index()],
                Series::P99 => s.p99_ms[scope.index()],
            };
            out[i] = Some(out[i].map_or(v, |o: f64| o.max(v)));
        }
        // A bin narrower than the poll period can fall between two samples: it holds the value
        // before it, so the line has no holes. Before the first sample and after the last (a
        // lost link) stay blank.
        let filled = out.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
        let mut last = None;
        for b in &mut out[..filled] {
            match b {
                Some(v) => last = Some(*v),
                None => *b = last,
            }
        }
        out
    }
}
