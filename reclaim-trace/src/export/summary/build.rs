//! The summary of a window: its figures derived from the kernel's counters and histograms, the
//! per-pass records and the probe plan (what this kernel could observe).

use std::collections::BTreeMap;

use reclaim_trace_common::{
    CNT_DIRTY_FLUSH_WITHOUT_PAGEOUT, CNT_FLUSH_RECORD_DROPS, CNT_OTHER_FLUSHES, CNT_PAGEOUT_CALLS,
    CNT_PAGEOUTS_BEFORE_FLUSH, CNT_PAGEOUTS_NOT_UNMAPPED, CNT_PAGEOUTS_OUTSIDE,
    CNT_PAGEOUTS_READONLY_PENDING, CNT_PAGEOUTS_UNDEFERRED, CNT_PASS_END_WITHOUT_START,
    CNT_REMOTE_SHOOTDOWNS_TRACED, CNT_REMOTE_WRONG_CPU, CNT_RINGBUF_DROPS, CNT_UNMATCHED_PAGES,
    CNT_UNMATCHED_PASSES, CNT_WINDOW_UNKNOWN, HIST_BATCH_FILL, HIST_FANOUT_CANDIDATES,
    HIST_FANOUT_TARGETS, HIST_FLUSH_TO_PAGEOUT, HIST_IPIS, HIST_UNFLUSHED_WINDOW, N_CTX,
};

use super::{
    BatchFill, CgroupSummary, ContextSummary, Drops, FlushesSeen, IpiFanout, KernelInfo, PlanRow,
    Rates, SCHEMA, Summary, Totals, TracerInfo, WorkloadInfo, rank_cgroups,
};
use crate::{
    aggregate::{CONTEXT_NAMES, HistStats, KernelSnapshot, Window, hist::log2_ns_stats},
    plan::{FlushReach, Plan, Signal, Tier},
};

/// What a summary needs besides the window.
pub struct SummaryContext<'a> {
    pub kernel: KernelInfo,
    pub plan: &'a Plan,
    pub workload: Option<WorkloadInfo>,
    pub cgroup_paths: &'a BTreeMap<u64, String>,
    pub tracer: Option<TracerInfo>,
}

/// The plan has a probe for `signal`.
fn observed(plan: &Plan, signal: Signal) -> bool {
    plan.signal(signal).tier != Tier::None
}

/// The flush counts the plan sees (immediate flushes emit an event only where a flush reaches
/// other CPUs by IPI).
pub fn flushes_seen(plan: &Plan) -> FlushesSeen {
    let flushes = observed(plan, Signal::Flush);
    FlushesSeen {
        flushes,
        immediate: flushes && plan.flush_reach == FlushReach::Ipi,
    }
}

pub fn build(w: &Window, cx: &SummaryContext<'_>) -> Summary {
    let k = &w.kernel;
    let by_cpu = remote_shootdowns_by_cpu(k, cx.plan);
    let totals = window_totals(k, &by_cpu);
    // IPIs are counted while a flush is open: without flushes there is nothing to count.
    let have_ipis = observed(cx.plan, Signal::Ipis) && observed(cx.plan, Signal::Flush);
    let have_window = observed(cx.plan, Signal::StaleTlbWindow);
    let window = |metric| have_window.then(|| log2_ns_stats(&k.hist_reclaim(metric)));
    Summary {
        schema: SCHEMA.to_string(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel: cx.kernel.clone(),
        probes: cx
            .plan
            .signals
            .iter()
            .map(|s| (s.signal.name().to_string(), s.source.clone()))
            .collect(),
        probe_plan: PlanRow::rows(cx.plan),
        workload: cx.workload.clone(),
        duration_s: w.duration_s,
        folios_exact: observed(cx.plan, Signal::Folios) && totals.unmatched_pages == 0,
        per_folio: totals.per_folio().seen(flushes_seen(cx.plan)),
        ipis_per_reclaimed_folio: have_ipis
            .then(|| totals.ipis_per_reclaimed_folio())
            .flatten(),
        rates: Rates::of(&totals, w.duration_s),
        batch_fill: batch_fill(k, cx.plan, &totals),
        ipi_fanout: ipi_fanout(k, cx, &totals),
        by_context: by_context(k, flushes_seen(cx.plan)),
        by_cgroup: by_cgroup(w, cx),
        remote_shootdowns_by_cpu: by_cpu,
        pass_duration_us: HistStats::of(&w.passes.pass_duration_us, None),
        pass_folios_in: HistStats::of(&w.passes.pass_folios_in, None),
        pass_pageouts: HistStats::of(&w.passes.pass_pageouts, None),
        unflushed_window_ns: window(HIST_UNFLUSHED_WINDOW),
        flush_to_pageout_ns: window(HIST_FLUSH_TO_PAGEOUT),
        drops: Drops {
            ringbuf: k.counter(CNT_RINGBUF_DROPS),
            decode_errors: w.passes.decode_errors,
            flush_records: k.counter(CNT_FLUSH_RECORD_DROPS),
        },
        program_errors: k.program_errors(),
        anomalies: k.anomalies(),
        tracer: tracer(w, cx),
        totals,
    }
}

/// Remote shootdowns each CPU received: counted from the csd targets where those are
/// observed, else from `tlb_flush` reason 1 on the by_cpu (which loses hardirq events under
/// BPF nesting, so it is only the fallback).
fn remote_shootdowns_by_cpu(k: &KernelSnapshot, plan: &Plan) -> Vec<u64> {
    if observed(plan, Signal::FanoutTargets) {
        k.remote_shootdowns_by_cpu.clone()
    } else {
        k.remote_shootdowns_traced_by_cpu.clone()
    }
}

/// The pass totals of all reclaim contexts, with the counters kept outside passes.
fn window_totals(k: &KernelSnapshot, by_cpu: &[u64]) -> Totals {
    Totals {
        other_flushes: k.counter(CNT_OTHER_FLUSHES),
        remote_shootdowns: by_cpu.iter().sum(),
        remote_shootdowns_traced: k.counter(CNT_REMOTE_SHOOTDOWNS_TRACED)
            + k.counter(CNT_REMOTE_WRONG_CPU),
        pageouts_outside_reclaim: k.counter(CNT_PAGEOUTS_OUTSIDE),
        passes_without_start: k.counter(CNT_PASS_END_WITHOUT_START),
        dirty_flushes_without_pageout: k.counter(CNT_DIRTY_FLUSH_WITHOUT_PAGEOUT),
        pageouts_before_flush: k.counter(CNT_PAGEOUTS_BEFORE_FLUSH),
        pageouts_undeferred: k.counter(CNT_PAGEOUTS_UNDEFERRED),
        pageouts_readonly_pending: k.counter(CNT_PAGEOUTS_READONLY_PENDING),
        pageouts_not_unmapped: k.counter(CNT_PAGEOUTS_NOT_UNMAPPED),
        window_unknown: k.counter(CNT_WINDOW_UNKNOWN),
        pageout_calls: k.counter(CNT_PAGEOUT_CALLS),
        unmatched_passes: k.counter(CNT_UNMATCHED_PASSES),
        unmatched_pages: k.counter(CNT_UNMATCHED_PAGES),
        ..Totals::of_passes(&k.all_contexts())
    }
}

/// Folios per deferred flush; its mean only where the unmaps were observed.
fn batch_fill(k: &KernelSnapshot, plan: &Plan, totals: &Totals) -> BatchFill {
    let exact = plan.batch_fill_exact;
    BatchFill {
        exact,
        stats: HistStats::of(
            &k.hist_reclaim(HIST_BATCH_FILL),
            totals.batch_fill_mean(exact),
        ),
    }
}

/// CPUs per deferred flush: the csd targets where observed, else the batch cpumask's
/// candidates (below the tracepoint tier), else nothing.
fn ipi_fanout(k: &KernelSnapshot, cx: &SummaryContext<'_>, totals: &Totals) -> IpiFanout {
    let plan = cx.plan;
    let ipis = observed(plan, Signal::Ipis)
        .then(|| HistStats::of(&k.hist_reclaim(HIST_IPIS), totals.ipis_per_flush_mean()));
    if plan.flush_reach == FlushReach::Broadcast {
        // No targets or candidates exist: the histograms the kernel side keeps for them hold
        // only zeros, which are not a measurement of anything.
        return IpiFanout {
            source: IpiFanout::BROADCAST.to_string(),
            stats: HistStats::of(&Default::default(), None),
            flushes_without_ipi: totals.flushes_without_ipi,
            candidates: None,
            ipis,
            broadcast_cpus: Some(cx.kernel.online_cpus),
        };
    }
    let candidates = (plan.signal(Signal::Flush).tier < Tier::Tracepoint).then(|| {
        HistStats::of(
            &k.hist_reclaim(HIST_FANOUT_CANDIDATES),
            totals.fanout_candidates_mean(),
        )
    });
    let (source, stats) = if observed(plan, Signal::FanoutTargets) {
        (
            IpiFanout::TARGETS,
            HistStats::of(
                &k.hist_reclaim(HIST_FANOUT_TARGETS),
                totals.fanout_mean(IpiFanout::TARGETS),
            ),
        )
    } else if let Some(c) = &candidates {
        (IpiFanout::CANDIDATES, c.clone())
    } else {
        (IpiFanout::NONE, HistStats::of(&Default::default(), None))
    };
    IpiFanout {
        source: source.to_string(),
        stats,
        flushes_without_ipi: totals.flushes_without_ipi,
        candidates,
        ipis,
        broadcast_cpus: None,
    }
}

/// Every reclaim context, passes or not (the JSON lists them all).
fn by_context(k: &KernelSnapshot, seen: FlushesSeen) -> BTreeMap<String, ContextSummary> {
    (0..N_CTX as usize)
        .map(|i| {
            (
                CONTEXT_NAMES[i].to_string(),
                ContextSummary::of(Totals::of_passes(&k.totals[i]), seen),
            )
        })
        .collect()
}

/// The cgroups that reclaimed, from the per-pass records, ranked.
fn by_cgroup(w: &Window, cx: &SummaryContext<'_>) -> Vec<CgroupSummary> {
    let mut by_cgroup: Vec<CgroupSummary> = w
        .passes
        .by_cgroup()
        .into_iter()
        .map(|(id, (counts, commands))| {
            let t = Totals::of_passes(&counts);
            CgroupSummary {
                cgroup_id: id,
                path: cx.cgroup_paths.get(&id).cloned(),
                commands,
                per_folio: t.per_folio().seen(flushes_seen(cx.plan)),
                totals: t,
            }
        })
        .collect();
    rank_cgroups(&mut by_cgroup);
    by_cgroup
}

/// The tracer's figures, with this window's records and its hot programs' runs.
fn tracer(w: &Window, cx: &SummaryContext<'_>) -> Option<TracerInfo> {
    cx.tracer.clone().map(|t| TracerInfo {
        pass_records: w.passes.pass_records,
        hot_events: t.programs.as_ref().map(|p| {
            p.iter()
                .filter(|p| crate::programs::is_hot(&p.name))
                .map(|p| p.run_count)
                .sum()
        }),
        ..t
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        aggregate::Aggregator,
        export::summary::tests::{anon_summary, kernel_info},
        plan::{Failures, ProbeMode, plan, tests::FakeKernel},
    };

    #[test]
    fn headline_figures_come_from_the_kernel_totals() {
        let s = anon_summary();
        assert_eq!(s.schema, SCHEMA);
        assert_eq!(s.totals.flushes, 300);
        assert_eq!(s.totals.folios_reclaimed, 350);
        assert_eq!(s.totals.other_flushes, 3);
        let r = s.per_folio.flushes_per_reclaimed_folio.unwrap();
        assert!((r - 300.0 / 350.0).abs() < 1e-12);
        assert_eq!(
            s.by_context["memcg"].per_folio.flushes_per_reclaimed_folio,
            Some(1.0)
        );
        assert_eq!(
            s.by_context["reclaim_pages"]
                .per_folio
                .flushes_per_reclaimed_folio,
            Some(0.0)
        );
        assert_eq!(
            s.by_context["kswapd"].per_folio.flushes_per_reclaimed_folio,
            None
        );
        assert_eq!(s.rates.folios_reclaimed_per_s, 175.0);
        assert_eq!(s.ipi_fanout.source, "csd_queue_cpu");
        assert_eq!(s.ipi_fanout.stats.p50, Some(1));
        assert_eq!(s.ipi_fanout.stats.mean, Some(290.0 / 300.0));
        assert_eq!(s.ipi_fanout.flushes_without_ipi, 10);
        assert!(
            s.ipi_fanout.candidates.is_none(),
            "no cpumask in the tracepoint tier"
        );
        assert!(!s.batch_fill.exact);
        assert_eq!(s.batch_fill.stats.p99, Some(1));
        assert_eq!(s.totals.remote_shootdowns, 290, "victims from csd targets");
        assert_eq!(s.totals.remote_shootdowns_traced, 260);
        assert_eq!(s.by_cgroup.len(), 1);
        assert_eq!(s.by_cgroup[0].path.as_deref(), Some("/reclaim-trace-1234"));
        assert_eq!(s.by_cgroup[0].commands, vec!["rt-anon-0".to_string()]);
        assert_eq!(s.pass_duration_us.p50, Some(40));
        assert_eq!(
            s.probes["flush"],
            "raw_tracepoint:tlb:tlb_flush (reason 4 pages=-1, reason 2)"
        );
    }

    #[test]
    fn empty_window_has_nulls_not_panics() {
        let facts = FakeKernel::host_6_18().facts();
        let p = plan(&facts, ProbeMode::Tracepoint, &Failures::default()).unwrap();
        let w = Aggregator::new(KernelSnapshot::empty(2), 0.0).window();
        let s = build(
            &w,
            &SummaryContext {
                kernel: kernel_info(),
                plan: &p,
                workload: None,
                cgroup_paths: &BTreeMap::new(),
                tracer: None,
            },
        );
        assert_eq!(s.per_folio.flushes_per_reclaimed_folio, None);
        assert_eq!(s.batch_fill.stats.p50, None);
        assert_eq!(s.rates.flushes_per_s, 0.0);
        let text = crate::export::text::render(&s);
        assert!(
            text.contains("n/a") && text.contains("(no reclaim observed)"),
            "{text}"
        );
    }
}
