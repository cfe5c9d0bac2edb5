//! The matrix table of `cargo xtask vm` (docs/kernels.md): one row per run.

use serde_json::Value;

use super::{KernelDeltas, lru_pages_reclaimed, u};

/// `p50/max` of a histogram summary.
fn p50_max(v: &Value) -> String {
    let f = |k: &str| match v.get(k).and_then(Value::as_u64) {
        Some(u64::MAX) => "+Inf".to_string(),
        Some(x) => x.to_string(),
        None => "-".to_string(),
    };
    format!("{}/{}", f("p50"), f("max"))
}

/// Short name of the tier of each signal: `pass=fentry unmap=fentry ...`.
fn tiers(s: &Value) -> String {
    let short = |sig: &str| match sig {
        "reclaim_pass" => "pass",
        "folios" => "folios",
        "reclaim_context" => "ctx",
        "pageouts" => "pageout",
        "batched_unmaps" => "unmap",
        "dirty_flush" => "dirty",
        "flush" => "flush",
        "fanout_targets" => "targets",
        "ipis" => "ipis",
        "remote_shootdowns" => "victims",
        "stale_tlb_window" => "window",
        _ => "?",
    };
    s["probe_plan"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    format!(
                        "{}={}",
                        short(r["signal"].as_str().unwrap_or("")),
                        r["tier"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

pub const TABLE_HEADER: &str = "| kernel | workload | probe tier per signal | flushes / reclaimed folio (deferred + immediate) | batch fill p50/max | fan-out p50/max (source) | pages reclaimed: tool / pgsteal | dirty flushes / pageouts (folio kept after its dirty flush) | retries; checks not made |\n|---|---|---|---|---|---|---|---|---|";

/// One markdown row of the README table, from the tool's summary and the kernel's counters.
pub fn table_row(kernel: &str, workload: &str, s: &Value, k: &KernelDeltas) -> String {
    let r = |k: &str| {
        s.get(k)
            .and_then(Value::as_f64)
            .map_or("-".into(), |r| format!("{r:.3}"))
    };
    let ratio = format!(
        "{} ({} + {})",
        r("flushes_per_reclaimed_folio"),
        r("deferred_flushes_per_reclaimed_folio"),
        r("immediate_flushes_per_reclaimed_folio")
    );
    let source = match s["ipi_fanout"]["source"].as_str() {
        Some("csd_queue_cpu") => "targets",
        Some("batch_cpumask") => "candidates",
        Some(x) => x,
        None => "-",
    };
    let n = |p: &str| u(s, p).map_or("-".into(), |x| x.to_string());
    // arm64: every flush reaches all CPUs by the TLBI broadcast; there is no p50 to show.
    let fanout = match u(s, "/ipi_fanout/broadcast_cpus") {
        Some(cpus) if source == "broadcast" => format!("all {cpus}, 0 IPIs"),
        _ => p50_max(&s["ipi_fanout"]),
    };
    format!(
        "| {kernel} | {workload} | {} | {ratio} | {} | {fanout} ({source}) | {} / {} | {} / {} ({}) |",
        tiers(s),
        p50_max(&s["batch_fill"]),
        lru_pages_reclaimed(s).map_or("-".into(), |x| x.to_string()),
        k.pgsteal,
        n("/totals/dirty_flushes"),
        n("/totals/pageouts"),
        n("/totals/dirty_flushes_without_pageout"),
    )
}
