//! Summing summaries: the intervals of a recording into the summary of the whole recording.
//!
//! Every count adds up exactly (histograms are bucket counts, totals are counts); ratios, rates,
//! percentiles and means are derived again from the sums, never averaged. Sums saturate at
//! `u64::MAX`: the summaries come from files, whose counts can be anything.

use std::collections::BTreeMap;

use super::summary::{
    BatchFill, CgroupSummary, ContextSummary, Drops, FlushesSeen, IpiFanout, Rates, Summary,
    Totals, TracerInfo, rank_cgroups,
};
use crate::aggregate::{
    HistStats, Histogram,
    hist::{log2_ns_from_buckets, log2_ns_stats},
};

/// Two stale-TLB window histograms (ns, power-of-two buckets) added; one side may lack it.
fn window_sum(a: &Option<HistStats>, b: &Option<HistStats>) -> Option<HistStats> {
    match (a, b) {
        (Some(x), Some(y)) => {
            let mut h = log2_ns_from_buckets(&x.histogram);
            h.add(&log2_ns_from_buckets(&y.histogram));
            Some(log2_ns_stats(&h))
        }
        (x, None) => x.clone(),
        (None, y) => y.clone(),
    }
}

/// `a` and `b` added.
fn add_totals(a: &Totals, b: &Totals) -> Totals {
    let mut sum = a.clone();
    sum.add(b);
    sum
}

fn hist_sum(a: &HistStats, b: &HistStats) -> Histogram {
    let mut h = Histogram::from_bucket_list(&a.histogram);
    h.add(&Histogram::from_bucket_list(&b.histogram));
    h
}

fn opt_hist_sum(
    a: &Option<HistStats>,
    b: &Option<HistStats>,
    exact_mean: Option<f64>,
) -> Option<HistStats> {
    match (a, b) {
        (Some(a), Some(b)) => Some(HistStats::of(&hist_sum(a, b), exact_mean)),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    }
}

/// The flush counts `s`'s run saw, from what it reports: a side without flushes has no
/// flushes-per-folio ratio, a broadcast (arm64) one no immediate flushes.
fn seen(s: &Summary) -> FlushesSeen {
    let flushes = s.per_folio.flushes_per_reclaimed_folio.is_some()
        || s.probe_plan
            .iter()
            .any(|r| r.signal == "flush" && r.tier != "none");
    FlushesSeen {
        flushes,
        immediate: flushes && s.ipi_fanout.source != IpiFanout::BROADCAST,
    }
}

/// `a` followed by `b` (same kernel, same plan): the summary of both windows together.
pub fn merge(a: &Summary, b: &Summary) -> Summary {
    let totals = add_totals(&a.totals, &b.totals);
    let duration_s = a.duration_s + b.duration_s;
    Summary {
        schema: a.schema.clone(),
        tool_version: a.tool_version.clone(),
        kernel: a.kernel.clone(),
        probes: a.probes.clone(),
        probe_plan: a.probe_plan.clone(),
        workload: a.workload.clone().or_else(|| b.workload.clone()),
        duration_s,
        folios_exact: a.folios_exact && b.folios_exact,
        per_folio: totals.per_folio().seen(seen(a)),
        // Only where IPIs were observed: a side that had the figure says so.
        ipis_per_reclaimed_folio: a
            .ipis_per_reclaimed_folio
            .or(b.ipis_per_reclaimed_folio)
            .and_then(|_| totals.ipis_per_reclaimed_folio()),
        rates: Rates::of(&totals, duration_s),
        batch_fill: batch_fill(a, b, &totals),
        ipi_fanout: ipi_fanout(a, b, &totals),
        by_context: by_context(a, b),
        by_cgroup: by_cgroup(a, b),
        remote_shootdowns_by_cpu: add_by_cpu(
            &a.remote_shootdowns_by_cpu,
            &b.remote_shootdowns_by_cpu,
        ),
        pass_duration_us: HistStats::of(&hist_sum(&a.pass_duration_us, &b.pass_duration_us), None),
        pass_folios_in: HistStats::of(&hist_sum(&a.pass_folios_in, &b.pass_folios_in), None),
        pass_pageouts: HistStats::of(&hist_sum(&a.pass_pageouts, &b.pass_pageouts), None),
        unflushed_window_ns: window_sum(&a.unflushed_window_ns, &b.unflushed_window_ns),
        flush_to_pageout_ns: window_sum(&a.flush_to_pageout_ns, &b.flush_to_pageout_ns),
        drops: Drops {
            ringbuf: a.drops.ringbuf.saturating_add(b.drops.ringbuf),
            decode_errors: a.drops.decode_errors.saturating_add(b.drops.decode_errors),
            flush_records: a.drops.flush_records.saturating_add(b.drops.flush_records),
        },
        program_errors: add_errors(&a.program_errors, &b.program_errors),
        anomalies: add_errors(&a.anomalies, &b.anomalies),
        tracer: tracer(a.tracer.as_ref(), b.tracer.as_ref()),
        totals,
    }
}

/// Batch fill is exact only where both sides observed the unmaps.
fn batch_fill(a: &Summary, b: &Summary, totals: &Totals) -> BatchFill {
    let exact = a.batch_fill.exact && b.batch_fill.exact;
    BatchFill {
        exact,
        stats: HistStats::of(
            &hist_sum(&a.batch_fill.stats, &b.batch_fill.stats),
            totals.batch_fill_mean(exact),
        ),
    }
}

/// Fan-out histograms added, from the source `a` used (both sides ran the same plan).
fn ipi_fanout(a: &Summary, b: &Summary, totals: &Totals) -> IpiFanout {
    let (x, y) = (&a.ipi_fanout, &b.ipi_fanout);
    IpiFanout {
        source: x.source.clone(),
        stats: HistStats::of(&hist_sum(&x.stats, &y.stats), totals.fanout_mean(&x.source)),
        flushes_without_ipi: x.flushes_without_ipi.saturating_add(y.flushes_without_ipi),
        candidates: opt_hist_sum(
            &x.candidates,
            &y.candidates,
            totals.fanout_candidates_mean(),
        ),
        ipis: opt_hist_sum(&x.ipis, &y.ipis, totals.ipis_per_flush_mean()),
        broadcast_cpus: x.broadcast_cpus.max(y.broadcast_cpus),
    }
}

/// Contexts of `b` added to those of `a`; each sum's ratios derived again.
fn by_context(a: &Summary, b: &Summary) -> BTreeMap<String, ContextSummary> {
    let mut by_context = a.by_context.clone();
    for (k, v) in &b.by_context {
        let t = match by_context.get(k) {
            Some(x) => add_totals(&x.totals, &v.totals),
            None => v.totals.clone(),
        };
        by_context.insert(k.clone(), ContextSummary::of(t, seen(a)));
    }
    by_context
}

/// Cgroups of both sides by id, their commands and paths combined, ranked again.
fn by_cgroup(a: &Summary, b: &Summary) -> Vec<CgroupSummary> {
    let mut cgroups: BTreeMap<u64, CgroupSummary> = a
        .by_cgroup
        .iter()
        .map(|c| (c.cgroup_id, c.clone()))
        .collect();
    for c in &b.by_cgroup {
        let e = cgroups.entry(c.cgroup_id).or_insert_with(|| CgroupSummary {
            totals: Totals::default(),
            ..c.clone()
        });
        e.totals.add(&c.totals);
        for cmd in &c.commands {
            if !e.commands.contains(cmd) {
                e.commands.push(cmd.clone());
            }
        }
        e.path = e.path.clone().or_else(|| c.path.clone());
        e.per_folio = e.totals.per_folio().seen(seen(a));
    }
    let mut by_cgroup: Vec<CgroupSummary> = cgroups.into_values().collect();
    rank_cgroups(&mut by_cgroup);
    by_cgroup
}

/// Per-CPU counts added; one side may know more CPUs.
fn add_by_cpu(a: &[u64], b: &[u64]) -> Vec<u64> {
    (0..a.len().max(b.len()))
        .map(|i| {
            let (x, y) = (a.get(i).copied(), b.get(i).copied());
            x.unwrap_or(0).saturating_add(y.unwrap_or(0))
        })
        .collect()
}

fn add_errors(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut sum = a.clone();
    for (k, v) in b {
        let e = sum.entry(k.clone()).or_default();
        *e = e.saturating_add(*v);
    }
    sum
}

/// The tracer over both windows: load time from the first, records added, and the figures
/// that are running totals (CPU, traced time, program statistics) from the later one.
fn tracer(a: Option<&TracerInfo>, b: Option<&TracerInfo>) -> Option<TracerInfo> {
    match (a, b) {
        (Some(x), Some(y)) => Some(TracerInfo {
            load_attach_s: x.load_attach_s,
            cpu_s: y.cpu_s.or(x.cpu_s),
            traced_s: y.traced_s.max(x.traced_s),
            pass_records: x.pass_records.saturating_add(y.pass_records),
            hot_events: y.hot_events.or(x.hot_events),
            programs: y.programs.clone().or_else(|| x.programs.clone()),
        }),
        (x, y) => x.or(y).cloned(),
    }
}

/// The sum of a non-empty list of consecutive summaries.
pub fn merge_all<'a>(mut it: impl Iterator<Item = &'a Summary>) -> Option<Summary> {
    let first = it.next()?.clone();
    Some(it.fold(first, |acc, s| merge(&acc, s)))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        aggregate::hist::{Bucket, Le},
        export::summary::tests::anon_summary,
    };

    #[test]
    fn two_halves_sum_to_the_whole() {
        let a = anon_summary();
        let m = merge(&a, &a);
        assert_eq!(m.totals.flushes, 2 * a.totals.flushes);
        assert_eq!(m.totals.folios_reclaimed, 2 * a.totals.folios_reclaimed);
        assert_eq!(m.duration_s, 2.0 * a.duration_s);
        // Ratios and rates are derived again, so they do not change for identical halves.
        assert_eq!(
            m.per_folio.flushes_per_reclaimed_folio,
            a.per_folio.flushes_per_reclaimed_folio
        );
        assert_eq!(m.rates, a.rates);
        assert_eq!(m.ipi_fanout.stats.count, 2 * a.ipi_fanout.stats.count);
        assert_eq!(m.ipi_fanout.stats.p50, a.ipi_fanout.stats.p50);
        assert_eq!(m.ipi_fanout.stats.mean, a.ipi_fanout.stats.mean);
        assert_eq!(m.batch_fill.stats.count, 2 * a.batch_fill.stats.count);
        assert_eq!(m.by_context["memcg"].totals.passes, 20);
        assert_eq!(
            m.by_cgroup[0].totals.folios_reclaimed,
            2 * a.by_cgroup[0].totals.folios_reclaimed
        );
        assert_eq!(m.remote_shootdowns_by_cpu, vec![300, 280]);
        assert_eq!(
            merge_all([a.clone(), a.clone(), a.clone()].iter())
                .unwrap()
                .totals
                .passes,
            36
        );
        assert!(merge_all(std::iter::empty()).is_none());
    }

    /// Counts that add up past `u64::MAX` (a corrupt or crafted recording; an overflow panic
    /// with overflow checks on, found fuzzing the recording reader) saturate.
    #[test]
    fn sums_past_the_maximum_saturate() {
        let mut a = anon_summary();
        a.totals.passes = u64::MAX;
        a.drops.ringbuf = u64::MAX;
        a.ipi_fanout.flushes_without_ipi = u64::MAX;
        a.remote_shootdowns_by_cpu = vec![u64::MAX];
        a.program_errors.insert("x".into(), u64::MAX);
        a.pass_duration_us.histogram = vec![
            Bucket {
                le: Le::Value(1),
                count: u64::MAX,
            },
            Bucket {
                le: Le::Value(1),
                count: 1,
            },
            Bucket {
                le: Le::Value(2),
                count: 1,
            },
        ];
        a.unflushed_window_ns = Some(a.pass_duration_us.clone());
        if let Some(t) = a.tracer.as_mut() {
            t.pass_records = u64::MAX;
        }
        let m = merge(&a, &a);
        assert_eq!(m.totals.passes, u64::MAX);
        assert_eq!(m.drops.ringbuf, u64::MAX);
        assert_eq!(m.ipi_fanout.flushes_without_ipi, u64::MAX);
        assert_eq!(m.remote_shootdowns_by_cpu[0], u64::MAX);
        assert_eq!(m.program_errors["x"], u64::MAX);
        assert_eq!(m.pass_duration_us.count, u64::MAX);
        assert_eq!(m.unflushed_window_ns.unwrap().count, u64::MAX);
        assert!(m.tracer.is_none_or(|t| t.pass_records == u64::MAX));
    }
}
