//! Prometheus text exposition (0.0.4) and OpenMetrics 1.0 of a window.
//!
//! Counters for the totals and histograms for batch fill and fan-out, labelled only by reclaim
//! context; the probe plan and build as info metrics. Metric names are the JSON names with a
//! `reclaim_trace_` prefix. Every figure is read from the window's [`Summary`] (the model the
//! JSON, text and dashboard read); only the histograms' per-context buckets, which the summary
//! keeps for all reclaim contexts together, come from the window itself.

use std::fmt::Write as _;

use reclaim_trace_common::{
    HIST_BATCH_FILL, HIST_EXACT_MAX, HIST_FANOUT_CANDIDATES, HIST_FANOUT_TARGETS,
    HIST_FLUSH_TO_PAGEOUT, HIST_IPIS, HIST_UNFLUSHED_WINDOW, bucket_upper_bound,
};

use super::summary::{IpiFanout, Summary, Totals};
use crate::aggregate::{CONTEXT_NAMES, Histogram, Window};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Escape a label value (backslash, double quote, newline).
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out {
    s: String,
    format: Format,
}

impl Out {
    /// `# HELP`/`# TYPE` for a family. Counters are named `<family>_total`; in OpenMetrics the
    /// family name itself has no suffix.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let fam = match (self.format, kind) {
            (Format::OpenMetrics, "counter") => name.trim_end_matches("_total"),
            (Format::OpenMetrics, "info") => name.trim_end_matches("_info"),
            (Format::Prometheus, "info") => {
                let _ = writeln!(self.s, "# HELP {name} {help}");
                let _ = writeln!(self.s, "# TYPE {name} gauge");
                return;
            }
            _ => name,
        };
        let _ = writeln!(self.s, "# HELP {fam} {help}");
        let _ = writeln!(self.s, "# TYPE {fam} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        if l.is_empty() {
            let _ = writeln!(self.s, "{name} {value}");
        } else {
            let _ = writeln!(self.s, "{name}{{{}}} {value}", l.join(","));
        }
    }
}

/// A figure of each context's totals: (metric, help, accessor).
type Field = (&'static str, &'static str, fn(&Totals) -> u64);

pub(crate) const CONTEXT_COUNTERS: &[Field] = &[
    ("passes", "Reclaim passes (shrink_folio_list calls).", |t| {
        t.passes
    }),
    ("folios_reclaimed", "Folios reclaimed.", |t| {
        t.folios_reclaimed
    }),
    ("pages_reclaimed", "Base pages reclaimed.", |t| {
        t.pages_reclaimed
    }),
    ("pages_scanned", "Base pages scanned.", |t| t.pages_scanned),
    ("pageouts", "Folios written out by pageout().", |t| {
        t.pageouts
    }),
    (
        "flushes",
        "Reclaim TLB flushes: deferred (dirty + batch) + immediate.",
        |t| t.flushes,
    ),
    (
        "deferred_flushes",
        "Reclaim TLB flushes of the deferred-flush batch (dirty + batch): the ones that send IPIs.",
        |t| t.deferred_flushes,
    ),
    (
        "dirty_flushes",
        "TLB flushes forced before pageout() (try_to_unmap_flush_dirty).",
        |t| t.dirty_flushes,
    ),
    (
        "batch_flushes",
        "TLB flushes of the free batch or at the end of a pass.",
        |t| t.batch_flushes,
    ),
    (
        "immediate_flushes",
        "Reclaim TLB flushes try_to_unmap_one could not defer (local, no IPI).",
        |t| t.immediate_flushes,
    ),
    ("ipis", "IPIs sent by reclaim TLB flushes.", |t| t.ipis),
    (
        "fanout_targets",
        "CPUs reached by reclaim TLB flushes (sum over flushes).",
        |t| t.fanout_targets,
    ),
    (
        "fanout_candidates",
        "CPUs in the flushed batches' cpumasks (sum over flushes).",
        |t| t.fanout_candidates,
    ),
    (
        "flushes_without_ipi",
        "Reclaim flushes that reached no other CPU.",
        |t| t.flushes_without_ipi,
    ),
    (
        "batched_unmaps",
        "Folios deferred into a flush batch (try_to_unmap with TTU_BATCH_FLUSH).",
        |t| t.batched_unmaps,
    ),
];

fn histogram(
    o: &mut Out,
    name: &str,
    help: &str,
    w: &Window,
    metric: u32,
    sum: impl Fn(usize, &Histogram) -> f64,
) {
    o.family(name, "histogram", help);
    for (ctx, label) in CONTEXT_NAMES.iter().copied().enumerate() {
        let h = w.kernel.hist(metric, ctx as u32);
        let mut cum = 0u64;
        for (i, c) in h.buckets.iter().enumerate() {
            cum += c;
            let le = match bucket_upper_bound(i) {
                u64::MAX => "+Inf".to_string(),
                v => format!("{v}"),
            };
            o.sample(
                &format!("{name}_bucket"),
                &[("context", label), ("le", &le)],
                cum,
            );
        }
        o.sample(&format!("{name}_sum"), &[("context", label)], sum(ctx, h));
        o.sample(&format!("{name}_count"), &[("context", label)], h.total());
    }
}

/// A stale-TLB window histogram (kept as log2 of ns, see `log2_ns`) in seconds: bucket k holds
/// times below 2^k ns, so its `le` is 2^k ns; the sum counts each bucket at 3/4 of its bound.
fn window_histogram(o: &mut Out, name: &str, help: &str, w: &Window, metric: u32) {
    o.family(name, "histogram", help);
    for (ctx, label) in CONTEXT_NAMES.iter().copied().enumerate() {
        let h = w.kernel.hist(metric, ctx as u32);
        let (mut cum, mut sum) = (0u64, 0.0f64);
        for k in 0..=HIST_EXACT_MAX as usize {
            let c = h.buckets[k];
            cum += c;
            let bound_s = (1u128 << k) as f64 * 1e-9;
            if k > 0 {
                sum += 0.75 * bound_s * c as f64;
            }
            // Buckets past a minute say nothing more; the +Inf line holds them.
            if bound_s <= 64.0 {
                o.sample(
                    &format!("{name}_bucket"),
                    &[("context", label), ("le", &format!("{bound_s:e}"))],
                    cum,
                );
            }
        }
        o.sample(
            &format!("{name}_bucket"),
            &[("context", label), ("le", "+Inf")],
            cum,
        );
        o.sample(&format!("{name}_sum"), &[("context", label)], sum);
        o.sample(&format!("{name}_count"), &[("context", label)], cum);
    }
}

/// Σ value × count over the exact buckets; log2 buckets count at their upper bound.
fn bucket_sum(h: &Histogram) -> f64 {
    h.mean().map_or(0.0, |m| m * h.total() as f64)
}

/// The totals of each reclaim context, in `CONTEXT_NAMES` order.
fn context_totals(s: &Summary) -> Vec<Totals> {
    CONTEXT_NAMES
        .iter()
        .map(|c| {
            s.by_context
                .get(*c)
                .map(|x| x.totals.clone())
                .unwrap_or_default()
        })
        .collect()
}

/// The exposition of window `w`, whose summary is `s`.
pub fn render(s: &Summary, w: &Window, format: Format) -> String {
    let mut o = Out {
        s: String::new(),
        format,
    };
    let totals = context_totals(s);
    context_counters(&mut o, s, &totals);
    window_counters(&mut o, s);
    ratio_gauges(&mut o, s);
    histograms(&mut o, s, w, &totals);
    if s.unflushed_window_ns.is_some() {
        stale_window(&mut o, s, w);
    }
    info(&mut o, s);
    if format == Format::OpenMetrics {
        o.s.push_str("# EOF\n");
    }
    o.s
}

/// [`CONTEXT_COUNTERS`] for every reclaim context.
fn context_counters(o: &mut Out, s: &Summary, totals: &[Totals]) {
    let has_candidates = s.ipi_fanout.candidates.is_some();
    let fill_exact = s.batch_fill.exact;
    let broadcast = s.ipi_fanout.source == IpiFanout::BROADCAST;
    for (metric, help, get) in CONTEXT_COUNTERS {
        // Never export a zero for something this kernel's probes cannot see (arm64: no
        // per-CPU targets, no event for an immediate flush).
        if (*metric == "fanout_candidates" && !has_candidates)
            || (*metric == "batched_unmaps" && !fill_exact)
            || (broadcast && matches!(*metric, "fanout_targets" | "immediate_flushes"))
        {
            continue;
        }
        let name = format!("reclaim_trace_{metric}_total");
        o.family(&name, "counter", help);
        for (ctx, t) in totals.iter().enumerate() {
            o.sample(&name, &[("context", CONTEXT_NAMES[ctx])], get(t));
        }
    }
}

/// Counters of the whole window, not split by context.
fn window_counters(o: &mut Out, s: &Summary) {
    let t = &s.totals;
    let broadcast = s.ipi_fanout.source == IpiFanout::BROADCAST;
    for (name, help, v) in [
        (
            "reclaim_trace_other_flushes_total",
            "Batched TLB flushes outside reclaim (migration, compaction, NUMA balancing).",
            t.other_flushes,
        ),
        (
            "reclaim_trace_remote_shootdowns_total",
            "Remote TLB flushes received by any CPU (all causes).",
            t.remote_shootdowns,
        ),
        (
            "reclaim_trace_ringbuf_drops_total",
            "Per-pass records lost to a full ring buffer (totals are unaffected).",
            s.drops.ringbuf,
        ),
        (
            "reclaim_trace_decode_errors_total",
            "Ring-buffer records that could not be decoded.",
            s.drops.decode_errors,
        ),
        (
            "reclaim_trace_unmatched_pages_total",
            "Pages of passes whose freed folios did not add up to the pages reclaimed: the \
             folio count may be off by this much (0: folios exact).",
            t.unmatched_pages,
        ),
    ] {
        if broadcast && name == "reclaim_trace_remote_shootdowns_total" {
            continue; // no CPU is sent a flush
        }
        o.family(name, "counter", help);
        o.sample(name, &[], v);
    }
    let name = "reclaim_trace_anomalies_total";
    o.family(
        name,
        "counter",
        "Events the kernel side's state machines did not expect, by kind (the first ones are \
         logged with -v).",
    );
    for (kind, v) in &s.anomalies {
        o.sample(name, &[("kind", kind)], v);
    }
}

/// The headline ratios, and the time they are over.
fn ratio_gauges(o: &mut Out, s: &Summary) {
    let pf = &s.per_folio;
    for (name, help, v) in [
        (
            "reclaim_trace_flushes_per_reclaimed_folio",
            "Reclaim TLB flushes (deferred + immediate) per reclaimed folio since the exporter \
             started.",
            pf.flushes_per_reclaimed_folio,
        ),
        (
            "reclaim_trace_deferred_flushes_per_reclaimed_folio",
            "Deferred (dirty + batch) reclaim TLB flushes per reclaimed folio since the exporter \
             started.",
            pf.deferred_flushes_per_reclaimed_folio,
        ),
        (
            "reclaim_trace_immediate_flushes_per_reclaimed_folio",
            "Immediate reclaim TLB flushes per reclaimed folio since the exporter started.",
            pf.immediate_flushes_per_reclaimed_folio,
        ),
    ] {
        o.family(name, "gauge", help);
        o.sample(
            name,
            &[],
            v.map_or_else(|| "NaN".to_string(), |v| format!("{v}")),
        );
    }
    o.family(
        "reclaim_trace_uptime_seconds",
        "gauge",
        "Seconds since tracing started.",
    );
    o.sample("reclaim_trace_uptime_seconds", &[], s.duration_s);
}

/// Batch fill and fan-out per reclaim context; each only where this kernel's probes see it.
fn histograms(o: &mut Out, s: &Summary, w: &Window, totals: &[Totals]) {
    let fill_exact = s.batch_fill.exact;
    histogram(
        o,
        "reclaim_trace_batch_fill",
        if fill_exact {
            "Folios deferred into each reclaim TLB flush."
        } else {
            "Folios per reclaim TLB flush (estimated: unmaps are not observable with tracepoints)."
        },
        w,
        HIST_BATCH_FILL,
        |ctx, h| {
            if fill_exact {
                totals[ctx].batched_unmaps as f64
            } else {
                bucket_sum(h)
            }
        },
    );
    // The fan-out histograms, each where this kernel observes it: (shown, metric, (name, help,
    // the count in each context their sum is)).
    let fanout: [(bool, u32, Field); 3] = [
        (
            s.ipi_fanout.source == IpiFanout::TARGETS,
            HIST_FANOUT_TARGETS,
            (
                "reclaim_trace_ipi_fanout",
                "CPUs each reclaim TLB flush reached (csd_queue_cpu targets).",
                |t| t.fanout_targets,
            ),
        ),
        (
            s.ipi_fanout.ipis.is_some(),
            HIST_IPIS,
            (
                "reclaim_trace_ipis_per_flush",
                "IPIs sent per reclaim TLB flush.",
                |t| t.ipis,
            ),
        ),
        (
            s.ipi_fanout.candidates.is_some(),
            HIST_FANOUT_CANDIDATES,
            (
                "reclaim_trace_fanout_candidates",
                "CPUs in each flushed batch's cpumask other than the flushing one.",
                |t| t.fanout_candidates,
            ),
        ),
    ];
    for (shown, metric, (name, help, count)) in fanout {
        if shown {
            histogram(o, name, help, w, metric, |ctx, _| {
                count(&totals[ctx]) as f64
            });
        }
    }
}

/// The stale-TLB window (precise tier only): the pageouts that raced their flush, and the two
/// window histograms.
fn stale_window(o: &mut Out, s: &Summary, w: &Window) {
    let name = "reclaim_trace_pageouts_before_flush_total";
    o.family(
        name,
        "counter",
        "Pageouts that began while a writable deferred TLB entry of their folio was \
         unflushed (0 on a correct kernel).",
    );
    o.sample(name, &[], s.totals.pageouts_before_flush);
    window_histogram(
        o,
        "reclaim_trace_unflushed_window_seconds",
        "Per written-out folio: from its unmap to the end of the TLB flush that covered it.",
        w,
        HIST_UNFLUSHED_WINDOW,
    );
    window_histogram(
        o,
        "reclaim_trace_flush_to_pageout_seconds",
        "Per written-out folio: from the end of its TLB flush to its pageout().",
        w,
        HIST_FLUSH_TO_PAGEOUT,
    );
}

/// The probe plan and the build as info metrics.
fn info(o: &mut Out, s: &Summary) {
    o.family(
        "reclaim_trace_probe_info",
        "info",
        "Probe chosen for each signal on this kernel.",
    );
    for r in &s.probe_plan {
        o.sample(
            "reclaim_trace_probe_info",
            &[("signal", &r.signal), ("tier", &r.tier)],
            1,
        );
    }
    o.family(
        "reclaim_trace_build_info",
        "info",
        "Tool version, kernel, probe mode, and how flushes reach other CPUs (flush_reach: ipi, \
         or broadcast on arm64, where fan-out and shootdown series are absent).",
    );
    let flush_reach = if s.ipi_fanout.source == IpiFanout::BROADCAST {
        "broadcast"
    } else {
        "ipi"
    };
    o.sample(
        "reclaim_trace_build_info",
        &[
            ("version", &s.tool_version),
            ("kernel", &s.kernel.release),
            ("probe_mode", &s.kernel.probe_mode),
            ("flush_reach", flush_reach),
        ],
        1,
    );
}

#[cfg(test)]
pub(crate) mod tests;
