//! The summary: the JSON contract `reclaim-trace/summary/v2` (DESIGN.md §7) and the model the
//! text output, the dashboard and the exporters read.

use std::collections::BTreeMap;

use reclaim_trace_common::{
    CNT_DIRTY_FLUSH_WITHOUT_PAGEOUT, CNT_FLUSH_RECORD_DROPS, CNT_OTHER_FLUSHES, CNT_PAGEOUT_CALLS,
    CNT_PAGEOUTS_BEFORE_FLUSH, CNT_PAGEOUTS_NOT_UNMAPPED, CNT_PAGEOUTS_OUTSIDE,
    CNT_PAGEOUTS_READONLY_PENDING, CNT_PAGEOUTS_UNDEFERRED, CNT_PASS_END_WITHOUT_START,
    CNT_REMOTE_SHOOTDOWNS_TRACED, CNT_REMOTE_WRONG_CPU, CNT_RINGBUF_DROPS, CNT_UNMATCHED_PAGES,
    CNT_UNMATCHED_PASSES, CNT_WINDOW_UNKNOWN, HIST_BATCH_FILL, HIST_FANOUT_CANDIDATES,
    HIST_FANOUT_TARGETS, HIST_FLUSH_TO_PAGEOUT, HIST_IPIS, HIST_UNFLUSHED_WINDOW, N_CTX,
    PassCounts,
};
use serde::{Deserialize, Serialize};

use crate::{
    aggregate::{CONTEXT_NAMES, HistStats, Window, hist::log2_ns_stats},
    plan::{Plan, Signal, Tier},
};

pub const SCHEMA: &str = "reclaim-trace/summary/v2";
/// The schema before v2; files in it are read and converted ([`Summary::upgrade`]).
pub const SCHEMA_V1: &str = "reclaim-trace/summary/v1";

/// Totals over a window. `flushes` are all reclaim flushes: deferred (dirty + batch: they
/// send the IPIs, and batching patches change them) plus immediate (local, no IPI);
/// `other_flushes` happened outside reclaim and are in no ratio.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub passes: u64,
    pub folios_in: u64,
    /// Folios the passes freed (see `Summary::folios_exact`).
    pub folios_reclaimed: u64,
    pub pages_reclaimed: u64,
    pub pages_scanned: u64,
    pub pageouts: u64,
    /// Deferred + immediate.
    pub flushes: u64,
    /// Dirty + batch: flushes of the task's deferred-flush batch (`tlb_ubc`). Absent from v1
    /// files (`upgrade` fills it in).
    #[serde(default)]
    pub deferred_flushes: u64,
    pub dirty_flushes: u64,
    pub batch_flushes: u64,
    pub other_flushes: u64,
    /// Flushes `try_to_unmap_one` could not defer (`unbatched_flushes` in schema v1).
    #[serde(alias = "unbatched_flushes", default)]
    pub immediate_flushes: u64,
    pub ipis: u64,
    pub fanout_targets: u64,
    pub fanout_candidates: u64,
    pub flushes_without_ipi: u64,
    pub batched_unmaps: u64,
    pub dirty_flush_calls: u64,
    /// Remote TLB flushes received by any CPU (all flushes, reclaim or not).
    pub remote_shootdowns: u64,
    /// The same seen as `tlb_flush` reason 1/5 on the victim (undercounts under BPF nesting).
    pub remote_shootdowns_traced: u64,
    pub pageouts_outside_reclaim: u64,
    pub passes_without_start: u64,
    /// Dirty flushes not followed by a pageout in their pass (precise tier): pageout() kept
    /// or re-activated the folio. Counted for all contexts together (0 in `by_context`);
    /// absent from recordings made before it existed.
    #[serde(default)]
    pub dirty_flushes_without_pageout: u64,
    /// Stale-TLB window (precise tier): pageouts that began while a writable entry of their
    /// folio's deferred flush was still unflushed. 0 on a correct kernel.
    #[serde(default)]
    pub pageouts_before_flush: u64,
    /// Pageouts of folios whose unmap flushed at once (nothing deferred: no window).
    #[serde(default)]
    pub pageouts_undeferred: u64,
    /// Pageouts that began with their deferred flush still pending but no writable entry in
    /// it: read-only stale entries, which cannot race the write.
    #[serde(default)]
    pub pageouts_readonly_pending: u64,
    /// Pageouts of folios the pass did not unmap into its batch (an earlier pass did and its
    /// pageout() kept the folio, or their owner dropped the mapping while reclaim held them):
    /// no window of this pass to measure.
    #[serde(default)]
    pub pageouts_not_unmapped: u64,
    /// Pageouts whose covering flush was followed by another before them (its time is not
    /// kept): not in the window histograms.
    #[serde(default)]
    pub window_unknown: u64,
    /// `pageout()` calls in reclaim passes, written out or not (precise tier with the
    /// stale-TLB window; 0 elsewhere): `pageout_calls - pageouts` folios were handed to
    /// pageout() after their dirty flush and kept.
    #[serde(default)]
    pub pageout_calls: u64,
    /// Passes whose freed folios' pages did not add up to the kernel's reclaimed pages, and
    /// those pages (see `Summary::folios_exact`). All contexts together (0 in `by_context`).
    #[serde(default)]
    pub unmatched_passes: u64,
    #[serde(default)]
    pub unmatched_pages: u64,
}

impl Totals {
    /// Totals of passes (the kernel's per-context sums); the out-of-pass counters stay 0.
    pub fn of_passes(c: &PassCounts) -> Totals {
        Totals {
            passes: c.passes,
            folios_in: c.folios_in,
            folios_reclaimed: c.folios_reclaimed,
            pages_reclaimed: c.pages_reclaimed,
            pages_scanned: c.pages_scanned,
            pageouts: c.pageouts,
            flushes: c.dirty_flushes + c.batch_flushes + c.immediate_flushes,
            deferred_flushes: c.dirty_flushes + c.batch_flushes,
            dirty_flushes: c.dirty_flushes,
            batch_flushes: c.batch_flushes,
            immediate_flushes: c.immediate_flushes,
            ipis: c.ipis,
            fanout_targets: c.fanout_targets,
            fanout_candidates: c.fanout_candidates,
            flushes_without_ipi: c.flushes_without_ipi,
            batched_unmaps: c.batched_unmaps,
            dirty_flush_calls: c.dirty_flush_calls,
            ..Totals::default()
        }
    }

    /// All reclaim flushes per reclaimed folio, and its two parts.
    pub fn per_folio(&self) -> PerFolio {
        PerFolio {
            flushes_per_reclaimed_folio: ratio(self.flushes, self.folios_reclaimed),
            deferred_flushes_per_reclaimed_folio: ratio(
                self.deferred_flushes,
                self.folios_reclaimed,
            ),
            immediate_flushes_per_reclaimed_folio: ratio(
                self.immediate_flushes,
                self.folios_reclaimed,
            ),
        }
    }

    pub fn flushes_per_reclaimed_folio(&self) -> Option<f64> {
        ratio(self.flushes, self.folios_reclaimed)
    }
}

/// Flushes per reclaimed folio: all of them, and the deferred and immediate parts (which add
/// up to the first). Flattened into the summary, each context and each cgroup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PerFolio {
    pub flushes_per_reclaimed_folio: Option<f64>,
    #[serde(default)]
    pub deferred_flushes_per_reclaimed_folio: Option<f64>,
    #[serde(default)]
    pub immediate_flushes_per_reclaimed_folio: Option<f64>,
}

pub fn ratio(num: u64, den: u64) -> Option<f64> {
    (den != 0).then(|| num as f64 / den as f64)
}

/// One reclaim context: the same totals, and its own ratio.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextSummary {
    #[serde(flatten)]
    pub totals: Totals,
    #[serde(flatten)]
    pub per_folio: PerFolio,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelInfo {
    pub release: String,
    pub machine: String,
    /// `fentry`, `kprobe`, `tracepoint` or `mixed`.
    pub probe_mode: String,
    pub online_cpus: u32,
    pub possible_cpus: u32,
    pub hypervisor: Option<String>,
    pub lru_gen: Option<bool>,
    pub invlpgb: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanRow {
    pub signal: String,
    pub tier: String,
    pub source: String,
    pub note: Option<String>,
}

impl PlanRow {
    pub fn rows(plan: &Plan) -> Vec<PlanRow> {
        plan.signals
            .iter()
            .map(|s| PlanRow {
                signal: s.signal.name().to_string(),
                tier: s.tier.as_str().to_string(),
                source: s.source.clone(),
                note: s.note.clone(),
            })
            .collect()
    }
}

/// Folios per flush.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchFill {
    /// False in the tracepoint tier, where the unmaps are not observable and each pass's
    /// reclaimed folios are shared among its flushes.
    pub exact: bool,
    #[serde(flatten)]
    pub stats: HistStats,
}

/// CPUs per flush.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IpiFanout {
    /// What the main histogram counts: `csd_queue_cpu` (CPUs really sent the flush),
    /// `batch_cpumask` (candidates, when csd is unavailable) or `none`.
    pub source: String,
    #[serde(flatten)]
    pub stats: HistStats,
    /// Flushes that reached no other CPU (local-only; INVLPGB or hypercall flushes).
    pub flushes_without_ipi: u64,
    /// CPUs in the batch cpumask other than the flushing one (precise tier only).
    pub candidates: Option<HistStats>,
    /// IPIs sent per flush (a target whose csd queue was not empty needs none).
    pub ipis: Option<HistStats>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CgroupSummary {
    pub cgroup_id: u64,
    /// Path below the memory controller's mount, when it could be resolved.
    pub path: Option<String>,
    pub commands: Vec<String>,
    #[serde(flatten)]
    pub totals: Totals,
    #[serde(flatten)]
    pub per_folio: PerFolio,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Drops {
    /// Pass records lost to a full ring buffer (their counts are still in the totals).
    pub ringbuf: u64,
    pub decode_errors: u64,
    pub flush_records: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub folios_reclaimed_per_s: f64,
    pub flushes_per_s: f64,
    pub ipis_per_s: f64,
    pub passes_per_s: f64,
}

/// What the built-in workload was (when one ran).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    pub kind: String,
    pub threads: u32,
    /// Processes the threads ran in: 1, or `threads` with `--procs` (single-threaded ones).
    #[serde(default = "one")]
    pub processes: u32,
    /// `thp`: the folio sizes (KiB) the kernel's settings allow for its madvised memory,
    /// largest first.
    #[serde(default)]
    pub thp_sizes_kb: Vec<u64>,
    pub size_bytes: u64,
    pub memcg_limit_bytes: u64,
    pub cgroup: String,
    pub cgroup_version: u32,
    pub swap: String,
    /// What it achieved, read from its process when it stopped (absent if it could not say).
    #[serde(default)]
    pub result: Option<WorkloadResult>,
}

fn one() -> u32 {
    1
}

/// What the built-in workload did: its throughput (the figure a patch's cover letter gives,
/// e.g. stress-ng's bogo ops/s) and the check of every word it read back. Under emulation
/// (qemu TCG) the rates are not hardware rates; the flush and IPI counts are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadResult {
    pub elapsed_s: f64,
    pub pages_written: u64,
    pub pages_read: u64,
    /// Pages written or read per second, all threads together.
    pub pages_per_s: f64,
    pub pages_per_s_by_thread: Vec<f64>,
    /// Pages whose word was read back and compared with what was written one sweep before.
    pub pages_verified: u64,
    pub corrupt_pages: u64,
    pub first_corruption: Option<String>,
}

impl WorkloadResult {
    /// The error to end the run with when a page read back held data the workload had not
    /// written.
    pub fn corruption(&self) -> Option<String> {
        (self.corrupt_pages > 0).then(|| {
            format!(
                "the workload read back {} of {} verified pages with data it had not written \
                 (first: {}): the kernel lost writes to memory under reclaim; keep the console \
                 log and report it as a kernel bug",
                self.corrupt_pages,
                self.pages_verified,
                self.first_corruption.as_deref().unwrap_or("?")
            )
        })
    }
}

/// Run time and count of one BPF program (kernel BPF statistics).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramStat {
    pub name: String,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// The tracer's own figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TracerInfo {
    /// Wall time to load the programs and attach them.
    pub load_attach_s: f64,
    /// User + system CPU of the tracer process while tracing (after attach), and for how long
    /// it traced: its own cost in userspace.
    #[serde(default)]
    pub cpu_s: Option<f64>,
    #[serde(default)]
    pub traced_s: f64,
    /// Per-pass records received over the ring buffer in this window.
    pub pass_records: u64,
    /// Runs of the hot programs (tlb_flush, csd_queue_cpu, ipi_send_*, mm_page_free): every event they saw,
    /// task switches included. From the kernel's BPF statistics: only with `--bpf-stats`.
    pub hot_events: Option<u64>,
    /// Per program, since statistics were enabled (only with `--bpf-stats`).
    pub programs: Option<Vec<ProgramStat>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    pub tool_version: String,
    pub kernel: KernelInfo,
    /// Signal → source, e.g. `"flush": "tracepoint:tlb:tlb_flush (...)"`.
    pub probes: BTreeMap<String, String>,
    pub probe_plan: Vec<PlanRow>,
    pub workload: Option<WorkloadInfo>,
    pub duration_s: f64,
    pub totals: Totals,
    /// `folios_reclaimed` counts folios, each exactly once: every pass's freed folios add up
    /// to the pages the kernel says it reclaimed (`totals.unmatched_pages` is 0). False where
    /// folios could not be counted (they are then base pages) or some did not add up.
    #[serde(default)]
    pub folios_exact: bool,
    #[serde(flatten)]
    pub per_folio: PerFolio,
    pub ipis_per_reclaimed_folio: Option<f64>,
    pub rates: Rates,
    pub batch_fill: BatchFill,
    pub ipi_fanout: IpiFanout,
    pub by_context: BTreeMap<String, ContextSummary>,
    pub by_cgroup: Vec<CgroupSummary>,
    pub remote_shootdowns_by_cpu: Vec<u64>,
    pub pass_duration_us: HistStats,
    /// Folios handed to each `shrink_folio_list` call (a lower bound past the walk limit).
    #[serde(default)]
    pub pass_folios_in: HistStats,
    /// Pageouts in each pass: a batch of dirty-folio flushes cannot span passes.
    #[serde(default)]
    pub pass_pageouts: HistStats,
    /// Per written-out folio (precise tier, null elsewhere): from its `try_to_unmap` to the
    /// end of the flush that covered it, in ns (power-of-two buckets).
    #[serde(default)]
    pub unflushed_window_ns: Option<HistStats>,
    /// From that flush's end to the folio's `pageout()`, in ns.
    #[serde(default)]
    pub flush_to_pageout_ns: Option<HistStats>,
    pub drops: Drops,
    pub program_errors: BTreeMap<String, u64>,
    #[serde(default)]
    pub tracer: Option<TracerInfo>,
}

impl Summary {
    /// Convert a summary read from a file of schema v1, where `flushes` and
    /// `flushes_per_reclaimed_folio` counted deferred flushes only, immediate ones were
    /// `unbatched_flushes` (read into `immediate_flushes`), and folios were base pages (so
    /// `folios_exact` stays false).
    pub fn upgrade(&mut self) {
        if self.schema != SCHEMA_V1 {
            return;
        }
        fn fix(t: &mut Totals) -> PerFolio {
            t.deferred_flushes = t.flushes;
            t.flushes += t.immediate_flushes;
            t.per_folio()
        }
        self.per_folio = fix(&mut self.totals);
        for c in self.by_context.values_mut() {
            c.per_folio = fix(&mut c.totals);
        }
        for c in &mut self.by_cgroup {
            c.per_folio = fix(&mut c.totals);
        }
        if self.duration_s > 0.0 {
            self.rates.flushes_per_s = self.totals.flushes as f64 / self.duration_s;
        }
        self.folios_exact = false;
        self.schema = SCHEMA.to_string();
    }

    /// Reclaimed folios were counted as folios (the `folios` signal had a probe), even if
    /// not every pass added up.
    pub fn folios_counted(&self) -> bool {
        self.probes.get("folios").is_some_and(|p| p != "none")
    }
}

/// What a summary needs besides the window.
pub struct SummaryContext<'a> {
    pub kernel: KernelInfo,
    pub plan: &'a Plan,
    pub workload: Option<WorkloadInfo>,
    pub cgroup_paths: &'a BTreeMap<u64, String>,
    pub tracer: Option<TracerInfo>,
}

/// Largest number of cgroups listed in `by_cgroup` (by folios reclaimed).
pub const MAX_CGROUPS: usize = 20;

/// The `by_cgroup` order: most folios reclaimed first (ties by id, so output is stable), the
/// first [`MAX_CGROUPS`] kept.
pub(crate) fn rank_cgroups(by_cgroup: &mut Vec<CgroupSummary>) {
    by_cgroup.sort_by(|a, b| {
        b.totals
            .folios_reclaimed
            .cmp(&a.totals.folios_reclaimed)
            .then(a.cgroup_id.cmp(&b.cgroup_id))
    });
    by_cgroup.truncate(MAX_CGROUPS);
}

pub fn build(w: &Window, cx: &SummaryContext<'_>) -> Summary {
    let k = &w.kernel;
    let all = k.all_contexts();
    let mut totals = Totals::of_passes(&all);
    totals.other_flushes = k.counter(CNT_OTHER_FLUSHES);
    totals.remote_shootdowns_traced =
        k.counter(CNT_REMOTE_SHOOTDOWNS_TRACED) + k.counter(CNT_REMOTE_WRONG_CPU);
    let have_targets = cx.plan.signal(Signal::FanoutTargets).tier != Tier::None;
    let victims = if have_targets {
        k.remote_shootdowns_by_cpu.clone()
    } else {
        k.remote_shootdowns_traced_by_cpu.clone()
    };
    totals.remote_shootdowns = victims.iter().sum();
    totals.pageouts_outside_reclaim = k.counter(CNT_PAGEOUTS_OUTSIDE);
    totals.passes_without_start = k.counter(CNT_PASS_END_WITHOUT_START);
    totals.dirty_flushes_without_pageout = k.counter(CNT_DIRTY_FLUSH_WITHOUT_PAGEOUT);
    totals.pageouts_before_flush = k.counter(CNT_PAGEOUTS_BEFORE_FLUSH);
    totals.pageouts_undeferred = k.counter(CNT_PAGEOUTS_UNDEFERRED);
    totals.pageouts_readonly_pending = k.counter(CNT_PAGEOUTS_READONLY_PENDING);
    totals.pageouts_not_unmapped = k.counter(CNT_PAGEOUTS_NOT_UNMAPPED);
    totals.window_unknown = k.counter(CNT_WINDOW_UNKNOWN);
    totals.pageout_calls = k.counter(CNT_PAGEOUT_CALLS);
    totals.unmatched_passes = k.counter(CNT_UNMATCHED_PASSES);
    totals.unmatched_pages = k.counter(CNT_UNMATCHED_PAGES);
    let folios_counted = cx.plan.signal(Signal::Folios).tier != Tier::None;
    let have_window = cx.plan.signal(Signal::StaleTlbWindow).tier != Tier::None;
    let window = |metric| have_window.then(|| log2_ns_stats(&k.hist_reclaim(metric)));

    // Fan-out and batch fill describe the deferred flushes (immediate ones have no batch).
    let flushes = totals.deferred_flushes;
    let have_candidates = cx.plan.signal(Signal::Flush).tier < Tier::Tracepoint;
    let have_ipis = cx.plan.signal(Signal::Ipis).tier != Tier::None;
    let candidates = have_candidates.then(|| {
        HistStats::of(
            &k.hist_reclaim(HIST_FANOUT_CANDIDATES),
            ratio(all.fanout_candidates, flushes),
        )
    });
    let ipis =
        have_ipis.then(|| HistStats::of(&k.hist_reclaim(HIST_IPIS), ratio(all.ipis, flushes)));
    let (source, main) = if have_targets {
        (
            "csd_queue_cpu",
            HistStats::of(
                &k.hist_reclaim(HIST_FANOUT_TARGETS),
                ratio(all.fanout_targets, flushes),
            ),
        )
    } else if let Some(c) = &candidates {
        ("batch_cpumask", c.clone())
    } else {
        ("none", HistStats::of(&Default::default(), None))
    };
    let batch_fill_exact = cx.plan.batch_fill_exact;
    let batch_fill = BatchFill {
        exact: batch_fill_exact,
        stats: HistStats::of(
            &k.hist_reclaim(HIST_BATCH_FILL),
            if batch_fill_exact {
                ratio(all.batched_unmaps, flushes)
            } else {
                None
            },
        ),
    };

    let by_context = (0..N_CTX as usize)
        .map(|i| {
            let t = Totals::of_passes(&k.totals[i]);
            (
                CONTEXT_NAMES[i].to_string(),
                ContextSummary {
                    per_folio: t.per_folio(),
                    totals: t,
                },
            )
        })
        .collect();

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
                per_folio: t.per_folio(),
                totals: t,
            }
        })
        .collect();
    rank_cgroups(&mut by_cgroup);

    let per_s = |v: u64| {
        if w.duration_s > 0.0 {
            v as f64 / w.duration_s
        } else {
            0.0
        }
    };
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
        folios_exact: folios_counted && totals.unmatched_pages == 0,
        per_folio: totals.per_folio(),
        ipis_per_reclaimed_folio: have_ipis
            .then(|| ratio(totals.ipis, totals.folios_reclaimed))
            .flatten(),
        rates: Rates {
            folios_reclaimed_per_s: per_s(totals.folios_reclaimed),
            flushes_per_s: per_s(totals.flushes),
            ipis_per_s: per_s(totals.ipis),
            passes_per_s: per_s(totals.passes),
        },
        batch_fill,
        ipi_fanout: IpiFanout {
            source: source.to_string(),
            stats: main,
            flushes_without_ipi: all.flushes_without_ipi,
            candidates,
            ipis,
        },
        by_context,
        by_cgroup,
        remote_shootdowns_by_cpu: victims,
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
        tracer: cx.tracer.clone().map(|t| TracerInfo {
            pass_records: w.passes.pass_records,
            hot_events: t.programs.as_ref().map(|p| {
                p.iter()
                    .filter(|p| crate::programs::is_hot(&p.name))
                    .map(|p| p.run_count)
                    .sum()
            }),
            ..t
        }),
        totals,
    }
}

/// One-line rendering of histogram statistics.
pub trait HistStatsExt {
    fn line(&self) -> String;
}

impl HistStatsExt for HistStats {
    fn line(&self) -> String {
        let u = |v: Option<u64>| match v {
            Some(u64::MAX) => "+Inf".to_string(),
            Some(v) => v.to_string(),
            None => "-".to_string(),
        };
        format!(
            "n {}  mean {}  p50 {}  p99 {}  max {}",
            self.count,
            self.mean
                .map_or_else(|| "-".to_string(), |m| format!("{m:.2}")),
            u(self.p50),
            u(self.p99),
            u(self.max)
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use reclaim_trace_common::{
        CNT_OTHER_FLUSHES, CNT_REMOTE_SHOOTDOWNS_TRACED, CTX_MEMCG, CTX_RECLAIM_PAGES,
        HIST_BATCH_FILL, HIST_FANOUT_TARGETS, HIST_IPIS, PassRecord, RECORD_PASS, decode::Record,
        hist_index,
    };

    use super::*;
    use crate::{
        aggregate::{Aggregator, KernelSnapshot},
        plan::{Failures, ProbeMode, plan, tests::FakeKernel},
    };

    pub(crate) fn kernel_info() -> KernelInfo {
        KernelInfo {
            release: "6.18.44-test".into(),
            machine: "x86_64".into(),
            probe_mode: "tracepoint".into(),
            online_cpus: 2,
            possible_cpus: 2,
            hypervisor: None,
            lru_gen: None,
            invlpgb: false,
        }
    }

    /// A window shaped like 10 passes of the anon workload (memcg reclaim, one dirty flush per
    /// folio) plus a DAMON reclaim_pages pass.
    pub(crate) fn anon_window() -> Window {
        let mut s = KernelSnapshot::empty(2);
        let m = &mut s.totals[CTX_MEMCG as usize];
        m.passes = 10;
        m.folios_in = 320;
        m.folios_reclaimed = 300;
        m.pages_reclaimed = 300;
        m.pages_scanned = 320;
        m.pageouts = 300;
        m.dirty_flushes = 300;
        m.fanout_targets = 290;
        m.ipis = 290;
        m.flushes_without_ipi = 10;
        let r = &mut s.totals[CTX_RECLAIM_PAGES as usize];
        r.passes = 2;
        r.folios_reclaimed = 50;
        r.pages_reclaimed = 50;
        for (metric, v, n) in [
            (HIST_FANOUT_TARGETS, 1, 290),
            (HIST_FANOUT_TARGETS, 0, 10),
            (HIST_IPIS, 1, 290),
            (HIST_IPIS, 0, 10),
            (HIST_BATCH_FILL, 1, 300),
        ] {
            s.hists[hist_index(metric, CTX_MEMCG) as usize].record(v, n);
        }
        s.counters[CNT_OTHER_FLUSHES as usize] = 3;
        s.counters[CNT_REMOTE_SHOOTDOWNS_TRACED as usize] = 260;
        s.remote_shootdowns_by_cpu = vec![150, 140];
        let mut a = Aggregator::new(KernelSnapshot::empty(2), 0.0);
        let mut comm = [0u8; 16];
        comm[..9].copy_from_slice(b"rt-anon-0");
        for _ in 0..10 {
            let mut rec = PassRecord {
                kind: RECORD_PASS,
                cgroup_id: 4242,
                comm,
                start_ns: 0,
                end_ns: 40_000,
                ..Default::default()
            };
            rec.counts.passes = 1;
            rec.counts.folios_reclaimed = 30;
            rec.counts.pages_reclaimed = 30;
            rec.counts.dirty_flushes = 30;
            a.on_records(&[Record::Pass(rec)]);
        }
        a.on_snapshot(s, 2.0);
        a.window()
    }

    pub(crate) fn anon_summary() -> Summary {
        let facts = FakeKernel::host_6_18().facts();
        let failures = Failures {
            fentry: true,
            ..Default::default()
        };
        let p = plan(&facts, ProbeMode::Auto, &failures).unwrap();
        summarize(&anon_window(), &p)
    }

    /// The summary of `w` under plan `p`, without a workload or tracer figures.
    pub(crate) fn summarize(w: &Window, p: &Plan) -> Summary {
        let paths = BTreeMap::from([(4242, "/reclaim-trace-1234".to_string())]);
        build(
            w,
            &SummaryContext {
                kernel: kernel_info(),
                plan: p,
                workload: None,
                cgroup_paths: &paths,
                tracer: None,
            },
        )
    }

    #[test]
    fn v1_files_are_read_with_immediate_flushes_added_to_the_headline() {
        let mut s = anon_summary();
        s.schema = SCHEMA_V1.into();
        // As v1 wrote it: flushes = dirty + batch only, ratio of those.
        s.totals.immediate_flushes = 50;
        s.totals.flushes = s.totals.dirty_flushes + s.totals.batch_flushes;
        s.folios_exact = true;
        let deferred = s.totals.flushes;
        s.upgrade();
        assert_eq!(s.schema, SCHEMA);
        assert_eq!(s.totals.deferred_flushes, deferred);
        assert_eq!(s.totals.flushes, deferred + 50);
        let pf = &s.per_folio;
        let sum = pf.deferred_flushes_per_reclaimed_folio.unwrap()
            + pf.immediate_flushes_per_reclaimed_folio.unwrap();
        assert!((pf.flushes_per_reclaimed_folio.unwrap() - sum).abs() < 1e-12);
        assert!(!s.folios_exact, "v1 folios were pages");
        // Already v2: untouched.
        let before = s.clone();
        s.upgrade();
        assert_eq!(s, before);
    }

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
    fn summary_json_contract() {
        let s = anon_summary();
        // Round trip: report/compare read what summary writes.
        let json = serde_json::to_value(&s).unwrap();
        let back: Summary = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, s);
        insta::assert_json_snapshot!("summary_v2_anon", json, {
            ".tool_version" => "[version]",
        });
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
