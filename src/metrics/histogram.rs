//! A fixed log-scale latency histogram that can be recorded into with one atomic add.
//!
//! Owns: the bucket layout (0.1 ms to ~60 s, each bucket 2 % wider than the one before, so a
//! bucket's geometric midpoint is within 1 % of any value in it) and percentile extraction from
//! merged counts. Must not touch: time or scopes — the ring decides which histogram a sample
//! goes to.
//!
//! Why hand-rolled: `hdrhistogram` records through `&mut self` (its `SyncHistogram` funnels
//! recorders through channels and a refresh step), and the request path must only do atomic
//! updates of preallocated memory. A fixed log layout makes that trivial: the bucket index is one
//! `ln`, and merging windows is adding arrays. The atomic cells themselves live in the ring.

/// Lowest resolved latency in milliseconds; anything faster lands in bucket 0.
pub const MIN_MS: f64 = 0.1;
/// Growth factor between consecutive bucket bounds.
pub const GAMMA: f64 = 1.02;
/// Number of buckets: `MIN_MS * GAMMA^BUCKETS` ≈ 60.2 s; anything slower lands in the last.
pub const BUCKETS: usize = 672;

/// The bucket a latency (in milliseconds) falls into.
pub fn index(ms: f64) -> usize {
    if ms.is_nan() || ms < MIN_MS {
        return 0;
    }
    let i = ((ms / MIN_MS).ln() / GAMMA.ln()).floor();
    if i >= (BUCKETS - 1) as f64 {
        BUCKETS - 1
    } else {
        i as usize
    }
}

/// The value reported for bucket `i`: the geometric midpoint of its bounds.
pub fn representative(i: usize) -> f64 {
    MIN_MS * GAMMA.powf(i as f64 + 0.5)
}

/// The `q` quantile (0..=1) of merged counts in milliseconds; 0 when there are none.
///
/// Nearest-rank: the bucket holding the `ceil(q * n)`-th smallest sample.
pub fn quantile(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0u64;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return representative(i);
        }
    }
    representative(counts.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_in_range_is_within_one_percent_of_its_bucket() {
        let mut ms = MIN_MS;
        while ms < 60_000.0 {
            let rep = representative(index(ms));
            let err = (rep - ms).abs() / ms;
            assert!(err <= 0.0100, "{ms} ms -> {rep} ms ({err})");
            ms *= 1.003;
        }
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        assert_eq!(index(0.0), 0);
        assert_eq!(index(0.01), 0);
        assert_eq!(index(120_000.0), BUCKETS - 1);
        assert!(representative(BUCKETS - 1) > 59_000.0);
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut c = vec![0; BUCKETS];
        for ms in 1..=1000 {
            c[index(ms as f64)] += 1;
        }
        let p50 = quantile(&c, 0.5);
        let p99 = quantile(&c, 0.99);
        assert!((p50 - 500.0).abs() / 500.0 < 0.011, "p50 {p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.011, "p99 {p99}");
        assert_eq!(quantile(&vec![0; BUCKETS], 0.5), 0.0);
    }
}
