//! The summary document: every type of the JSON contract besides the totals, and the rules
//! that order and label its parts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ContextSummary, PerFolio, Rates, Totals, ratio};
use crate::{aggregate::HistStats, plan::Plan};

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

    /// A signal that does not exist on this machine by design: arm64's fan-out targets and
    /// remote shootdowns (flushes are a hardware broadcast). Not observed, and not degraded.
    pub fn is_broadcast(&self) -> bool {
        self.tier == "none" && self.source.starts_with("broadcast")
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
    /// `batch_cpumask` (candidates, when csd is unavailable), `broadcast` (arm64: nothing to
    /// count, every flush reaches all CPUs) or `none`.
    pub source: String,
    #[serde(flatten)]
    pub stats: HistStats,
    /// Flushes that reached no other CPU (local-only; INVLPGB or hypercall flushes).
    pub flushes_without_ipi: u64,
    /// CPUs in the batch cpumask other than the flushing one (precise tier only).
    pub candidates: Option<HistStats>,
    /// IPIs sent per flush (a target whose csd queue was not empty needs none).
    pub ipis: Option<HistStats>,
    /// `broadcast`: the CPUs every flush reached (all online CPUs; the TLBIs are broadcast
    /// to the inner-shareable domain). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast_cpus: Option<u32>,
}

impl IpiFanout {
    /// `source` where the main histogram counts the CPUs each flush was sent to.
    pub const TARGETS: &str = "csd_queue_cpu";
    /// `source` where it counts the batch cpumask's CPUs, csd events being unavailable.
    pub const CANDIDATES: &str = "batch_cpumask";
    /// `source` where neither is observable.
    pub const NONE: &str = "none";
    /// `source` where flushes reach the other CPUs by a hardware broadcast (arm64): no IPIs,
    /// no per-CPU targets; the histogram is empty.
    pub const BROADCAST: &str = "broadcast";
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

impl CgroupSummary {
    /// The cgroup as shown in tables: its path, or its id where the path is unknown.
    pub fn label(&self) -> String {
        cgroup_label(self.path.as_deref(), self.cgroup_id)
    }
}

/// A cgroup's path, or `id N` where it could not be resolved (removed, too deep): the one
/// rule the text summary and the dashboard label cgroups by.
pub fn cgroup_label(path: Option<&str>, cgroup_id: u64) -> String {
    match path {
        Some(p) => p.to_string(),
        None => format!("id {cgroup_id}"),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Drops {
    /// Pass records lost to a full ring buffer (their counts are still in the totals).
    pub ringbuf: u64,
    pub decode_errors: u64,
    pub flush_records: u64,
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

impl ProgramStat {
    pub fn ns_per_run(&self) -> Option<f64> {
        ns_per_run(self.run_time_ns, self.run_count)
    }
}

/// Mean run time of a BPF program in ns (`None` before its first run).
pub fn ns_per_run(run_time_ns: u64, run_count: u64) -> Option<f64> {
    ratio(run_time_ns, run_count)
}

/// CPU time in percent of one core: `cpu_s` used over `wall_s` of wall time.
pub fn pct_of_one_core(cpu_s: f64, wall_s: f64) -> Option<f64> {
    (wall_s > 0.0).then(|| 100.0 * cpu_s / wall_s)
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

impl TracerInfo {
    /// The tracer's userspace CPU while tracing, in percent of one core (when measured).
    pub fn cpu_pct(&self) -> Option<f64> {
        self.cpu_s.and_then(|c| pct_of_one_core(c, self.traced_s))
    }
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
    /// What the kernel side's state machines did not expect, by kind, every kind listed
    /// (`reclaim_trace_common::ANOMALY_COUNTERS`; empty in files written before they were
    /// counted). The first few of each kind are logged at info level (`-v`).
    #[serde(default)]
    pub anomalies: BTreeMap<String, u64>,
    #[serde(default)]
    pub tracer: Option<TracerInfo>,
}

impl Summary {
    /// Reclaim flushes had a probe (arm64's tracepoint tier has none).
    pub fn flushes_observed(&self) -> bool {
        self.probes.get("flush").is_some_and(|p| p != "none")
    }

    /// Reclaimed folios were counted as folios (the `folios` signal had a probe), even if
    /// not every pass added up.
    pub fn folios_counted(&self) -> bool {
        self.probes.get("folios").is_some_and(|p| p != "none")
    }
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
