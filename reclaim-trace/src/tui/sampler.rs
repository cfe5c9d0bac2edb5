//! Reads a frame out of the session every interval: the window since start (or reset), the
//! last interval, the programs' run-time statistics and this process's CPU time.

use crate::session::process_cpu_s;
use crate::{
    aggregate::Mark,
    export::summary::{self, SummaryContext},
    probe::stats::ProgramStat,
    session::Session,
};

use super::model::{Cost, Frame, reclaimers};

pub struct Sampler {
    mark: Mark,
    programs: Vec<ProgramStat>,
    cpu_s: Option<f64>,
}

impl Sampler {
    pub fn new(s: &Session) -> Sampler {
        Sampler {
            mark: s.agg.mark(),
            programs: s.tracer().program_stats(),
            cpu_s: process_cpu_s(),
        }
    }

    /// After `Aggregator::reset`: the next interval starts now.
    pub fn reset(&mut self, s: &Session) {
        self.mark = s.agg.mark();
    }

    /// The frame for the latest snapshot; the next interval starts here.
    pub fn sample(&mut self, s: &Session) -> Frame {
        let total_w = s.agg.window();
        let now_w = s.agg.since(&self.mark);
        // One walk of the cgroup tree for both summaries and the reclaimer rows.
        let paths = s.cgroup_paths();
        let cx = SummaryContext {
            kernel: s.kernel_info(),
            plan: &s.tracer().plan,
            workload: s.workload().map(|w| w.info.clone()),
            cgroup_paths: &paths,
            tracer: Some(s.tracer_info()),
        };
        let programs = s.tracer().program_stats();
        let cpu_s = process_cpu_s();
        let cost = Cost::between(
            s.bpf_stats_enabled(),
            &self.programs,
            &programs,
            now_w.duration_s,
            cpu_s.zip(self.cpu_s).map(|(now, before)| now - before),
        );
        let frame = Frame {
            total: summary::build(&total_w, &cx),
            now: summary::build(&now_w, &cx),
            elapsed_s: s.now_s(),
            reclaimers: reclaimers(&total_w.passes, &now_w.passes, now_w.duration_s, &paths),
            cost,
        };
        self.mark = s.agg.mark();
        self.programs = programs;
        self.cpu_s = cpu_s;
        frame
    }
}
