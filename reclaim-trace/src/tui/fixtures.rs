//! Synthetic frames for the dashboard's tests, built through the real summary code from
//! synthetic kernel snapshots and pass tables (no kernel, no root).

use std::collections::BTreeMap;

use reclaim_trace_common::{
    CNT_OTHER_FLUSHES, CNT_RINGBUF_DROPS, CTX_KSWAPD, CTX_MEMCG, HIST_BATCH_FILL,
    HIST_FANOUT_CANDIDATES, HIST_FANOUT_TARGETS, HIST_FLUSH_TO_PAGEOUT, HIST_IPIS,
    HIST_UNFLUSHED_WINDOW, PassCounts, hist_index,
};

use super::model::{Cost, Frame, reclaimers};
use crate::{
    aggregate::{KernelSnapshot, PassTable, ReclaimerKey, Window},
    export::summary::{self, KernelInfo, SummaryContext, WorkloadInfo},
    plan::{Plan, Signal, SignalPlan, Tier},
    probe::stats::ProgramStat,
};

const CPUS: usize = 4;

/// Every signal at `tier`, with a note on the ones in `degraded`.
fn plan(tier: Tier, degraded: &[(Signal, Tier, &str)]) -> Plan {
    Plan {
        signals: Signal::ALL
            .iter()
            .map(|&signal| match degraded.iter().find(|d| d.0 == signal) {
                Some(&(_, t, note)) => SignalPlan {
                    signal,
                    tier: t,
                    source: format!("{t}:{}", signal.name()),
                    note: Some(note.to_string()),
                },
                None => SignalPlan {
                    signal,
                    tier,
                    source: format!("{tier}:{}", signal.name()),
                    note: None,
                },
            })
            .collect(),
        programs: Vec::new(),
        flags: 0,
        batch_fill_exact: tier < Tier::Tracepoint,
        flush_reach: crate::plan::FlushReach::Ipi,
    }
}

pub fn precise_plan() -> Plan {
    plan(Tier::Kprobe, &[])
}

/// What this project's 6.18 CI machine gets: tracepoints only.
pub fn tracepoint_plan() -> Plan {
    plan(
        Tier::Tracepoint,
        &[
            (
                Signal::BatchedUnmaps,
                Tier::None,
                "not observable (kprobes are not available); batch fill is an estimate",
            ),
            (
                Signal::Flush,
                Tier::Tracepoint,
                "precise tier unavailable; batch cpumask not observable",
            ),
            (
                Signal::DirtyFlush,
                Tier::Tracepoint,
                "a flush followed by a pageout on the same task counts as dirty",
            ),
            (
                Signal::StaleTlbWindow,
                Tier::None,
                "not measured: kprobes are not available",
            ),
        ],
    )
}

/// `scale` = seconds of the anon workload (≈9.6k folios/s reclaimed in memcg context, each
/// with a dirty flush; kswapd reclaiming clean file folios in batches).
fn snapshot(scale: u64) -> KernelSnapshot {
    let mut k = KernelSnapshot::empty(CPUS);
    k.totals[CTX_MEMCG as usize] = PassCounts {
        passes: 1_500 * scale,
        folios_in: 9_800 * scale,
        folios_reclaimed: 9_600 * scale,
        pages_reclaimed: 9_600 * scale,
        pages_scanned: 9_900 * scale,
        pageouts: 9_600 * scale,
        dirty_flushes: 9_550 * scale,
        batch_flushes: 40 * scale,
        ipis: 9_000 * scale,
        fanout_targets: 9_700 * scale,
        fanout_candidates: 12_000 * scale,
        flushes_without_ipi: 10 * scale,
        batched_unmaps: 9_600 * scale,
        ..Default::default()
    };
    k.totals[CTX_KSWAPD as usize] = PassCounts {
        passes: 20 * scale,
        folios_in: 700 * scale,
        folios_reclaimed: 620 * scale,
        pages_reclaimed: 620 * scale,
        batch_flushes: 25 * scale,
        fanout_targets: 30 * scale,
        ipis: 30 * scale,
        batched_unmaps: 620 * scale,
        ..Default::default()
    };
    let mut h = |metric, ctx, value, n| {
        k.hists[hist_index(metric, ctx) as usize].record(value, n * scale);
    };
    h(HIST_BATCH_FILL, CTX_MEMCG, 1, 9_550);
    h(HIST_BATCH_FILL, CTX_MEMCG, 2, 40);
    h(HIST_BATCH_FILL, CTX_KSWAPD, 31, 20);
    h(HIST_BATCH_FILL, CTX_KSWAPD, 8, 5);
    for (metric, extra) in [
        (HIST_FANOUT_TARGETS, 0),
        (HIST_IPIS, 0),
        (HIST_FANOUT_CANDIDATES, 1),
    ] {
        h(metric, CTX_MEMCG, 1 + extra, 9_400);
        h(metric, CTX_MEMCG, 2 + extra, 150);
        h(metric, CTX_MEMCG, 3 + extra, 40);
        h(metric, CTX_KSWAPD, 1 + extra, 25);
    }
    // Stale-TLB window per written folio (log2 ns buckets): mostly under 8 µs from unmap to
    // the end of its flush, under 2 µs from there to pageout().
    h(HIST_UNFLUSHED_WINDOW, CTX_MEMCG, 13, 9_000);
    h(HIST_UNFLUSHED_WINDOW, CTX_MEMCG, 16, 550);
    h(HIST_FLUSH_TO_PAGEOUT, CTX_MEMCG, 11, 9_550);
    k.counters[CNT_OTHER_FLUSHES as usize] = 3 * scale;
    k.remote_shootdowns_by_cpu = vec![1_900 * scale, 3_100 * scale, 2_600 * scale, 2_130 * scale];
    k.remote_shootdowns_traced_by_cpu = k.remote_shootdowns_by_cpu.clone();
    k
}

fn table(scale: u64) -> PassTable {
    let mut t = PassTable::default();
    let mut add = |cgroup_id, comm: &str, tgid, reclaimed: u64, flushes: u64, passes: u64| {
        t.by_reclaimer.insert(
            ReclaimerKey {
                cgroup_id,
                comm: comm.into(),
                tgid,
            },
            PassCounts {
                passes: passes * scale,
                folios_reclaimed: reclaimed * scale,
                pages_reclaimed: reclaimed * scale,
                dirty_flushes: flushes * scale,
                ipis: flushes * scale,
                ..Default::default()
            },
        );
    };
    add(101, "reclaim-trace", 4243, 9_500, 9_460, 1_480);
    add(1, "kswapd0", 87, 620, 25, 20);
    add(202, "postgres", 1312, 100, 90, 20);
    add(303, "gone", 77, 5, 5, 1); // its cgroup no longer resolves
    t.pass_records = 1_521 * scale;
    t
}

fn paths() -> BTreeMap<u64, String> {
    BTreeMap::from([
        (1, "/".to_string()),
        (101, "/reclaim-trace-4242".to_string()),
        (202, "/system.slice/postgresql.service".to_string()),
    ])
}

fn kernel(plan: &Plan) -> KernelInfo {
    KernelInfo {
        release: "6.18.44".into(),
        machine: match plan.flush_reach {
            crate::plan::FlushReach::Ipi => "x86_64".into(),
            crate::plan::FlushReach::Broadcast => "aarch64".into(),
        },
        probe_mode: plan.probe_mode().into(),
        online_cpus: CPUS as u32,
        possible_cpus: CPUS as u32,
        hypervisor: None,
        lru_gen: Some(false),
        invlpgb: false,
    }
}

fn workload() -> WorkloadInfo {
    WorkloadInfo {
        kind: "anon".into(),
        threads: 4,
        processes: 1,
        thp_sizes_kb: Vec::new(),
        size_bytes: 320 << 20,
        memcg_limit_bytes: 128 << 20,
        cgroup: "/sys/fs/cgroup/memory/reclaim-trace-4242".into(),
        cgroup_version: 1,
        swap: "zram0 (640 MiB, created for this run)".into(),
        result: None,
    }
}

fn stat(name: &str, ns: u64, n: u64) -> ProgramStat {
    ProgramStat {
        name: name.into(),
        run_time_ns: ns,
        run_count: n,
    }
}

/// A frame `total_s` seconds into the anon workload, with a 1-second interval.
fn frame(plan: &Plan, total_s: u64, drops: u64) -> Frame {
    let paths = paths();
    let cx = SummaryContext {
        kernel: kernel(plan),
        plan,
        workload: (total_s > 0).then(workload),
        cgroup_paths: &paths,
        tracer: None,
    };
    let mut total_k = snapshot(total_s);
    total_k.counters[CNT_RINGBUF_DROPS as usize] = drops;
    let total = Window {
        kernel: total_k,
        passes: table(total_s),
        duration_s: total_s.max(1) as f64,
    };
    let now = Window {
        kernel: snapshot(total_s.min(1)),
        passes: table(total_s.min(1)),
        duration_s: 1.0,
    };
    let before = [
        stat("tlb_flush", 0, 0),
        stat("vmscan_lru_shrink_inactive", 0, 0),
    ];
    let after = [
        stat("tlb_flush", 9_000_000, 40_000),
        stat("vmscan_lru_shrink_inactive", 1_500_000, 1_500),
    ];
    let n = usize::from(total_s > 0) * after.len();
    Frame {
        total: summary::build(&total, &cx),
        now: summary::build(&now, &cx),
        elapsed_s: total_s.max(1) as f64,
        reclaimers: reclaimers(&total.passes, &now.passes, now.duration_s, &paths),
        cost: Cost::between(true, &before[..n], &after[..n], 1.0, Some(0.004)),
    }
}

/// An idle machine: one second in, nothing reclaimed.
pub fn empty() -> Frame {
    frame(&tracepoint_plan(), 0, 0)
}

/// A minute of the anon workload on a kernel where every signal has a precise probe.
pub fn populated() -> Frame {
    frame(&precise_plan(), 63, 0)
}

/// The same on arm64, where flushes reach the CPUs by a hardware broadcast.
pub fn broadcast() -> Frame {
    let mut plan = precise_plan();
    plan.flush_reach = crate::plan::FlushReach::Broadcast;
    for row in &mut plan.signals {
        if matches!(row.signal, Signal::FanoutTargets | Signal::RemoteShootdowns) {
            row.tier = Tier::None;
            row.source = "broadcast: TLBI ...IS reaches every CPU".into();
        }
    }
    frame(&plan, 63, 0)
}

/// The same on a tracepoint-only kernel (degraded signals), with ring-buffer drops.
pub fn degraded() -> Frame {
    frame(&tracepoint_plan(), 63, 12)
}
