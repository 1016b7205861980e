//! The significance test behind `ratio` gates with `confidence` on error rates.
//!
//! Owns: a one-sided two-proportion z-test of "NEW's error rate is above `ratio` × OLD's" and the
//! normal distribution it needs. Pure arithmetic, no I/O.
//!
//! Why a test rather than a plain ratio: at 1 % of traffic NEW sees a few hundred requests per
//! window, so one error more or less moves its rate by 0.5 %. A plain `new <= 1.0 x old` then
//! flaps on noise (2 of 100 vs 1 of 100 "doubles" the rate), while loosening the ratio would miss
//! a real regression once traffic grows. The test scales with the evidence: it fails only when the
//! excess is unlikely to be chance, so it stays quiet at small samples and gets sharp at large.
//!
//! The formula. NEW has `x1` errors in `n1` requests, OLD `x2` in `n2`; `r` is the allowed ratio.
//! H0: `p1 <= r·p2`, H1: `p1 > r·p2`.
//!
//! ```text
//! d   = x1/n1 − r·x2/n2 − (1/(2·n1) + r/(2·n2))        (Yates' continuity correction)
//! p̃2  = (x1 + x2) / (r·n1 + n2)                         (OLD's rate estimated under H0: p1 = r·p2)
//! p̃1  = r·p̃2
//! var = p̃1(1 − p̃1)/n1 + r²·p̃2(1 − p̃2)/n2
//! z   = d / √var,   p-value = 1 − Φ(z)
//! ```
//!
//! The gate fails when `p-value < 1 − confidence`. Estimating the variance under H0 (pooled, as in
//! the classic two-proportion test when `r = 1`) keeps it non-zero when OLD has no errors at all,
//! and the continuity correction keeps the normal approximation honest at the small counts a first
//! step sees (3 of 100 vs 0 of 100 gives p ≈ 0.12, close to Fisher's exact 0.12, not 0.04).

/// The outcome of [`ratio_excess`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZTest {
    pub z: f64,
    /// Probability of an excess at least this large if NEW were really within the ratio.
    pub p_value: f64,
}

impl ZTest {
    /// True when the excess is significant at `confidence` (e.g. 0.95).
    pub fn significant(&self, confidence: f64) -> bool {
        self.p_value < 1.0 - confidence
    }
}

/// Tests `x1/n1 > r · x2/n2`; `None` when either side has no requests.
pub fn ratio_excess(x1: u64, n1: u64, x2: u64, n2: u64, r: f64) -> Option<ZTest> {
    if n1 == 0 || n2 == 0 || !r.is_finite() || r < 0.0 {
        return None;
    }
    let (x1, n1, x2, n2) = (x1 as f64, n1 as f64, x2 as f64, n2 as f64);
    let d = x1 / n1 - r * x2 / n2 - (0.5 / n1 + 0.5 * r / n2);
    let denom = r * n1 + n2;
    let p2 = if denom > 0.0 {
        ((x1 + x2) / denom).min(1.0)
    } else {
        0.0
    };
    let p1 = (r * p2).min(1.0);
    let var = p1 * (1.0 - p1) / n1 + r * r * p2 * (1.0 - p2) / n2;
    let z = if var > 0.0 {
        d / var.sqrt()
    } else if d > 0.0 {
        f64::INFINITY
    } else if d < 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    Some(ZTest {
        z,
        p_value: upper_tail(z),
    })
}

/// `1 − Φ(z)` for the standard normal distribution.
pub fn upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function, fractional error below 1.2e-7 everywhere (Numerical Recipes'
/// Chebyshev fit), which is far finer than any confidence a plan can ask for.
fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_tail_matches_known_quantiles() {
        assert!((upper_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((upper_tail(1.644_853_6) - 0.05).abs() < 1e-6);
        assert!((upper_tail(-1.959_964) - 0.975).abs() < 1e-6);
        assert!((upper_tail(3.090_232) - 0.001).abs() < 1e-7);
        assert_eq!(upper_tail(f64::INFINITY), 0.0);
        assert_eq!(upper_tail(f64::NEG_INFINITY), 1.0);
    }

    #[test]
    fn small_samples_are_not_significant_large_ones_are() {
        let small = ratio_excess(2, 100, 1, 100, 1.0).unwrap();
        assert!(!small.significant(0.95), "{small:?}");
        let large = ratio_excess(30, 1000, 5, 1000, 1.0).unwrap();
        assert!(large.significant(0.95), "{large:?}");
        assert!(large.significant(0.999), "{large:?}");
        // Close to Fisher's exact one-sided p (0.123) for 3/100 vs 0/100.
        let few = ratio_excess(3, 100, 0, 100, 1.0).unwrap();
        assert!((few.p_value - 0.123).abs() < 0.01, "{few:?}");
    }

    #[test]
    fn the_ratio_moves_the_bar() {
        // 6 % vs 1 %: significantly above 2x old with a thousand requests each...
        assert!(ratio_excess(60, 1000, 10, 1000, 2.0)
            .unwrap()
            .significant(0.99));
        // ...but not above 5x old.
        assert!(!ratio_excess(60, 1000, 10, 1000, 5.0)
            .unwrap()
            .significant(0.9));
        // No errors anywhere: nothing to see.
        let none = ratio_excess(0, 500, 0, 500, 1.0).unwrap();
        assert!(!none.significant(0.5));
        assert_eq!(ratio_excess(1, 0, 0, 10, 1.0), None);
    }
}
