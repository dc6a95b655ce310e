//! Summaries of repeated measurements.

use serde_json::{Value, json};

/// Median, p90, extremes and mean of a set of measurements.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Number of measurements.
    pub n: usize,
    /// Median (nearest rank).
    pub median: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarises `values` (all zero when empty; NaNs sort last).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Summary::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        Summary {
            n,
            median: nearest_rank(&sorted, 0.5),
            p90: nearest_rank(&sorted, 0.9),
            min: sorted[0],
            max: sorted[n - 1],
            mean: sorted.iter().sum::<f64>() / n as f64,
        }
    }

    /// As a JSON object, values rounded to whole units.
    pub fn to_json(self) -> Value {
        json!({
            "n": self.n,
            "median": self.median.round(),
            "p90": self.p90.round(),
            "min": self.min.round(),
            "max": self.max.round(),
            "mean": self.mean.round(),
        })
    }
}

/// The value at quantile `q` of non-empty `sorted`, nearest-rank method.
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let s = Summary::of(&values);
        assert_eq!(
            (s.n, s.median, s.p90, s.min, s.max, s.mean),
            (10, 5.0, 9.0, 1.0, 10.0, 5.5)
        );
        let one = Summary::of(&[7.0]);
        assert_eq!((one.median, one.p90), (7.0, 7.0));
        assert_eq!(Summary::of(&[]), Summary::default());
    }
}
