//! One model, many views: the same window rendered through every output must agree on every
//! figure they share. Run on a 6.1-like plan (no `csd:`/`ipi:` events: remote shootdowns come
//! from `tlb_flush` reason 1, fan-out from the batch cpumask) and a 6.12-like one (real
//! targets and IPIs), where a figure computed twice would differ.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    merge::merge,
    prometheus::{CONTEXT_COUNTERS, Format, tests::render_window},
    summary::tests::{anon_window, summarize},
    text,
};
use crate::{
    aggregate::{CONTEXT_NAMES, KernelSnapshot, Window},
    plan::{Failures, Plan, ProbeMode, plan, tests::FakeKernel},
};

/// `name{labels}` → value of every sample of an exposition.
fn samples(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The window every view renders: the anon workload's, with reason-1 `tlb_flush` counts
/// that differ from the csd targets (as they do: hardirq events are lost under BPF nesting).
fn window() -> Window {
    let mut w = anon_window();
    w.kernel.remote_shootdowns_traced_by_cpu = vec![130, 125];
    w
}

fn plans() -> [(&'static str, Plan); 2] {
    let p = |k: FakeKernel| plan(&k.facts(), ProbeMode::Auto, &Failures::default()).unwrap();
    [
        ("6.1-like", p(FakeKernel::debian_6_1())),
        ("6.12-like", p(FakeKernel::host_6_18())),
    ]
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x}"),
        None => "NaN".into(),
    }
}

#[test]
fn prometheus_json_text_and_report_agree_on_every_shared_figure() {
    for (name, p) in plans() {
        let w = window();
        let (s, expo) = render_window(&w, &p, Format::Prometheus);
        let prom = samples(&expo);
        let json = serde_json::to_value(&s).unwrap();
        let at = |metric: &str, labels: &str| {
            prom.get(&format!("reclaim_trace_{metric}{labels}"))
                .cloned()
                .unwrap_or_else(|| panic!("{name}: reclaim_trace_{metric}{labels} not exported"))
        };
        // Per-context counters = by_context in the JSON.
        for (metric, _, _) in CONTEXT_COUNTERS {
            let key = format!("reclaim_trace_{metric}_total{{context=\"memcg\"}}");
            if !prom.contains_key(&key) {
                continue; // not observable in this plan, and not exported as a zero
            }
            for ctx in CONTEXT_NAMES {
                let want = num(&json["by_context"][ctx][metric]);
                let got = at(
                    &format!("{metric}_total"),
                    &format!("{{context=\"{ctx}\"}}"),
                );
                assert_eq!(got, want, "{name}: {metric} in {ctx}");
            }
        }
        // Whole-window counters and the headline ratios.
        for (metric, ptr) in [
            ("other_flushes_total", "/totals/other_flushes"),
            ("remote_shootdowns_total", "/totals/remote_shootdowns"),
            ("ringbuf_drops_total", "/drops/ringbuf"),
            ("decode_errors_total", "/drops/decode_errors"),
            ("unmatched_pages_total", "/totals/unmatched_pages"),
            (
                "flushes_per_reclaimed_folio",
                "/flushes_per_reclaimed_folio",
            ),
            (
                "deferred_flushes_per_reclaimed_folio",
                "/deferred_flushes_per_reclaimed_folio",
            ),
            (
                "immediate_flushes_per_reclaimed_folio",
                "/immediate_flushes_per_reclaimed_folio",
            ),
            ("uptime_seconds", "/duration_s"),
        ] {
            assert_eq!(
                at(metric, ""),
                num(json.pointer(ptr).unwrap()),
                "{name}: {metric}"
            );
        }
        // The text report prints the same figures.
        let txt = text::render(&s);
        let t = &s.totals;
        for want in [
            format!(
                "{:>8}",
                format!("{:.3}", s.per_folio.flushes_per_reclaimed_folio.unwrap())
            ),
            format!(
                "remote shootdowns received {}",
                text::thousands(t.remote_shootdowns)
            ),
            format!(
                "flushes {} = deferred {}",
                text::thousands(t.flushes),
                text::thousands(t.deferred_flushes)
            ),
        ] {
            assert!(
                txt.contains(&want),
                "{name}: `{want}` not in the text:\n{txt}"
            );
        }
        // report: merging with an empty window changes nothing.
        let empty = Window {
            kernel: KernelSnapshot::empty(2),
            passes: Default::default(),
            duration_s: 0.0,
        };
        let e = summarize(&empty, &p);
        let m = merge(&s, &e);
        assert_eq!(m.totals, s.totals, "{name}: merged totals");
        assert_eq!(m.per_folio, s.per_folio, "{name}: merged ratios");
        assert_eq!(m.by_context, s.by_context, "{name}: merged contexts");
        assert_eq!(m.rates, s.rates, "{name}: merged rates");
    }
}
