//! The A/B table of `cargo xtask ab`: the figures a reviewer of a reclaim-flush patch asks
//! for, baseline against patched, from the runs' summary JSON and the guests' counters.
//!
//! Counts are summed over a kernel's runs before they are divided (a ratio of totals, not a
//! mean of ratios); percentiles and rates are the median of the runs' own.

use serde_json::Value;

use crate::vm::check::{KernelDeltas, batched_flush_bounds};

/// One kernel's runs.
pub struct Side<'a> {
    pub name: &'a str,
    pub runs: Vec<(&'a Value, &'a KernelDeltas)>,
}

fn u(s: &Value, p: &str) -> Option<u64> {
    s.pointer(p).and_then(Value::as_u64)
}

impl Side<'_> {
    fn sum(&self, p: &str) -> Option<u64> {
        self.runs.iter().map(|(s, _)| u(s, p)).sum()
    }

    fn sum_k(&self, f: fn(&KernelDeltas) -> Option<u64>) -> Option<u64> {
        self.runs.iter().map(|(_, k)| f(k)).sum()
    }

    fn ratio(&self, num: &str, den: &str) -> Option<f64> {
        let (n, d) = (self.sum(num)?, self.sum(den)?);
        (d > 0).then(|| n as f64 / d as f64)
    }

    /// Median over the runs of a number in each summary.
    fn median(&self, p: &str) -> Option<f64> {
        let mut v: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|(s, _)| s.pointer(p).and_then(Value::as_f64))
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        Some(if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        })
    }

    /// Σ over passes of ⌈pageouts ÷ batch⌉, summed over the runs, as "n" or "lo–hi".
    fn batched_flushes(&self, batch: u64) -> Option<(u64, u64)> {
        self.runs
            .iter()
            .map(|(s, _)| batched_flush_bounds(&s["pass_pageouts"]["histogram"], batch))
            .try_fold((0, 0), |(a, b), x| x.map(|(lo, hi)| (a + lo, b + hi)))
    }
}

/// One row: the figure for A, for B, and how B compares.
pub struct Row {
    pub metric: String,
    pub a: String,
    pub b: String,
    pub change: String,
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn count(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn change(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("x{:.3}", b / a),
        (Some(a), Some(b)) if a == b => "same".into(),
        _ => "-".into(),
    }
}

fn row(metric: &str, a: Option<f64>, b: Option<f64>, digits: usize) -> Row {
    Row {
        metric: metric.into(),
        a: fmt(a, digits),
        b: fmt(b, digits),
        change: change(a, b),
    }
}

fn bounds(v: Option<(u64, u64)>) -> String {
    match v {
        Some((lo, hi)) if lo == hi => lo.to_string(),
        Some((lo, hi)) => format!("{lo}-{hi}"),
        None => "-".into(),
    }
}

/// The rows of the table. `batch` is the dirty-folio batch the patch claims.
pub fn rows(a: &Side<'_>, b: &Side<'_>, batch: u64) -> Vec<Row> {
    let per_page = |s: &Side<'_>, f: fn(&KernelDeltas) -> Option<u64>| -> Option<f64> {
        let (n, d) = (s.sum_k(f)?, s.sum_k(|k| Some(k.pgsteal))?);
        (d > 0).then(|| n as f64 / d as f64)
    };
    let both = |label: &str, p: &str, digits: usize| row(label, a.median(p), b.median(p), digits);
    // A count summed over the runs, per folio reclaimed in them.
    let per_folio = |label: &str, p: &str| {
        let folios = "/totals/folios_reclaimed";
        row(label, a.ratio(p, folios), b.ratio(p, folios), 4)
    };
    // Two figures side by side, "x / y", for each kernel.
    let pair =
        |metric: String, x: &dyn Fn(&Side<'_>) -> String, y: &dyn Fn(&Side<'_>) -> String| Row {
            metric,
            a: format!("{} / {}", x(a), y(a)),
            b: format!("{} / {}", x(b), y(b)),
            change: String::new(),
        };
    let sum = |p: &'static str| move |s: &Side<'_>| count(s.sum(p));
    vec![
        per_folio("flushes per reclaimed folio", "/totals/flushes"),
        per_folio(
            "  deferred (dirty + batch: send IPIs)",
            "/totals/deferred_flushes",
        ),
        per_folio("  immediate (local)", "/totals/immediate_flushes"),
        per_folio(
            "  dirty flushes per reclaimed folio",
            "/totals/dirty_flushes",
        ),
        pair(
            format!("  dirty flushes (tool) / sum of ceil(pass pageouts / {batch})"),
            &sum("/totals/dirty_flushes"),
            &|s| bounds(s.batched_flushes(batch)),
        ),
        both("batch fill p50 (folios per flush)", "/batch_fill/p50", 0),
        both("batch fill p99", "/batch_fill/p99", 0),
        both("batch fill max", "/batch_fill/max", 0),
        per_folio("IPIs per reclaimed folio", "/totals/ipis"),
        both("IPI fan-out p50 (CPUs per flush)", "/ipi_fanout/p50", 0),
        both("pass latency p50 (µs)", "/pass_duration_us/p50", 0),
        both("pass latency p99 (µs)", "/pass_duration_us/p99", 0),
        both("pageouts per pass p50", "/pass_pageouts/p50", 0),
        both("pageouts per pass max", "/pass_pageouts/max", 0),
        both(
            "workload pages/s (TCG, not hardware time)",
            "/workload/result/pages_per_s",
            0,
        ),
        both(
            "stale-TLB window p50 (ns, unmap -> end of its flush)",
            "/unflushed_window_ns/p50",
            0,
        ),
        both("stale-TLB window p99 (ns)", "/unflushed_window_ns/p99", 0),
        both("flush -> pageout p50 (ns)", "/flush_to_pageout_ns/p50", 0),
        both("flush -> pageout p99 (ns)", "/flush_to_pageout_ns/p99", 0),
        Row {
            metric: "pageouts before their flush (0 on a correct kernel)".into(),
            a: count(a.sum("/totals/pageouts_before_flush")),
            b: count(b.sum("/totals/pageouts_before_flush")),
            change: String::new(),
        },
        row(
            "TLB interrupts (/proc/interrupts) per reclaimed page",
            per_page(a, |k| k.tlb_irqs),
            per_page(b, |k| k.tlb_irqs),
            4,
        ),
        pair(
            "pages reclaimed: tool / Δpgsteal".into(),
            &sum("/totals/pages_reclaimed"),
            &|s| count(s.sum_k(|k| Some(k.pgsteal))),
        ),
        pair(
            "pages read back / corrupt".into(),
            &sum("/workload/result/pages_verified"),
            &sum("/workload/result/corrupt_pages"),
        ),
    ]
}

/// Markdown, with the kernels' names as column heads.
pub fn render(a: &Side<'_>, b: &Side<'_>, rows: &[Row]) -> String {
    let mut o = format!(
        "| metric | {} ({} run{}) | {} ({} run{}) | B/A |\n|---|---|---|---|\n",
        a.name,
        a.runs.len(),
        if a.runs.len() == 1 { "" } else { "s" },
        b.name,
        b.runs.len(),
        if b.runs.len() == 1 { "" } else { "s" },
    );
    for r in rows {
        o.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.metric, r.a, r.b, r.change
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn summary(folios: u64, dirty: u64, pass_pageouts: &[(u64, u64)]) -> Value {
        json!({
            "totals": {"flushes": dirty, "deferred_flushes": dirty, "immediate_flushes": 0,
                       "dirty_flushes": dirty, "folios_reclaimed": folios,
                       "pages_reclaimed": folios, "ipis": dirty},
            "batch_fill": {"p50": 1, "p99": 1, "max": 1},
            "pass_pageouts": {"histogram": pass_pageouts.iter()
                .map(|(le, c)| json!({"le": le, "count": c})).collect::<Vec<_>>()},
            "workload": {"result": {"pages_per_s": 1000.0, "pages_verified": 5,
                                    "corrupt_pages": 0}},
        })
    }

    fn deltas(pgsteal: u64, tlb: u64) -> KernelDeltas {
        KernelDeltas {
            pgsteal,
            pswpout: pgsteal,
            tlb_irqs: Some(tlb),
            call_irqs: None,
            large_swpout: 0,
            large_swpout_pages: 0,
        }
    }

    #[test]
    fn ratios_are_of_totals_and_the_batch_expectation_comes_from_pass_sizes() {
        // Baseline: 64 folios in 4 passes of 16 pageouts, one flush each.
        let a1 = summary(64, 64, &[(16, 4)]);
        // Patched: passes of 16 and 40 pageouts: ceil(16/31) + ceil(40/31) = 1 + 2.
        let b1 = summary(56, 3, &[(16, 1), (40, 1)]);
        let (ka, kb) = (deltas(64, 64), deltas(56, 3));
        let a = Side {
            name: "baseline",
            runs: vec![(&a1, &ka)],
        };
        let b = Side {
            name: "patched",
            runs: vec![(&b1, &kb)],
        };
        let r = rows(&a, &b, 31);
        let find = |m: &str| r.iter().find(|x| x.metric.starts_with(m)).unwrap();
        assert_eq!(find("flushes per reclaimed folio").a, "1.0000");
        assert_eq!(find("flushes per reclaimed folio").b, "0.0536");
        assert_eq!(find("flushes per reclaimed folio").change, "x0.054");
        assert_eq!(find("  dirty flushes (tool)").a, "64 / 4");
        assert_eq!(find("  dirty flushes (tool)").b, "3 / 3");
        assert_eq!(find("TLB interrupts").b, "0.0536");
        assert_eq!(find("pages reclaimed").a, "64 / 64");
        assert!(render(&a, &b, &r).contains("| baseline (1 run) | patched (1 run) | B/A |"));
    }

    #[test]
    fn a_pass_beyond_the_exact_buckets_gives_a_range() {
        // 80 pageouts land in the (64, 128] bucket: 3 (65 = 3 x 31 - 28) to 5 batches of 31.
        let s = summary(80, 3, &[(128, 1)]);
        let k = deltas(80, 3);
        let side = Side {
            name: "x",
            runs: vec![(&s, &k)],
        };
        assert_eq!(bounds(side.batched_flushes(31)), "3-5");
    }
}
