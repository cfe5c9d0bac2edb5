//! The model: kernel-side aggregates (snapshots of the per-CPU maps) and per-pass records,
//! folded into windows. Plain data, no clock reads, no kernel access: tests drive it with
//! synthetic snapshots and records.

pub mod hist;

use std::collections::BTreeMap;

use reclaim_trace_common::{
    ANOMALY_COUNTERS, ANOMALY_FAILED_READ, CNT_ERR_BASE, CNT_REMOTE_SHOOTDOWNS_TRACED, CTX_DIRECT,
    CTX_KSWAPD, CTX_MEMCG, CTX_OTHER, CTX_PROACTIVE, CTX_RECLAIM_PAGES, HistBuckets, N_COUNTERS,
    N_CTX, N_HIST_CTX, N_HISTS, N_PROGS, PassCounts, PassRecord, decode::Record, hist_index,
};

pub use self::hist::{HistStats, Histogram};

/// Names of the reclaim contexts, indexed by `CTX_*`.
pub const CONTEXT_NAMES: [&str; N_CTX as usize] = [
    "kswapd",
    "direct",
    "memcg",
    "proactive",
    "reclaim_pages",
    "other",
];

const _: () = {
    assert!(CTX_KSWAPD == 0 && CTX_DIRECT == 1 && CTX_MEMCG == 2);
    assert!(CTX_PROACTIVE == 3 && CTX_RECLAIM_PAGES == 4 && CTX_OTHER == 5);
};

/// Names of the programs, indexed by `PROG_*` (for the per-program error counters).
pub const PROGRAM_NAMES: [&str; N_PROGS as usize] = [
    "vmscan_lru_isolate",
    "vmscan_lru_shrink_inactive",
    "vmscan_write_folio",
    "vmscan_reclaim_window",
    "tlb_flush",
    "ipi_send",
    "csd_queue_cpu",
    "vmscan_reclaim_pages",
    "shrink_folio_list",
    "try_to_unmap",
    "try_to_unmap_flush_dirty",
    "arch_tlbbatch_flush",
    "pageout",
    "pageout_entry",
    "try_to_unmap_flush",
];

/// The kernel-side aggregates at one moment, summed over CPUs (wrapping: some counters are
/// decremented on another CPU than the one that incremented them).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSnapshot {
    /// Per reclaim context (`CTX_*`).
    pub totals: [PassCounts; N_CTX as usize],
    /// At `hist_index(metric, ctx)`.
    pub hists: Vec<Histogram>,
    /// `CNT_*`, summed over CPUs.
    pub counters: [u64; N_COUNTERS as usize],
    /// Remote TLB flushes sent to each CPU (`csd_queue_cpu`, 6.5+): exact.
    pub remote_shootdowns_by_cpu: Vec<u64>,
    /// `tlb_flush` reason 1 seen on each CPU (an undercount: see `CNT_REMOTE_SHOOTDOWNS_TRACED`).
    pub remote_shootdowns_traced_by_cpu: Vec<u64>,
}

fn vec_delta(now: &[u64], earlier: &[u64]) -> Vec<u64> {
    now.iter()
        .enumerate()
        .map(|(i, v)| v.wrapping_sub(earlier.get(i).copied().unwrap_or(0)))
        .collect()
}

/// The kernel's per-CPU maps as read, before summing: `[index][cpu]` (one copy per possible
/// CPU, as `bpf_map_lookup_elem` on a per-CPU array returns them).
#[derive(Clone, Debug, Default)]
pub struct PerCpuMaps {
    /// `MAP_TOTALS`, per reclaim context.
    pub totals: Vec<Vec<PassCounts>>,
    /// `MAP_HISTS`, at `hist_index(metric, ctx)`.
    pub hists: Vec<Vec<HistBuckets>>,
    /// `MAP_COUNTERS`, per `CNT_*`.
    pub counters: Vec<Vec<u64>>,
    /// `MAP_REMOTE_SHOOTDOWNS`, per target CPU: each initiating CPU's count of flushes sent to it.
    pub remote_shootdowns: Vec<Vec<u64>>,
}

impl KernelSnapshot {
    /// Sum every map over the CPUs that counted into it. Wrapping: a count taken back
    /// (`u64::MAX` added) may land on another CPU than the one that added it.
    pub fn sum_cpus(maps: &PerCpuMaps) -> Self {
        fn sum(v: &[u64]) -> u64 {
            v.iter().fold(0u64, |a, b| a.wrapping_add(*b))
        }
        let mut s = KernelSnapshot::empty(maps.remote_shootdowns.len());
        for (dst, per_cpu) in s.totals.iter_mut().zip(&maps.totals) {
            *dst = per_cpu
                .iter()
                .fold(PassCounts::default(), |acc, c| acc.wrapping_add(c));
        }
        for (dst, per_cpu) in s.hists.iter_mut().zip(&maps.hists) {
            for b in per_cpu {
                dst.add(&Histogram::from_buckets(*b));
            }
        }
        for (dst, per_cpu) in s.counters.iter_mut().zip(&maps.counters) {
            *dst = sum(per_cpu);
        }
        if let Some(per_cpu) = maps.counters.get(CNT_REMOTE_SHOOTDOWNS_TRACED as usize) {
            s.remote_shootdowns_traced_by_cpu = per_cpu.clone();
        }
        s.remote_shootdowns_by_cpu = maps.remote_shootdowns.iter().map(|v| sum(v)).collect();
        s
    }

    pub fn empty(cpus: usize) -> Self {
        KernelSnapshot {
            totals: [PassCounts::default(); N_CTX as usize],
            hists: vec![Histogram::default(); N_HISTS as usize],
            counters: [0; N_COUNTERS as usize],
            remote_shootdowns_by_cpu: vec![0; cpus],
            remote_shootdowns_traced_by_cpu: vec![0; cpus],
        }
    }

    /// `self - earlier`, field by field.
    pub fn delta(&self, earlier: &KernelSnapshot) -> KernelSnapshot {
        KernelSnapshot {
            totals: std::array::from_fn(|i| self.totals[i].wrapping_sub(&earlier.totals[i])),
            hists: self
                .hists
                .iter()
                .zip(&earlier.hists)
                .map(|(a, b)| a.delta(b))
                .collect(),
            counters: std::array::from_fn(|i| self.counters[i].wrapping_sub(earlier.counters[i])),
            remote_shootdowns_by_cpu: vec_delta(
                &self.remote_shootdowns_by_cpu,
                &earlier.remote_shootdowns_by_cpu,
            ),
            remote_shootdowns_traced_by_cpu: vec_delta(
                &self.remote_shootdowns_traced_by_cpu,
                &earlier.remote_shootdowns_traced_by_cpu,
            ),
        }
    }

    /// Totals over all reclaim contexts.
    pub fn all_contexts(&self) -> PassCounts {
        self.totals
            .iter()
            .fold(PassCounts::default(), |acc, c| acc.wrapping_add(c))
    }

    pub fn counter(&self, idx: u32) -> u64 {
        self.counters.get(idx as usize).copied().unwrap_or(0)
    }

    pub fn hist(&self, metric: u32, ctx: u32) -> &Histogram {
        &self.hists[hist_index(metric, ctx) as usize]
    }

    /// Histogram `metric` summed over the reclaim contexts (not the out-of-reclaim column).
    pub fn hist_reclaim(&self, metric: u32) -> Histogram {
        let mut h = Histogram::default();
        for ctx in 0..N_CTX {
            h.add(self.hist(metric, ctx));
        }
        h
    }

    /// Every anomaly kind with its count (`failed_read`: the program errors together).
    pub fn anomalies(&self) -> BTreeMap<String, u64> {
        let failed_read = (0..N_PROGS).fold(0u64, |n, p| {
            n.saturating_add(self.counter(CNT_ERR_BASE + p))
        });
        ANOMALY_COUNTERS
            .iter()
            .map(|&(name, idx)| (name.to_string(), self.counter(idx)))
            .chain([(ANOMALY_FAILED_READ.to_string(), failed_read)])
            .collect()
    }

    pub fn program_errors(&self) -> BTreeMap<String, u64> {
        PROGRAM_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), self.counter(CNT_ERR_BASE + i as u32)))
            .filter(|(_, v)| *v != 0)
            .collect()
    }
}

const _: () = assert!(N_HIST_CTX == N_CTX + 1);

/// Who reclaimed: one row per (memory cgroup, process, command).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReclaimerKey {
    pub cgroup_id: u64,
    pub comm: String,
    /// Process (thread group) id of the reclaiming task: kswapd's pid for background reclaim,
    /// the allocating process for direct and memcg reclaim (the dashboard's `--pid` filter).
    pub tgid: u32,
}

/// Per-pass records folded by reclaimer, plus what the channel lost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassTable {
    pub by_reclaimer: BTreeMap<ReclaimerKey, PassCounts>,
    pub pass_records: u64,
    pub flush_records: u64,
    pub decode_errors: u64,
    /// Pass durations (µs), for latency percentiles.
    pub pass_duration_us: Histogram,
    /// Folios handed to each pass, and pageouts in each pass: what bounds a batch, since no
    /// flush batch can outgrow the pass it is in.
    pub pass_folios_in: Histogram,
    pub pass_pageouts: Histogram,
}

impl PassTable {
    pub fn add(&mut self, r: &PassRecord) {
        let comm = comm_str(&r.comm);
        let key = ReclaimerKey {
            cgroup_id: r.cgroup_id,
            comm,
            tgid: r.tgid,
        };
        let e = self.by_reclaimer.entry(key).or_default();
        *e = e.wrapping_add(&r.counts);
        self.pass_records += 1;
        self.pass_duration_us
            .record(r.end_ns.saturating_sub(r.start_ns) / 1000, 1);
        self.pass_folios_in.record(r.counts.folios_in, 1);
        self.pass_pageouts.record(r.counts.pageouts, 1);
    }

    /// `self - earlier` (rows that did not change are dropped).
    pub fn delta(&self, earlier: &PassTable) -> PassTable {
        let mut by_reclaimer = BTreeMap::new();
        for (k, v) in &self.by_reclaimer {
            let d = match earlier.by_reclaimer.get(k) {
                Some(e) => v.wrapping_sub(e),
                None => *v,
            };
            if d.passes != 0 {
                by_reclaimer.insert(k.clone(), d);
            }
        }
        PassTable {
            by_reclaimer,
            pass_records: self.pass_records - earlier.pass_records,
            flush_records: self.flush_records - earlier.flush_records,
            decode_errors: self.decode_errors - earlier.decode_errors,
            pass_duration_us: self.pass_duration_us.delta(&earlier.pass_duration_us),
            pass_folios_in: self.pass_folios_in.delta(&earlier.pass_folios_in),
            pass_pageouts: self.pass_pageouts.delta(&earlier.pass_pageouts),
        }
    }

    /// Rows folded by cgroup.
    pub fn by_cgroup(&self) -> BTreeMap<u64, (PassCounts, Vec<String>)> {
        let mut out: BTreeMap<u64, (PassCounts, Vec<String>)> = BTreeMap::new();
        for (k, v) in &self.by_reclaimer {
            let e = out.entry(k.cgroup_id).or_default();
            e.0 = e.0.wrapping_add(v);
            if !e.1.contains(&k.comm) {
                e.1.push(k.comm.clone());
            }
        }
        out
    }
}

/// The command name in a record (NUL-padded, not necessarily UTF-8).
pub fn comm_str(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// Everything that happened between two moments.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub kernel: KernelSnapshot,
    pub passes: PassTable,
    pub duration_s: f64,
}

/// One owner of all state: the main loop feeds it record batches and map snapshots.
#[derive(Clone, Debug)]
pub struct Aggregator {
    baseline: KernelSnapshot,
    baseline_table: PassTable,
    baseline_s: f64,
    latest: KernelSnapshot,
    latest_s: f64,
    table: PassTable,
}

impl Aggregator {
    /// Start from the state of the maps at attach time (`now_s` on the caller's clock).
    pub fn new(initial: KernelSnapshot, now_s: f64) -> Self {
        Aggregator {
            baseline: initial.clone(),
            baseline_table: PassTable::default(),
            baseline_s: now_s,
            latest: initial,
            latest_s: now_s,
            table: PassTable::default(),
        }
    }

    pub fn on_records(&mut self, batch: &[Record]) {
        for r in batch {
            match r {
                Record::Pass(p) => self.table.add(p),
                Record::Flush(_) => self.table.flush_records += 1,
            }
        }
    }

    pub fn on_decode_errors(&mut self, n: u64) {
        self.table.decode_errors += n;
    }

    pub fn on_snapshot(&mut self, snap: KernelSnapshot, now_s: f64) {
        self.latest = snap;
        self.latest_s = now_s;
    }

    /// Forget everything before now (the dashboard's reset key).
    pub fn reset(&mut self) {
        self.baseline = self.latest.clone();
        self.baseline_table = self.table.clone();
        self.baseline_s = self.latest_s;
    }

    /// From the baseline to the latest snapshot.
    pub fn window(&self) -> Window {
        Window {
            kernel: self.latest.delta(&self.baseline),
            passes: self.table.delta(&self.baseline_table),
            duration_s: (self.latest_s - self.baseline_s).max(0.0),
        }
    }

    /// A marker for interval windows: call `since(&mark)` later.
    pub fn mark(&self) -> Mark {
        Mark {
            kernel: self.latest.clone(),
            table: self.table.clone(),
            at_s: self.latest_s,
        }
    }

    pub fn since(&self, mark: &Mark) -> Window {
        Window {
            kernel: self.latest.delta(&mark.kernel),
            passes: self.table.delta(&mark.table),
            duration_s: (self.latest_s - mark.at_s).max(0.0),
        }
    }

    pub fn latest_s(&self) -> f64 {
        self.latest_s
    }
}

/// The state at one moment, to measure an interval from.
#[derive(Clone, Debug)]
pub struct Mark {
    kernel: KernelSnapshot,
    table: PassTable,
    at_s: f64,
}

#[cfg(test)]
mod tests {
    use reclaim_trace_common::{
        CNT_OTHER_FLUSHES, CNT_RINGBUF_DROPS, HIST_BUCKETS, HIST_FANOUT_TARGETS, RECORD_PASS,
    };

    use super::*;

    #[test]
    fn per_cpu_maps_sum_with_wrapping_and_keep_the_per_cpu_views() {
        let cpus = 3;
        let mut maps = PerCpuMaps {
            totals: vec![vec![PassCounts::default(); cpus]; N_CTX as usize],
            hists: vec![vec![[0; HIST_BUCKETS]; cpus]; N_HISTS as usize],
            counters: vec![vec![0; cpus]; N_COUNTERS as usize],
            remote_shootdowns: vec![vec![0; cpus]; cpus],
        };
        maps.totals[CTX_MEMCG as usize][0].dirty_flushes = 5;
        maps.totals[CTX_MEMCG as usize][2].dirty_flushes = 7;
        maps.totals[CTX_KSWAPD as usize][1].passes = 1;
        // A flush counted on CPU 0 and taken back on CPU 1 (u64::MAX is -1).
        maps.counters[CNT_OTHER_FLUSHES as usize] = vec![2, u64::MAX, 0];
        maps.counters[CNT_REMOTE_SHOOTDOWNS_TRACED as usize] = vec![4, 0, 9];
        let h = hist_index(HIST_FANOUT_TARGETS, CTX_MEMCG) as usize;
        maps.hists[h][0][1] = 10;
        maps.hists[h][2][1] = 1;
        maps.hists[h][2][2] = 3;
        // Flushes sent to CPU 1 by CPUs 0 and 2; to CPU 2 by CPU 0.
        maps.remote_shootdowns[1] = vec![6, 0, 8];
        maps.remote_shootdowns[2] = vec![1, 0, 0];

        let s = KernelSnapshot::sum_cpus(&maps);
        assert_eq!(s.totals[CTX_MEMCG as usize].dirty_flushes, 12);
        assert_eq!(s.all_contexts().passes, 1);
        assert_eq!(s.counter(CNT_OTHER_FLUSHES), 1);
        assert_eq!(s.counter(CNT_REMOTE_SHOOTDOWNS_TRACED), 13);
        assert_eq!(
            s.remote_shootdowns_traced_by_cpu,
            vec![4, 0, 9],
            "per receiving CPU, not summed"
        );
        assert_eq!(
            s.remote_shootdowns_by_cpu,
            vec![0, 14, 1],
            "summed over initiators"
        );
        let hist = s.hist(HIST_FANOUT_TARGETS, CTX_MEMCG);
        assert_eq!((hist.buckets[1], hist.buckets[2]), (11, 3));
    }

    pub(crate) fn pass(cgroup_id: u64, comm: &str, reclaimed: u64, dirty: u64) -> PassRecord {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        PassRecord {
            kind: RECORD_PASS,
            cgroup_id,
            comm: c,
            start_ns: 1_000,
            end_ns: 51_000,
            counts: PassCounts {
                passes: 1,
                folios_reclaimed: reclaimed,
                pages_reclaimed: reclaimed,
                dirty_flushes: dirty,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn windows_are_deltas_of_snapshots_and_records() {
        let mut a = Aggregator::new(KernelSnapshot::empty(2), 10.0);
        let mut s1 = KernelSnapshot::empty(2);
        s1.totals[CTX_MEMCG as usize].passes = 3;
        s1.totals[CTX_MEMCG as usize].folios_reclaimed = 90;
        s1.hists[hist_index(HIST_FANOUT_TARGETS, CTX_MEMCG) as usize].record(1, 90);
        a.on_records(&[
            Record::Pass(pass(7, "stress", 30, 30)),
            Record::Pass(pass(7, "stress", 30, 30)),
            Record::Pass(pass(9, "kswapd0", 30, 0)),
        ]);
        a.on_snapshot(s1.clone(), 12.0);
        let mark = a.mark();
        let w = a.window();
        assert_eq!(w.duration_s, 2.0);
        assert_eq!(w.kernel.all_contexts().folios_reclaimed, 90);
        assert_eq!(w.kernel.hist_reclaim(HIST_FANOUT_TARGETS).total(), 90);
        assert_eq!(w.passes.pass_records, 3);
        let by_cg = w.passes.by_cgroup();
        assert_eq!(by_cg[&7].0.folios_reclaimed, 60);
        assert_eq!(by_cg[&9].1, vec!["kswapd0".to_string()]);
        assert_eq!(w.passes.pass_duration_us.percentile(0.5), Some(50));

        let mut s2 = s1.clone();
        s2.totals[CTX_MEMCG as usize].folios_reclaimed = 100;
        s2.counters[CNT_RINGBUF_DROPS as usize] = 4;
        a.on_records(&[Record::Pass(pass(7, "stress", 10, 10))]);
        a.on_snapshot(s2, 13.0);
        let i = a.since(&mark);
        assert_eq!(i.kernel.all_contexts().folios_reclaimed, 10);
        assert_eq!(i.kernel.counter(CNT_RINGBUF_DROPS), 4);
        assert_eq!(i.passes.pass_records, 1);
        assert_eq!(i.passes.by_reclaimer.len(), 1);
        assert_eq!(i.duration_s, 1.0);

        a.reset();
        let w = a.window();
        assert_eq!(w.kernel.all_contexts().folios_reclaimed, 0);
        assert_eq!(w.passes.pass_records, 0);
    }

    #[test]
    fn counters_decremented_on_another_cpu_sum_correctly() {
        let mut s = KernelSnapshot::empty(1);
        // +1 on CPU0 and -1 (u64::MAX) on CPU1, summed with wrapping arithmetic.
        s.counters[3] = 1u64.wrapping_add(u64::MAX);
        assert_eq!(s.delta(&KernelSnapshot::empty(1)).counter(3), 0);
    }

    #[test]
    fn comm_stops_at_nul_and_survives_bad_utf8() {
        let mut c = [0u8; 16];
        c[..3].copy_from_slice(b"a\xffb");
        assert_eq!(comm_str(&c), "a\u{fffd}b");
        assert_eq!(comm_str(&[b'x'; 16]), "x".repeat(16));
    }
}
