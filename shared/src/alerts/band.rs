//! The expected band of an anomaly condition: robust statistics over the same hour-of-week in the last
//! weeks.
//!
//! From the history values h₁..hₙ (the same window one, two, … n weeks earlier): the median m and the
//! median absolute deviation MAD = median |hᵢ − m|. The noise σ is the largest of 1.4826 × MAD (the MAD
//! scaled to a normal distribution's σ), √|m| (the Poisson noise of a count: a median of 4 orders
//! cannot promise 4 every week even when the last weeks happened to agree) and 5 % of |m|. The band is
//! m ± k·σ. Robust: one past outage or promotion among the weeks moves neither m nor the MAD much, where
//! a mean and standard deviation would follow it.

use serde::Serialize;

/// The scale that turns a MAD into a normal distribution's standard deviation.
const MAD_TO_SIGMA: f64 = 1.4826;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Band {
    pub median: f64,
    pub lower: f64,
    pub upper: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The band of `history` at `k` noise units; `None` without history.
pub fn band(history: &[f64], k: f64) -> Option<Band> {
    if history.is_empty() {
        return None;
    }
    let mut values = history.to_vec();
    let m = median(&mut values);
    let mut deviations: Vec<f64> = history.iter().map(|h| (h - m).abs()).collect();
    let mad = median(&mut deviations);
    let sigma = (MAD_TO_SIGMA * mad).max(m.abs().sqrt()).max(0.05 * m.abs());
    Some(Band {
        median: m,
        lower: m - k * sigma,
        upper: m + k * sigma,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_is_the_median_plus_or_minus_k_robust_sigmas() {
        for (history, k, want) in [
            // MAD 1 → 1.48 < √20: a count's Poisson noise wins.
            (
                vec![18.0, 20.0, 22.0, 20.0],
                3.0,
                (20.0, 20.0 - 3.0 * 20f64.sqrt()),
            ),
            // One outage week among four barely moves it.
            (
                vec![100.0, 0.0, 104.0, 96.0],
                3.0,
                (98.0, 98.0 - 3.0 * 98f64.sqrt()),
            ),
            // A wide spread: MAD 30, σ = 44.478.
            (
                vec![100.0, 200.0, 40.0, 130.0, 70.0],
                2.0,
                (100.0, 100.0 - 2.0 * 1.4826 * 30.0),
            ),
        ] {
            let b = band(&history, k).expect("band");
            assert!((b.median - want.0).abs() < 1e-9, "{history:?}: {b:?}");
            assert!((b.lower - want.1).abs() < 1e-9, "{history:?}: {b:?}");
            assert!((b.upper - (2.0 * b.median - b.lower)).abs() < 1e-9);
        }
        assert_eq!(band(&[], 3.0), None);
    }
}
