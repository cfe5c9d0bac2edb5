//! The exposition's tests, and the helper the agreement test renders windows with.

use super::*;
use crate::{
    export::summary::tests::{anon_window, summarize},
    plan::{Failures, Plan, ProbeMode, plan, tests::FakeKernel},
};

/// The exposition of `w` as `serve` renders it: through its summary.
pub(crate) fn render_window(w: &Window, p: &Plan, format: Format) -> (Summary, String) {
    let s = summarize(w, p);
    let text = render(&s, w, format);
    (s, text)
}

fn exposition(format: Format) -> String {
    let facts = FakeKernel::host_6_18().facts();
    let p = plan(&facts, ProbeMode::Tracepoint, &Failures::default()).unwrap();
    render_window(&anon_window(), &p, format).1
}

/// Every one of `lines` is in the exposition `t`.
fn assert_has<S: AsRef<str>>(t: &str, lines: &[S]) {
    for want in lines {
        let want = want.as_ref();
        assert!(t.contains(want), "{want} not in:\n{t}");
    }
}

#[test]
fn counters_histograms_and_info() {
    let t = exposition(Format::Prometheus);
    assert_has(
        &t,
        &[
            "# TYPE reclaim_trace_dirty_flushes_total counter\n",
            "reclaim_trace_dirty_flushes_total{context=\"memcg\"} 300\n",
            "reclaim_trace_folios_reclaimed_total{context=\"reclaim_pages\"} 50\n",
            "reclaim_trace_other_flushes_total 3\n",
            "reclaim_trace_remote_shootdowns_total 290\n",
            // Cumulative buckets: 10 flushes reached 0 CPUs, 300 reached at most 1.
            "reclaim_trace_ipi_fanout_bucket{context=\"memcg\",le=\"0\"} 10\n",
            "reclaim_trace_ipi_fanout_bucket{context=\"memcg\",le=\"1\"} 300\n",
            "reclaim_trace_ipi_fanout_bucket{context=\"memcg\",le=\"+Inf\"} 300\n",
            "reclaim_trace_ipi_fanout_sum{context=\"memcg\"} 290\n",
            "reclaim_trace_ipi_fanout_count{context=\"memcg\"} 300\n",
            "reclaim_trace_probe_info{signal=\"flush\",tier=\"tracepoint\"} 1\n",
        ],
    );
    assert!(
        !t.contains("reclaim_trace_fanout_candidates"),
        "no cpumask in this tier"
    );
    assert!(!t.contains("# EOF"));
}

/// arm64: the label says broadcast, and nothing per CPU or immediate is exported as a zero.
#[test]
fn broadcast_flushes_export_no_per_cpu_series() {
    let facts = FakeKernel::debian_6_12_arm64().facts();
    let p = plan(&facts, ProbeMode::Auto, &Failures::default()).unwrap();
    let t = render_window(&anon_window(), &p, Format::Prometheus).1;
    assert!(t.contains("flush_reach=\"broadcast\""), "{t}");
    for absent in [
        "reclaim_trace_ipi_fanout",
        "reclaim_trace_fanout_candidates",
        "reclaim_trace_fanout_targets_total",
        "reclaim_trace_immediate_flushes_total",
        "reclaim_trace_remote_shootdowns_total",
    ] {
        assert!(!t.contains(absent), "{absent} exported:\n{t}");
    }
    assert!(t.contains("reclaim_trace_flushes_without_ipi_total"), "{t}");
    let x86 = exposition(Format::Prometheus);
    assert!(x86.contains("flush_reach=\"ipi\""), "{x86}");
}

#[test]
fn stale_window_only_where_measured_in_seconds_with_power_of_two_bounds() {
    let tp = exposition(Format::Prometheus);
    assert!(!tp.contains("_window_seconds") && !tp.contains("pageouts_before_flush"));
    let facts = FakeKernel::host_6_18().facts();
    let p = plan(&facts, ProbeMode::Auto, &Failures::default()).unwrap();
    let mut w = anon_window();
    let idx = reclaim_trace_common::hist_index(HIST_UNFLUSHED_WINDOW, 2) as usize;
    // Three windows below 2^10 ns, one below 2^12.
    w.kernel.hists[idx].buckets[10] = 3;
    w.kernel.hists[idx].buckets[12] = 1;
    w.kernel.counters[reclaim_trace_common::CNT_PAGEOUTS_BEFORE_FLUSH as usize] = 7;
    let t = render_window(&w, &p, Format::Prometheus).1;
    let ctx = CONTEXT_NAMES[2];
    assert_has(
        &t,
        &[
            "reclaim_trace_pageouts_before_flush_total 7\n".to_string(),
            format!(
                "reclaim_trace_unflushed_window_seconds_bucket{{context=\"{ctx}\",le=\"5.12e-7\"}} 0\n"
            ),
            format!(
                "reclaim_trace_unflushed_window_seconds_bucket{{context=\"{ctx}\",le=\"1.024e-6\"}} 3\n"
            ),
            format!(
                "reclaim_trace_unflushed_window_seconds_bucket{{context=\"{ctx}\",le=\"4.096e-6\"}} 4\n"
            ),
            format!(
                "reclaim_trace_unflushed_window_seconds_bucket{{context=\"{ctx}\",le=\"+Inf\"}} 4\n"
            ),
            format!("reclaim_trace_unflushed_window_seconds_count{{context=\"{ctx}\"}} 4\n"),
        ],
    );
}

#[test]
fn openmetrics_names_families_without_suffixes_and_ends_with_eof() {
    let t = exposition(Format::OpenMetrics);
    assert_has(
        &t,
        &[
            "# TYPE reclaim_trace_passes counter\n",
            "reclaim_trace_passes_total{context=\"memcg\"} 10\n",
            "# TYPE reclaim_trace_probe info\n",
        ],
    );
    assert!(t.ends_with("# EOF\n"));
}

/// Every metric the Grafana dashboard queries is one the exporter produces (in the precise
/// tier, where all of them exist), so the dashboard cannot drift from the names.
#[test]
fn dashboard_uses_only_exported_metrics() {
    let facts = FakeKernel::host_6_18().facts();
    let p = plan(&facts, ProbeMode::Auto, &Failures::default()).unwrap();
    let text = render_window(&anon_window(), &p, Format::Prometheus).1;
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let dash: serde_json::Value =
        serde_json::from_str(include_str!("../../../../dashboards/reclaim-trace.json")).unwrap();
    let mut exprs = Vec::new();
    fn walk<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        ("expr" | "query", Some(e)) => out.push(e),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dash, &mut exprs);
    assert!(exprs.len() > 10);
    let mut used = 0;
    for e in exprs {
        for (i, _) in e.match_indices("reclaim_trace_") {
            let name: String = e[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            used += 1;
            assert!(
                exported.contains(name.as_str()),
                "dashboard uses {name}, not exported"
            );
        }
    }
    assert!(used > 20);
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}
