//! Statistics of the paired runs: medians and their distribution-free 95% intervals, each
//! configuration's figures, and the ratios between configurations.

use serde_json::{Value, json};

use super::{Config, runner::Run};

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

/// Each configuration's figures, from its runs: wall time, the workload's CPU time, and both
/// per reclaimed folio. Every run reclaims the same number of folios (fixed work), yet on this
/// VM the same work takes 10-30% more or less time from run to run, whatever is attached.
pub(super) fn config_figures(runs: &[Vec<Run>]) -> Vec<Value> {
    let metric = |i: usize, f: fn(&Run) -> f64| runs[i].iter().map(f).collect::<Vec<f64>>();
    let pick: [fn(&Run) -> f64; 4] = [
        |r| r.wall,
        |r| r.cpu,
        |r| 1e6 * r.wall / r.reclaimed.max(1) as f64,
        |r| 1e6 * r.cpu / r.reclaimed.max(1) as f64,
    ];
    // Paired per slot: each run against the "nothing" run of the same slot (seconds apart), so
    // that the machine's slow drift (other load, DAMON, zram state) cancels; the run-to-run
    // noise that remains is what the intervals show.
    let paired_runs = |i: usize, f: fn(&Run) -> f64| -> Vec<f64> {
        runs[i]
            .iter()
            .zip(&runs[0])
            .map(|(x, n)| 100.0 * (f(x) / f(n) - 1.0))
            .collect()
    };
    let nothing: Vec<f64> = pick.iter().map(|f| median(&metric(0, *f))).collect();
    let mut configs = Vec::new();
    for cfg in Config::ALL {
        let i = cfg as usize;
        let w = metric(i, pick[0]);
        let med: Vec<f64> = pick.iter().map(|f| median(&metric(i, *f))).collect();
        let pairs: Vec<Vec<f64>> = pick.iter().map(|f| paired_runs(i, *f)).collect();
        configs.push(json!({
            "config": cfg.name(),
            "runs": w.len(),
            "median_s": med[0],
            "min_s": w.iter().copied().fold(f64::INFINITY, f64::min),
            "max_s": w.iter().copied().fold(0.0, f64::max),
            "ratio_to_nothing": med[0] / nothing[0],
            "slowdown_pct": 100.0 * (med[0] / nothing[0] - 1.0),
            "paired_slowdown_pct": median(&pairs[0]),
            // What this machine's noise allows to resolve: a distribution-free 95% interval
            // of that median, and every paired figure.
            "paired_slowdown_pct_ci95": median_ci95(&pairs[0]),
            "paired_slowdown_pct_per_run": pairs[0],
            "cpu_median_s": med[1],
            "paired_cpu_slowdown_pct": median(&pairs[1]),
            "wall_us_per_folio": med[2],
            "paired_wall_per_folio_slowdown_pct": median(&pairs[2]),
            "cpu_us_per_folio": med[3],
            "paired_cpu_per_folio_slowdown_pct": median(&pairs[3]),
            "paired_cpu_per_folio_slowdown_pct_ci95": median_ci95(&pairs[3]),
            "times_s": w,
            "cpu_s": metric(i, pick[1]),
            "folios_reclaimed": runs[i].iter().map(|r| r.reclaimed).collect::<Vec<u64>>(),
        }));
    }
    configs
}

/// `tool`'s paired slowdown over `den`'s, from `config_figures`. A ratio of slowdowns only
/// means something when the denominator is a slowdown: its whole interval above zero (else
/// null). The bound is the largest ratio the two intervals allow (the tool's interval top
/// over the other's interval bottom).
pub(super) fn slowdown_ratio(configs: &[Value], tool: Config, den: Config) -> Value {
    let slow = |c: Config| {
        configs[c as usize]["paired_slowdown_pct"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let ci = |c: Config, end: usize| configs[c as usize]["paired_slowdown_pct_ci95"][end].as_f64();
    match ci(den, 0) {
        Some(lo) if lo > 0.0 => json!({
            "median": slow(tool) / slow(den),
            "upper_bound": ci(tool, 1).map(|h| h / lo),
        }),
        _ => Value::Null,
    }
}

/// Per round, `num`'s in-kernel time per folio over `den`'s, from the side-by-side run: the
/// machine's speed drifts by tens of percent between minutes, and a ratio of two
/// measurements minutes apart inherits that drift.
pub(super) fn per_round_ratios(
    in_kernel_rounds: &[Vec<f64>],
    num: Config,
    den: Config,
) -> Vec<f64> {
    in_kernel_rounds[num as usize]
        .iter()
        .zip(&in_kernel_rounds[den as usize])
        .map(|(a, b)| a / b)
        .collect()
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
