//! How even a distribution is: observed counts against expected shares, as the weight-normalised
//! peak ratio R (the hottest server's share over its expected share: 1.0 is proportional, and
//! the quantity load balancers themselves bound with a balance factor), Jain's fairness index
//! and a χ² goodness-of-fit p-value. One implementation for the simulator's report and the
//! guard's live detectors, so a prediction and an alert measure the same thing.

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// The figures for one set of counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evenness {
    /// max_i (c_i / Σc) / e_i; 0 when there is nothing to judge.
    pub peak_ratio: f64,
    /// Which entry has the peak.
    pub peak_index: usize,
    /// (Σx)² / (n · Σx²) over x_i = (c_i / Σc) / e_i, in [1/n, 1].
    pub jain: f64,
    /// χ² goodness-of-fit p-value of the counts against Σc · e_i (1 for a single server).
    pub chi2_p: f64,
    /// The smallest expected count Σc · e_i: the χ² test is valid only when it is at least 5.
    pub min_expected: f64,
}

/// Judges `observed` pairs of (count, expected share); the shares should sum to 1 and each be
/// above 0 (a server with no expected share is not a candidate and belongs elsewhere).
pub fn evenness(observed: &[(u64, f64)]) -> Evenness {
    let total: u64 = observed.iter().map(|o| o.0).sum();
    if observed.is_empty() || total == 0 {
        return Evenness {
            peak_ratio: 0.0,
            peak_index: 0,
            jain: 0.0,
            chi2_p: 1.0,
            min_expected: 0.0,
        };
    }
    // One pass, nothing allocated: a fleet round judges every pool of every balancer.
    let total_f = total as f64;
    let (mut peak_index, mut peak_ratio) = (0, 0.0);
    let (mut sum, mut sum_sq, mut chi2) = (0.0, 0.0, 0.0);
    let mut min_expected = f64::INFINITY;
    for (i, &(c, e)) in observed.iter().enumerate() {
        let x = (c as f64 / total_f) / e;
        if x > peak_ratio {
            (peak_index, peak_ratio) = (i, x);
        }
        sum += x;
        sum_sq += x * x;
        let exp = e * total_f;
        chi2 += (c as f64 - exp).powi(2) / exp;
        min_expected = min_expected.min(exp);
    }
    let jain = if sum_sq == 0.0 {
        0.0
    } else {
        sum * sum / (observed.len() as f64 * sum_sq)
    };
    let df = (observed.len() - 1) as f64;
    let chi2_p = if df == 0.0 {
        1.0
    } else {
        ChiSquared::new(df).map_or(f64::NAN, |d| 1.0 - d.cdf(chi2))
    };
    Evenness {
        peak_ratio,
        peak_index,
        jain,
        chi2_p,
        min_expected,
    }
}

#[cfg(test)]
mod tests {
    use super::evenness;

    #[test]
    fn even_counts_are_fair_and_skew_is_not() {
        let e = evenness(&[(1000, 0.5), (1000, 0.5)]);
        assert!((e.peak_ratio - 1.0).abs() < 1e-9 && (e.jain - 1.0).abs() < 1e-9);
        assert!(e.chi2_p > 0.99);
        let e = evenness(&[(200, 0.5), (1800, 0.5)]);
        assert!((e.peak_ratio - 1.8).abs() < 1e-9);
        assert_eq!(e.peak_index, 1);
        assert!(e.jain < 0.7);
        assert!(e.chi2_p < 1e-6);
        // Weighted: 3:1 counts against 3:1 weights is fair.
        let e = evenness(&[(3000, 0.75), (1000, 0.25)]);
        assert!((e.peak_ratio - 1.0).abs() < 1e-9 && e.chi2_p > 0.99);
        assert!((e.min_expected - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn nothing_observed_judges_nothing() {
        let e = evenness(&[(0, 0.5), (0, 0.5)]);
        assert_eq!(e.peak_ratio, 0.0);
        assert_eq!(e.chi2_p, 1.0);
        assert_eq!(evenness(&[]).peak_ratio, 0.0);
    }
}
