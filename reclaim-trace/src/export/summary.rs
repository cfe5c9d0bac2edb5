//! The summary: the JSON contract `reclaim-trace/summary/v2` (DESIGN.md §7) and the model the
//! text output, the dashboard and the exporters read.
//!
//! - `totals`: the counts of a window and the figures derived from them alone (ratios, means,
//!   rates);
//! - `model`: the rest of the document (histograms, contexts, cgroups, kernel, tracer);
//! - `build`: the summary of an aggregator window under a probe plan;
//! - `upgrade`: files of schema v1 converted on load.
//!
//! Everything is re-exported here: users name `export::summary::X`, never a submodule.

mod build;
mod model;
mod totals;
mod upgrade;

pub use build::{SummaryContext, build, flushes_seen};
pub(crate) use model::rank_cgroups;
pub use model::{
    BatchFill, CgroupSummary, Drops, IpiFanout, KernelInfo, MAX_CGROUPS, PlanRow, ProgramStat,
    Summary, TracerInfo, WorkloadInfo, WorkloadResult, cgroup_label, ns_per_run, pct_of_one_core,
};
pub use totals::{ContextSummary, FlushesSeen, PerFolio, Rates, Totals, per_s, ratio};

pub const SCHEMA: &str = "reclaim-trace/summary/v2";
/// The schema before v2; files in it are read and converted ([`Summary::upgrade`]).
pub const SCHEMA_V1: &str = "reclaim-trace/summary/v1";

/// The contract test, and the windows and summaries the tests of every view share. The
/// contract test stays in this file: its snapshot is named after this module and file.
#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use reclaim_trace_common::{
        CNT_OTHER_FLUSHES, CNT_REMOTE_SHOOTDOWNS_TRACED, CTX_MEMCG, CTX_RECLAIM_PAGES,
        HIST_BATCH_FILL, HIST_FANOUT_TARGETS, HIST_IPIS, PassRecord, RECORD_PASS, decode::Record,
        hist_index,
    };

    use super::{KernelInfo, Summary, SummaryContext, build};
    use crate::{
        aggregate::{Aggregator, KernelSnapshot, Window},
        plan::{Failures, Plan, ProbeMode, plan, tests::FakeKernel},
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

    /// arm64: fan-out is the broadcast, with nothing per CPU, and no ratio of immediate
    /// flushes (arm64 has no event for one); the published schema takes it.
    #[test]
    fn broadcast_summary_has_no_per_cpu_figures_and_validates() {
        let facts = FakeKernel::debian_6_12_arm64().facts();
        let p = plan(&facts, ProbeMode::Auto, &Failures::default()).unwrap();
        let s = summarize(&anon_window(), &p);
        let f = &s.ipi_fanout;
        assert_eq!(f.source, "broadcast");
        assert_eq!(f.broadcast_cpus, Some(kernel_info().online_cpus));
        assert!(f.stats.histogram.is_empty() && f.stats.p50.is_none());
        assert!(f.candidates.is_none());
        assert_eq!(s.per_folio.immediate_flushes_per_reclaimed_folio, None);
        assert!(s.per_folio.deferred_flushes_per_reclaimed_folio.is_some());
        for c in s.by_context.values() {
            assert_eq!(c.per_folio.immediate_flushes_per_reclaimed_folio, None);
        }
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["ipi_fanout"]["broadcast_cpus"],
            kernel_info().online_cpus
        );
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../schema/summary-v2.schema.json")).unwrap();
        let v = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        // Merging two windows (report, compare) keeps what was not seen unseen.
        let m = crate::export::merge::merge(&s, &s);
        assert_eq!(m.per_folio.immediate_flushes_per_reclaimed_folio, None);
        assert_eq!(m.ipi_fanout.broadcast_cpus, f.broadcast_cpus);
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
}
