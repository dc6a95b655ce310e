//! The VPA recommender's decaying exponential histogram: bucket `i` starts
//! at `first × (ratioⁱ − 1) / (ratio − 1)`, so bucket widths grow by
//! `ratio` (5 %) and every value is known to within one bucket; each sample
//! carries a weight, and older samples count less
//! (`2^((t − now) / half_life)`).
//!
//! (Bucket widths are `first × ratioⁱ`: 5 % of the value plus part of the
//! first bucket, so small values are known less precisely: 9 % at 0.25
//! cores.)
//!
//! Histograms of several containers add up bucket by bucket, which is how a
//! workload's replicas are pooled. The SQL that fills them from the store
//! computes the same bucket index ([`HistogramOptions::bucket_sql`]).

/// Bucket layout of a histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramOptions {
    /// Width of the first bucket, in the histogram's unit.
    pub first_bucket: f64,
    /// Each bucket is this much wider than the one before.
    pub ratio: f64,
    /// Number of buckets; values past the last go into it.
    pub buckets: usize,
}

/// CPU in cores, as the VPA: 0.01-core first bucket, 5 % growth, up to
/// 1,000 cores.
pub const CPU_CORES: HistogramOptions = HistogramOptions::covering(0.01, 1.05, 1000.0);

/// Memory in bytes, as the VPA: 10 MB first bucket, 5 % growth, up to 1 TB.
pub const MEMORY_BYTES: HistogramOptions = HistogramOptions::covering(1e7, 1.05, 1e12);

impl HistogramOptions {
    /// Options whose buckets reach `max` (rounded up to whole buckets).
    pub const fn covering(first_bucket: f64, ratio: f64, max: f64) -> HistogramOptions {
        // const fn: no float log; count the buckets instead.
        let mut buckets = 1usize;
        let mut width = first_bucket;
        let mut end = first_bucket;
        while end < max {
            width *= ratio;
            end += width;
            buckets += 1;
        }
        HistogramOptions {
            first_bucket,
            ratio,
            buckets,
        }
    }

    /// Index of the bucket holding `value` (negative values and NaN go into
    /// bucket 0, values past the end into the last).
    pub fn bucket(&self, value: f64) -> usize {
        if value.is_nan() || value <= 0.0 {
            return 0;
        }
        let i =
            ((value * (self.ratio - 1.0) / self.first_bucket + 1.0).ln() / self.ratio.ln()).floor();
        if i >= (self.buckets - 1) as f64 {
            self.buckets - 1
        } else {
            i as usize
        }
    }

    /// Where bucket `i` starts.
    pub fn bucket_start(&self, i: usize) -> f64 {
        let exponent = i32::try_from(i).unwrap_or(i32::MAX);
        self.first_bucket * (self.ratio.powi(exponent) - 1.0) / (self.ratio - 1.0)
    }

    /// The bucket index of the SQL expression `value` in DuckDB, equal to
    /// [`HistogramOptions::bucket`] for non-negative values.
    pub fn bucket_sql(&self, value: &str) -> String {
        format!(
            "least(CAST(floor(ln(greatest({value}, 0) * {k} + 1) / {ln_ratio}) AS INTEGER), {last})",
            k = (self.ratio - 1.0) / self.first_bucket,
            ln_ratio = self.ratio.ln(),
            last = self.buckets - 1,
        )
    }
}

/// Weighted samples in buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    options: HistogramOptions,
    weights: Vec<f64>,
    total: f64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new(options: HistogramOptions) -> Histogram {
        Histogram {
            options,
            weights: vec![0.0; options.buckets],
            total: 0.0,
        }
    }

    /// Adds `weight` to bucket `bucket` (clamped to the last bucket);
    /// non-positive and non-finite weights are ignored.
    pub fn add_to_bucket(&mut self, bucket: usize, weight: f64) {
        if !weight.is_finite() || weight <= 0.0 {
            return;
        }
        let i = bucket.min(self.options.buckets - 1);
        self.weights[i] += weight;
        self.total += weight;
    }

    /// Adds a sample of `value` with `weight`.
    pub fn add(&mut self, value: f64, weight: f64) {
        self.add_to_bucket(self.options.bucket(value), weight);
    }

    /// Adds every bucket of `other` (same options) to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (i, w) in other.weights.iter().enumerate() {
            self.add_to_bucket(i, *w);
        }
    }

    /// True when no sample has weight.
    pub fn is_empty(&self) -> bool {
        self.total <= 0.0
    }

    /// The `p` percentile (0..=1) as the VPA reports it: the *end* of the
    /// first bucket where the cumulative weight reaches `p` of the total,
    /// so the answer is never below the true percentile `v` and at most one
    /// bucket above it: `v × ratio + first_bucket` (5 % plus 0.01 core or
    /// 10 MB). `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.is_empty() {
            return None;
        }
        let threshold = p.clamp(0.0, 1.0) * self.total;
        let mut sum = 0.0;
        let last = self.options.buckets - 1;
        let mut chosen = last;
        for (i, w) in self.weights.iter().enumerate() {
            sum += w;
            if *w > 0.0 && sum >= threshold {
                chosen = i;
                break;
            }
        }
        if chosen < last {
            Some(self.options.bucket_start(chosen + 1))
        } else {
            Some(self.options.bucket_start(chosen))
        }
    }
}

/// Weight of a sample `age_s` seconds old with half-life `half_life_s`
/// (1 now, ½ one half-life ago).
pub fn decay(age_s: f64, half_life_s: f64) -> f64 {
    if half_life_s <= 0.0 {
        return 1.0;
    }
    (-age_s.max(0.0) / half_life_s).exp2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_by_the_ratio_and_cover_the_range() {
        let o = CPU_CORES;
        assert_eq!(o.bucket_start(0), 0.0);
        assert!((o.bucket_start(1) - 0.01).abs() < 1e-12);
        assert!((o.bucket_start(2) - 0.0205).abs() < 1e-12);
        assert!(o.bucket_start(o.buckets - 1) < 1000.0);
        assert!(o.bucket_start(o.buckets) >= 1000.0);
        for v in [0.0, 0.004, 0.01, 0.25, 0.5, 1.0, 3.9, 64.0, 999.0] {
            let b = o.bucket(v);
            assert!(o.bucket_start(b) <= v + 1e-12, "{v} in bucket {b}");
            assert!(v < o.bucket_start(b + 1), "{v} in bucket {b}");
        }
        assert_eq!(o.bucket(5000.0), o.buckets - 1);
        assert_eq!(o.bucket(f64::NAN), 0);
        assert_eq!(o.bucket(-1.0), 0);
    }

    #[test]
    fn a_percentile_is_never_below_the_truth_and_within_one_bucket_above() {
        let mut h = Histogram::new(CPU_CORES);
        // 90 samples at 0.2 cores, 10 at 2 cores: p90 is 0.2, p95 is 2.
        for _ in 0..90 {
            h.add(0.2, 1.0);
        }
        for _ in 0..10 {
            h.add(2.0, 1.0);
        }
        let p90 = h.percentile(0.9).unwrap_or_default();
        assert!((0.2..=0.2 * 1.05 + 0.01).contains(&p90), "p90 {p90}");
        let p95 = h.percentile(0.95).unwrap_or_default();
        assert!((2.0..=2.0 * 1.05 + 0.01).contains(&p95), "p95 {p95}");
        assert!(Histogram::new(CPU_CORES).percentile(0.9).is_none());
    }

    #[test]
    fn decayed_weights_favour_recent_samples() {
        let day = 86_400.0;
        let mut h = Histogram::new(MEMORY_BYTES);
        // Ten old days at 1 GB, today at 100 MB: today's weight (1) beats
        // the ten old ones (sum of 2^-k, k = 4..13, about 0.125).
        for k in 4..14 {
            h.add(1e9, decay(f64::from(k) * day, day));
        }
        h.add(1e8, decay(0.0, day));
        let p50 = h.percentile(0.5).unwrap_or_default();
        assert!((1e8..=1e8 * 1.05 + 1e7).contains(&p50), "p50 {p50}");
        assert_eq!(decay(day, day), 0.5);
    }

    #[test]
    fn the_sql_bucket_matches_the_rust_bucket() {
        let sql = CPU_CORES.bucket_sql("x");
        assert!(sql.contains("ln(greatest(x, 0) * "), "{sql}");
        assert!(
            sql.ends_with(&format!("{})", CPU_CORES.buckets - 1)),
            "{sql}"
        );
    }
}
