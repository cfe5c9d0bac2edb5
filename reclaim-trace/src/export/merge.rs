//! Summing summaries: the intervals of a recording into the summary of the whole recording.
//!
//! Every count adds up exactly (histograms are bucket counts, totals are counts); ratios, rates,
//! percentiles and means are derived again from the sums, never averaged.

use std::collections::BTreeMap;

use serde::{Serialize, de::DeserializeOwned};

use super::summary::{
    BatchFill, CgroupSummary, ContextSummary, IpiFanout, Rates, Summary, Totals, rank_cgroups,
    ratio,
};
use crate::aggregate::{
    HistStats, Histogram,
    hist::{log2_ns_from_buckets, log2_ns_stats},
};

/// Add every integer field of `b` to `a` (both serialise to flat objects of integers).
fn add_counts<T: Serialize + DeserializeOwned + Default>(a: &T, b: &T) -> T {
    let (Ok(serde_json::Value::Object(mut x)), Ok(serde_json::Value::Object(y))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return T::default();
    };
    for (k, v) in y {
        let sum = x.get(&k).and_then(|v| v.as_u64()).unwrap_or(0) + v.as_u64().unwrap_or(0);
        x.insert(k, sum.into());
    }
    serde_json::from_value(serde_json::Value::Object(x)).unwrap_or_default()
}

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

pub fn add_totals(a: &Totals, b: &Totals) -> Totals {
    add_counts(a, b)
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

/// `a` followed by `b` (same kernel, same plan): the summary of both windows together.
pub fn merge(a: &Summary, b: &Summary) -> Summary {
    let totals = add_totals(&a.totals, &b.totals);
    let duration_s = a.duration_s + b.duration_s;
    let flushes = totals.deferred_flushes;
    let per_s = |v: u64| {
        if duration_s > 0.0 {
            v as f64 / duration_s
        } else {
            0.0
        }
    };

    let mut by_context: BTreeMap<String, ContextSummary> = a.by_context.clone();
    for (k, v) in &b.by_context {
        let t = match by_context.get(k) {
            Some(x) => add_totals(&x.totals, &v.totals),
            None => v.totals.clone(),
        };
        by_context.insert(
            k.clone(),
            ContextSummary {
                per_folio: t.per_folio(),
                totals: t,
            },
        );
    }

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
        e.totals = add_totals(&e.totals, &c.totals);
        for cmd in &c.commands {
            if !e.commands.contains(cmd) {
                e.commands.push(cmd.clone());
            }
        }
        e.path = e.path.clone().or_else(|| c.path.clone());
        e.per_folio = e.totals.per_folio();
    }
    let mut by_cgroup: Vec<CgroupSummary> = cgroups.into_values().collect();
    rank_cgroups(&mut by_cgroup);

    let victims_len = a
        .remote_shootdowns_by_cpu
        .len()
        .max(b.remote_shootdowns_by_cpu.len());
    let remote_shootdowns_by_cpu = (0..victims_len)
        .map(|i| {
            a.remote_shootdowns_by_cpu.get(i).copied().unwrap_or(0)
                + b.remote_shootdowns_by_cpu.get(i).copied().unwrap_or(0)
        })
        .collect();
    let mut program_errors = a.program_errors.clone();
    for (k, v) in &b.program_errors {
        *program_errors.entry(k.clone()).or_default() += v;
    }

    let fill_exact = a.batch_fill.exact && b.batch_fill.exact;
    Summary {
        schema: a.schema.clone(),
        tool_version: a.tool_version.clone(),
        kernel: a.kernel.clone(),
        probes: a.probes.clone(),
        probe_plan: a.probe_plan.clone(),
        workload: a.workload.clone().or_else(|| b.workload.clone()),
        duration_s,
        folios_exact: a.folios_exact && b.folios_exact,
        per_folio: totals.per_folio(),
        ipis_per_reclaimed_folio: a
            .ipis_per_reclaimed_folio
            .or(b.ipis_per_reclaimed_folio)
            .and_then(|_| ratio(totals.ipis, totals.folios_reclaimed)),
        rates: Rates {
            folios_reclaimed_per_s: per_s(totals.folios_reclaimed),
            flushes_per_s: per_s(totals.flushes),
            ipis_per_s: per_s(totals.ipis),
            passes_per_s: per_s(totals.passes),
        },
        batch_fill: BatchFill {
            exact: fill_exact,
            stats: HistStats::of(
                &hist_sum(&a.batch_fill.stats, &b.batch_fill.stats),
                if fill_exact {
                    ratio(totals.batched_unmaps, flushes)
                } else {
                    None
                },
            ),
        },
        ipi_fanout: IpiFanout {
            source: a.ipi_fanout.source.clone(),
            stats: HistStats::of(
                &hist_sum(&a.ipi_fanout.stats, &b.ipi_fanout.stats),
                match a.ipi_fanout.source.as_str() {
                    "csd_queue_cpu" => ratio(totals.fanout_targets, flushes),
                    "batch_cpumask" => ratio(totals.fanout_candidates, flushes),
                    _ => None,
                },
            ),
            flushes_without_ipi: a.ipi_fanout.flushes_without_ipi
                + b.ipi_fanout.flushes_without_ipi,
            candidates: opt_hist_sum(
                &a.ipi_fanout.candidates,
                &b.ipi_fanout.candidates,
                ratio(totals.fanout_candidates, flushes),
            ),
            ipis: opt_hist_sum(
                &a.ipi_fanout.ipis,
                &b.ipi_fanout.ipis,
                ratio(totals.ipis, flushes),
            ),
        },
        by_context,
        by_cgroup,
        remote_shootdowns_by_cpu,
        pass_duration_us: HistStats::of(&hist_sum(&a.pass_duration_us, &b.pass_duration_us), None),
        pass_folios_in: HistStats::of(&hist_sum(&a.pass_folios_in, &b.pass_folios_in), None),
        pass_pageouts: HistStats::of(&hist_sum(&a.pass_pageouts, &b.pass_pageouts), None),
        unflushed_window_ns: window_sum(&a.unflushed_window_ns, &b.unflushed_window_ns),
        flush_to_pageout_ns: window_sum(&a.flush_to_pageout_ns, &b.flush_to_pageout_ns),
        drops: super::summary::Drops {
            ringbuf: a.drops.ringbuf + b.drops.ringbuf,
            decode_errors: a.drops.decode_errors + b.drops.decode_errors,
            flush_records: a.drops.flush_records + b.drops.flush_records,
        },
        program_errors,
        tracer: match (&a.tracer, &b.tracer) {
            (Some(x), Some(y)) => Some(super::summary::TracerInfo {
                load_attach_s: x.load_attach_s,
                cpu_s: y.cpu_s.or(x.cpu_s),
                traced_s: y.traced_s.max(x.traced_s),
                pass_records: x.pass_records + y.pass_records,
                hot_events: y.hot_events.or(x.hot_events),
                programs: y.programs.clone().or_else(|| x.programs.clone()),
            }),
            (x, y) => x.clone().or_else(|| y.clone()),
        },
        totals,
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
    use crate::export::summary::tests::anon_summary;

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
}
