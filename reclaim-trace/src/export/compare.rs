//! A/B comparison of two summaries: headline metrics, totals and percentiles with B/A ratios,
//! and `--fail-if METRIC>RATIO` rules that turn it into a regression gate.

use std::{fmt::Write as _, str::FromStr};

use serde::{Deserialize, Serialize};

use super::{summary::Summary, text::thousands};
use crate::error::BadInput;

pub const COMPARE_SCHEMA: &str = "reclaim-trace/compare/v1";

/// The metrics every comparison shows (dotted paths into the summary JSON).
pub const HEADLINE: &[&str] = &[
    "flushes_per_reclaimed_folio",
    "deferred_flushes_per_reclaimed_folio",
    "immediate_flushes_per_reclaimed_folio",
    "ipis_per_reclaimed_folio",
    "batch_fill.mean",
    "batch_fill.p50",
    "batch_fill.p99",
    "batch_fill.max",
    "ipi_fanout.mean",
    "ipi_fanout.p50",
    "ipi_fanout.p99",
    "ipi_fanout.max",
    "rates.folios_reclaimed_per_s",
    "rates.flushes_per_s",
    "rates.ipis_per_s",
    "totals.passes",
    "totals.folios_reclaimed",
    "totals.pages_reclaimed",
    "totals.pageouts",
    "totals.flushes",
    "totals.deferred_flushes",
    "totals.dirty_flushes",
    "totals.batch_flushes",
    "totals.immediate_flushes",
    "totals.other_flushes",
    "totals.ipis",
    "totals.fanout_targets",
    "pass_duration_us.p50",
    "pass_duration_us.p99",
    "totals.pageouts_before_flush",
    "unflushed_window_ns.p50",
    "unflushed_window_ns.p99",
    "flush_to_pageout_ns.p50",
    "flush_to_pageout_ns.p99",
    "duration_s",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<")]
    Lt,
}

/// `METRIC>RATIO` or `METRIC<RATIO`: fail when B/A crosses RATIO.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailIf {
    pub metric: String,
    pub op: Op,
    pub ratio: f64,
}

impl FromStr for FailIf {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (metric, op, r) = if let Some((m, r)) = s.split_once('>') {
            (m, Op::Gt, r)
        } else if let Some((m, r)) = s.split_once('<') {
            (m, Op::Lt, r)
        } else {
            return Err(format!(
                "`{s}` is not a rule: write METRIC>RATIO or METRIC<RATIO, e.g. \
                 flushes_per_reclaimed_folio>1.5"
            ));
        };
        let ratio: f64 = r
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("`{r}` in `{s}` is not a ratio (a number such as 1.5)"))?;
        let metric = metric.trim();
        if metric.is_empty() {
            return Err(format!("`{s}` names no metric"));
        }
        Ok(FailIf {
            metric: metric.to_string(),
            op,
            ratio,
        })
    }
}

impl std::fmt::Display for FailIf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Op::Gt => '>',
            Op::Lt => '<',
        };
        write!(f, "{}{op}{}", self.metric, self.ratio)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub metric: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// B/A; null when A is zero and B is not (an infinite change) or a value is missing.
    pub ratio: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub path: String,
    pub kernel: String,
    pub probe_mode: String,
    pub workload: Option<String>,
}

/// A `--fail-if` rule that failed, with its metric's values as a [`Row`] has them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub rule: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    pub ratio: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub schema: String,
    pub a: Side,
    pub b: Side,
    pub rows: Vec<Row>,
    pub failed: Vec<Failure>,
    pub warnings: Vec<String>,
}

/// The JSON pointer of a dotted metric name: `batch_fill.p50` → `/batch_fill/p50`.
fn pointer(name: &str) -> String {
    format!("/{}", name.replace('.', "/"))
}

/// The number at a dotted path of a summary (`batch_fill.p50`, `by_context.memcg.ipis`).
pub fn metric(summary: &serde_json::Value, name: &str) -> Option<f64> {
    summary.pointer(&pointer(name))?.as_f64()
}

/// The summary has a metric of that name: a number, or null where it is undefined.
fn known(summary: &serde_json::Value, name: &str) -> bool {
    summary
        .pointer(&pointer(name))
        .is_some_and(|v| v.is_number() || v.is_null())
}

/// B/A, with 0/0 = 1 (no change) and x/0 = infinite.
fn ratio(a: Option<f64>, b: Option<f64>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) if a == 0.0 && b == 0.0 => 1.0,
        (Some(0.0), Some(b)) => f64::INFINITY * b.signum(),
        (Some(a), Some(b)) => b / a,
        _ => f64::NAN,
    }
}

/// A metric on both sides, and B/A (unrounded: the rules compare it; rows show it when finite).
fn values(
    ja: &serde_json::Value,
    jb: &serde_json::Value,
    name: &str,
) -> (Option<f64>, Option<f64>, f64) {
    let (a, b) = (metric(ja, name), metric(jb, name));
    (a, b, ratio(a, b))
}

fn side(path: &str, s: &Summary) -> Side {
    Side {
        path: path.to_string(),
        kernel: s.kernel.release.clone(),
        probe_mode: s.kernel.probe_mode.clone(),
        workload: s.workload.as_ref().map(|w| w.kind.clone()),
    }
}

pub fn compare(
    (a_path, a): (&str, &Summary),
    (b_path, b): (&str, &Summary),
    rules: &[FailIf],
) -> anyhow::Result<Comparison> {
    let (ja, jb) = (serde_json::to_value(a)?, serde_json::to_value(b)?);
    for r in rules {
        if !known(&ja, &r.metric) {
            return Err(BadInput(format!(
                "--fail-if {r}: no numeric metric `{}` in the summaries (examples: {})",
                r.metric,
                HEADLINE[..4].join(", ")
            ))
            .into());
        }
    }
    let finite = |v: f64| v.is_finite().then_some(v);
    let rows = HEADLINE
        .iter()
        .map(|m| {
            let (x, y, q) = values(&ja, &jb, m);
            Row {
                metric: m.to_string(),
                a: x,
                b: y,
                ratio: finite(q),
            }
        })
        .collect();
    let failed = rules
        .iter()
        .filter_map(|r| {
            let (x, y, q) = values(&ja, &jb, &r.metric);
            let bad = match r.op {
                Op::Gt => q > r.ratio,
                Op::Lt => q < r.ratio,
            };
            bad.then(|| Failure {
                rule: r.to_string(),
                a: x,
                b: y,
                ratio: finite(q),
            })
        })
        .collect();
    Ok(Comparison {
        schema: COMPARE_SCHEMA.to_string(),
        a: side(a_path, a),
        b: side(b_path, b),
        rows,
        failed,
        warnings: warnings(a, b),
    })
}

/// What makes the two sides hard to compare: different probe modes, most flushes immediate,
/// folios counted on one side only.
fn warnings(a: &Summary, b: &Summary) -> Vec<String> {
    let mut warnings = Vec::new();
    if a.kernel.probe_mode != b.kernel.probe_mode {
        warnings.push(format!(
            "probe modes differ ({} vs {}): batch fill and candidates may be exact on one side \
             and estimated or absent on the other",
            a.kernel.probe_mode, b.kernel.probe_mode
        ));
    }
    warnings.extend(immediate_warning(a, b));
    if a.folios_counted() != b.folios_counted() {
        warnings.push(
            "folios are counted as folios on one side and as base pages on the other: the \
             per-folio ratios differ by the folio size where large folios were reclaimed"
                .into(),
        );
    }
    warnings
}

/// Most flushes immediate on both sides: say that batching deferred flushes cannot change them.
fn immediate_warning(a: &Summary, b: &Summary) -> Option<String> {
    let share = |s: &Summary| {
        (s.totals.flushes > 0).then(|| s.totals.immediate_flushes as f64 / s.totals.flushes as f64)
    };
    let (x, y) = (share(a)?, share(b)?);
    (x > 0.5 && y > 0.5).then(|| {
        format!(
            "most reclaim flushes are immediate on both sides (A {:.0}%, B {:.0}%): \
             try_to_unmap_one() flushed them at once because the mm was live on no other CPU \
             (single-threaded processes); a patch that batches deferred flushes cannot change \
             them, compare deferred_flushes_per_reclaimed_folio",
            x * 100.0,
            y * 100.0
        )
    })
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => thousands(v.abs() as u64),
        Some(v) => format!("{v:.3}"),
    }
}

pub fn render(c: &Comparison) -> String {
    let mut o = String::new();
    for (tag, s) in [("A", &c.a), ("B", &c.b)] {
        let _ = writeln!(
            o,
            "{tag}: {}  (Linux {}, {}{})",
            s.path,
            s.kernel,
            s.probe_mode,
            s.workload
                .as_deref()
                .map(|w| format!(", workload {w}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "  {:<38} {:>14} {:>14} {:>9}", "metric", "A", "B", "B/A");
    for r in &c.rows {
        let q = match (r.ratio, r.a, r.b) {
            (Some(q), _, _) => format!("{q:.3}"),
            (None, Some(a), Some(b)) if a == 0.0 && b != 0.0 => "inf".into(),
            _ => "-".into(),
        };
        let _ = writeln!(
            o,
            "  {:<38} {:>14} {:>14} {:>9}",
            r.metric,
            num(r.a),
            num(r.b),
            q
        );
    }
    for w in &c.warnings {
        let _ = writeln!(o, "\nwarning: {w}");
    }
    for f in &c.failed {
        let _ = writeln!(
            o,
            "FAIL {}: A {} B {} (B/A {})",
            f.rule,
            num(f.a),
            num(f.b),
            f.ratio.map_or("inf".into(), |q| format!("{q:.3}"))
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::summary::tests::anon_summary;

    fn file_like() -> Summary {
        let mut s = anon_summary();
        s.totals.dirty_flushes = 0;
        s.totals.batch_flushes = 20;
        s.totals.flushes = 20;
        s.per_folio.flushes_per_reclaimed_folio = Some(20.0 / 350.0);
        s
    }

    #[test]
    fn rules_parse_or_explain() {
        let r: FailIf = "flushes_per_reclaimed_folio>1.5".parse().unwrap();
        assert_eq!(
            (r.metric.as_str(), r.op, r.ratio),
            ("flushes_per_reclaimed_folio", Op::Gt, 1.5)
        );
        let r: FailIf = "rates.folios_reclaimed_per_s < 0.9".parse().unwrap();
        assert_eq!(r.op, Op::Lt);
        assert!(
            "flushes"
                .parse::<FailIf>()
                .unwrap_err()
                .contains("METRIC>RATIO")
        );
        assert!(
            "x>fast"
                .parse::<FailIf>()
                .unwrap_err()
                .contains("not a ratio")
        );
        assert!(">2".parse::<FailIf>().is_err());
    }

    #[test]
    fn ratios_and_gate() {
        let (a, b) = (anon_summary(), file_like());
        let rule: FailIf = "flushes_per_reclaimed_folio>1.5".parse().unwrap();
        // Patched (B) is better: passes.
        let c = compare(
            ("anon.json", &a),
            ("file.json", &b),
            std::slice::from_ref(&rule),
        )
        .unwrap();
        let row = c
            .rows
            .iter()
            .find(|r| r.metric == "flushes_per_reclaimed_folio")
            .unwrap();
        assert!((row.ratio.unwrap() - 20.0 / 300.0).abs() < 1e-9);
        assert!(c.failed.is_empty());
        // Swapped: a 15x regression fails, and the failure names the rule.
        let c = compare(("file.json", &b), ("anon.json", &a), &[rule]).unwrap();
        assert_eq!(c.failed.len(), 1);
        assert_eq!(c.failed[0].rule, "flushes_per_reclaimed_folio>1.5");
        assert!(render(&c).contains("FAIL flushes_per_reclaimed_folio>1.5"));
    }

    #[test]
    fn immediate_flushes_on_both_sides_are_called_out() {
        let mut procs = anon_summary();
        procs.totals.immediate_flushes = 900;
        procs.totals.flushes += 900;
        let c = compare(("a", &procs), ("b", &procs), &[]).unwrap();
        let w = c.warnings.join("\n");
        assert!(
            w.contains("immediate on both sides") && w.contains("cannot change"),
            "{w}"
        );
        // One side mostly deferred: nothing to say.
        let c = compare(("a", &anon_summary()), ("b", &procs), &[]).unwrap();
        assert!(
            c.warnings.iter().all(|w| !w.contains("immediate")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn zero_baselines_and_unknown_metrics() {
        let a = anon_summary();
        let mut b = a.clone();
        b.totals.other_flushes = 0;
        let mut a0 = a.clone();
        a0.totals.other_flushes = 0;
        b.totals.other_flushes = 5;
        let c = compare(
            ("a", &a0),
            ("b", &b),
            &["totals.other_flushes>2".parse().unwrap()],
        )
        .unwrap();
        assert_eq!(c.failed.len(), 1, "0 -> 5 is an infinite increase");
        assert_eq!(c.failed[0].ratio, None);
        let e = compare(("a", &a), ("b", &a), &["no_such_metric>1".parse().unwrap()]).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("no_such_metric"));
    }
}
