//! Statistics of the paired runs: medians and their distribution-free 95% intervals.

pub(super) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// A distribution-free 95% confidence interval of the median of `v`: the order statistics
/// x(k) and x(n+1-k), k the largest with P(Binomial(n, 1/2) < k) <= 2.5%. For 16 values
/// these are the 4th and 13th (97.9% coverage). None below 6 values, where no k qualifies.
pub(super) fn median_ci95(v: &[f64]) -> Option<[f64; 2]> {
    let n = v.len();
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let (mut k, mut cdf, mut choose) = (0, 0.0, 1.0);
    for j in 0..n {
        // cdf = P(B <= j); choose = C(n, j).
        cdf += choose / 2f64.powi(n as i32);
        if cdf > 0.025 {
            break;
        }
        k = j + 1;
        choose = choose * (n - j) as f64 / (j + 1) as f64;
    }
    (k > 0).then(|| [s[k - 1], s[n - k]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_interval_is_the_binomial_order_statistics() {
        // 16 values: P(B <= 3) = 0.0106 <= 2.5% < P(B <= 4) = 0.0384, so the 4th and 13th.
        let v: Vec<f64> = (1..=16).rev().map(f64::from).collect();
        assert_eq!(median_ci95(&v), Some([4.0, 13.0]));
        // 6 values: only the extremes (P(B = 0) = 1/64).
        assert_eq!(
            median_ci95(&[3.0, -1.0, 2.0, 9.0, 0.0, 5.0]),
            Some([-1.0, 9.0])
        );
        // 5 values: P(B = 0) = 1/32 > 2.5%, no interval at 95%.
        assert_eq!(median_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]), None);
        // 9 values: P(B <= 1) = 10/512 = 0.0195, P(B <= 2) = 0.0898: the 2nd and 8th.
        let v: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(median_ci95(&v), Some([2.0, 8.0]));
    }
}
