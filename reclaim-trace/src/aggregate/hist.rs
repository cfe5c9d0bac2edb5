//! Histograms with the kernel's bucket rule: exact buckets 0..=64, then log2 buckets.

use reclaim_trace_common::{
    HIST_BUCKETS, HIST_EXACT_MAX, HistBuckets, bucket_of, bucket_upper_bound,
};
use serde::{Deserialize, Serialize};

/// Counts per bucket (see `reclaim_trace_common::bucket_of`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: HistBuckets,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: [0; HIST_BUCKETS],
        }
    }
}

/// One bucket in JSON: `le` is the inclusive upper bound, `"+Inf"` for the open-ended last one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub le: Le,
    pub count: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Le {
    Value(u64),
    Inf(InfTag),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InfTag {
    #[serde(rename = "+Inf")]
    Inf,
}

impl Le {
    pub fn of_bucket(idx: usize) -> Le {
        match bucket_upper_bound(idx) {
            u64::MAX => Le::Inf(InfTag::Inf),
            v => Le::Value(v),
        }
    }

    pub fn value(self) -> u64 {
        match self {
            Le::Value(v) => v,
            Le::Inf(_) => u64::MAX,
        }
    }
}

impl Histogram {
    pub fn from_buckets(buckets: HistBuckets) -> Self {
        Histogram { buckets }
    }

    /// `n` more values of `value` (saturating: bucket lists read from files can hold any
    /// counts).
    pub fn record(&mut self, value: u64, n: u64) {
        let c = &mut self.buckets[bucket_of(value)];
        *c = c.saturating_add(n);
    }

    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// `self - earlier`, bucket by bucket.
    pub fn delta(&self, earlier: &Histogram) -> Histogram {
        let mut out = self.clone();
        for (a, b) in out.buckets.iter_mut().zip(earlier.buckets.iter()) {
            *a = a.wrapping_sub(*b);
        }
        out
    }

    /// All counts (saturating, like `record`).
    pub fn total(&self) -> u64 {
        self.buckets.iter().fold(0, |t, &c| t.saturating_add(c))
    }
}

/// A bucket's representative value for statistics: its upper bound, or for the open-ended
/// last bucket its lower bound (a finite number JSON consumers can use).
fn stat_value(idx: usize) -> u64 {
    match bucket_upper_bound(idx) {
        u64::MAX => bucket_upper_bound(idx - 1) + 1,
        v => v,
    }
}

impl Histogram {
    /// The smallest bucket bound below which a fraction `q` of the observations fall
    /// (exact for values up to 64; "at least" for the open-ended last bucket). `None` when
    /// empty.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen = c.saturating_add(seen);
            if seen >= rank {
                return Some(stat_value(i));
            }
        }
        None
    }

    /// The upper bound of the highest non-empty bucket.
    pub fn max(&self) -> Option<u64> {
        self.buckets.iter().rposition(|&c| c != 0).map(stat_value)
    }

    /// Mean computed from bucket bounds (exact when every value is at most 64).
    pub fn mean(&self) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let sum: f64 = self
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != 0)
            .map(|(i, &c)| stat_value(i) as f64 * c as f64)
            .sum();
        Some(sum / total as f64)
    }

    /// Non-empty buckets, in order.
    pub fn to_buckets(&self) -> Vec<Bucket> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != 0)
            .map(|(i, &count)| Bucket {
                le: Le::of_bucket(i),
                count,
            })
            .collect()
    }

    /// Rebuild from JSON buckets (recordings, comparisons).
    pub fn from_bucket_list(list: &[Bucket]) -> Histogram {
        let mut h = Histogram::default();
        for b in list {
            let idx = match b.le {
                Le::Inf(_) => HIST_BUCKETS - 1,
                Le::Value(v) => bucket_of(v),
            };
            h.buckets[idx] = h.buckets[idx].saturating_add(b.count);
        }
        h
    }
}

/// The statistics every histogram in the JSON carries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistStats {
    pub mean: Option<f64>,
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
    pub count: u64,
    pub histogram: Vec<Bucket>,
}

impl HistStats {
    /// Statistics of `h`; `exact_mean` replaces the bucket-derived mean when the exact sum is
    /// known (e.g. Σ targets ÷ flushes from the totals).
    pub fn of(h: &Histogram, exact_mean: Option<f64>) -> HistStats {
        HistStats {
            mean: exact_mean.or_else(|| h.mean()),
            p50: h.percentile(0.50),
            p99: h.percentile(0.99),
            max: h.max(),
            count: h.total(),
            histogram: h.to_buckets(),
        }
    }
}

/// Times kept as [`reclaim_trace_common::log2_ns`] (value k: below 2^k ns, at least
/// 2^(k-1)) are shown in ns: bucket k as `le` 2^k - 1, statistics from those bounds, the mean
/// from each bucket's middle (3/4 of 2^k).
pub fn log2_ns_stats(h: &Histogram) -> HistStats {
    let le = |k: u64| if k >= 64 { u64::MAX } else { (1u64 << k) - 1 };
    let mut ns = h.clone();
    // Only the exact buckets (0..=64) can be set: log2_ns never exceeds 64.
    ns.buckets[HIST_EXACT_MAX as usize + 1..].fill(0);
    let pick = |v: Option<u64>| v.map(le);
    let total = ns.total();
    let mean = (total > 0).then(|| {
        ns.buckets
            .iter()
            .enumerate()
            .map(|(k, &c)| {
                if k == 0 {
                    0.0
                } else {
                    0.75 * (1u128 << k) as f64 * c as f64
                }
            })
            .sum::<f64>()
            / total as f64
    });
    HistStats {
        mean,
        p50: pick(ns.percentile(0.50)),
        p99: pick(ns.percentile(0.99)),
        max: pick(ns.max()),
        count: total,
        histogram: ns
            .to_buckets()
            .into_iter()
            .map(|b| Bucket {
                le: Le::Value(le(b.le.value())),
                count: b.count,
            })
            .collect(),
    }
}

/// The inverse of [`log2_ns_stats`]'s buckets (recordings, merges).
pub fn log2_ns_from_buckets(list: &[Bucket]) -> Histogram {
    let mut h = Histogram::default();
    for b in list {
        h.record(reclaim_trace_common::log2_ns(b.le.value()), b.count);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_ns_times_show_as_power_of_two_bounds_and_round_trip() {
        let mut h = Histogram::default();
        for ns in [0u64, 900, 1000, 1023, 5000] {
            h.record(reclaim_trace_common::log2_ns(ns), 1);
        }
        let s = log2_ns_stats(&h);
        let les: Vec<u64> = s.histogram.iter().map(|b| b.le.value()).collect();
        assert_eq!(les, vec![0, 1023, 8191]);
        assert_eq!(s.histogram[1].count, 3);
        assert_eq!((s.p50, s.max, s.count), (Some(1023), Some(8191), 5));
        assert_eq!(log2_ns_from_buckets(&s.histogram), h);
    }

    #[test]
    fn empty_histogram_has_no_statistics() {
        let h = Histogram::default();
        assert_eq!(h.percentile(0.5), None);
        assert_eq!(h.max(), None);
        assert_eq!(h.mean(), None);
        assert!(h.to_buckets().is_empty());
        let s = HistStats::of(&h, None);
        assert_eq!(s.count, 0);
        assert_eq!(s.p99, None);
    }

    #[test]
    fn exact_buckets_give_exact_percentiles() {
        let mut h = Histogram::default();
        h.record(1, 98);
        h.record(31, 1);
        h.record(32, 1);
        assert_eq!(h.percentile(0.5), Some(1));
        assert_eq!(h.percentile(0.99), Some(31));
        assert_eq!(h.percentile(1.0), Some(32));
        assert_eq!(h.max(), Some(32));
        assert!((h.mean().unwrap() - (98.0 + 31.0 + 32.0) / 100.0).abs() < 1e-9);
    }

    #[test]
    fn large_values_fall_in_log2_buckets_and_the_last_is_open() {
        let mut h = Histogram::default();
        h.record(65, 1);
        h.record(100, 1);
        h.record(1 << 20, 1);
        let b = h.to_buckets();
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0],
            Bucket {
                le: Le::Value(128),
                count: 2
            }
        );
        assert_eq!(b[1].le, Le::Inf(InfTag::Inf));
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, r#"[{"le":128,"count":2},{"le":"+Inf","count":1}]"#);
        assert_eq!(Histogram::from_bucket_list(&b), h);
    }

    /// Bucket lists read from a file whose counts add up past `u64::MAX` (an overflow panic
    /// with overflow checks on, found fuzzing the recording reader): saturated, and statistics
    /// of them still work.
    #[test]
    fn counts_past_the_maximum_saturate() {
        let b = |le, count| Bucket {
            le: Le::Value(le),
            count,
        };
        let h = Histogram::from_bucket_list(&[b(1, u64::MAX), b(1, 1), b(2, 7)]);
        assert_eq!((h.buckets[1], h.buckets[2]), (u64::MAX, 7));
        assert_eq!(h.total(), u64::MAX);
        assert_eq!(h.percentile(0.5), Some(1));
        let s = HistStats::of(&h, None);
        assert_eq!((s.count, s.max), (u64::MAX, Some(2)));
        let ns = log2_ns_from_buckets(&[b(1, u64::MAX), b(1, 1)]);
        assert_eq!(ns.total(), u64::MAX);
    }

    #[test]
    fn delta_subtracts_bucketwise() {
        let mut a = Histogram::default();
        a.record(2, 5);
        let mut b = a.clone();
        b.record(2, 3);
        b.record(7, 1);
        let d = b.delta(&a);
        assert_eq!(d.total(), 4);
        assert_eq!(d.buckets[2], 3);
        assert_eq!(d.buckets[7], 1);
    }
}
