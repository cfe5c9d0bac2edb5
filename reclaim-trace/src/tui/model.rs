//! What one refresh of the dashboard shows: plain data computed from aggregator windows, the
//! summaries of those windows and the tracer's own cost. No I/O: `sampler` gathers the inputs,
//! tests build frames from synthetic ones.

use std::collections::BTreeMap;

use crate::{
    aggregate::PassTable,
    export::summary::{Summary, Totals, cgroup_label, ns_per_run, pct_of_one_core},
    probe::stats::ProgramStat,
};

/// One refresh.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Since the session started, or since the last reset.
    pub total: Summary,
    /// The last interval only (the "now" figures and the sparkline).
    pub now: Summary,
    /// Seconds since the session started (a reset does not change it).
    pub elapsed_s: f64,
    /// One row per (cgroup, process, command), since start or reset.
    pub reclaimers: Vec<Reclaimer>,
    pub cost: Cost,
}

impl Frame {
    /// Flushes per reclaimed folio over the last interval (`None`: nothing was reclaimed).
    pub fn ratio_now(&self) -> Option<f64> {
        self.now.per_folio.flushes_per_reclaimed_folio
    }

    /// Number of CPUs to show in the shootdown heat row.
    pub fn cpus(&self) -> usize {
        self.now
            .remote_shootdowns_by_cpu
            .len()
            .max(self.total.remote_shootdowns_by_cpu.len())
    }

    /// Remote shootdowns received per second by each CPU over the last interval.
    pub fn shootdowns_per_s(&self) -> Vec<f64> {
        self.now
            .remote_shootdowns_by_cpu
            .iter()
            .map(|&v| per_s(v, self.now.duration_s))
            .collect()
    }
}

/// The rates of the dashboard are the summary's: one definition of a rate.
pub use crate::export::summary::per_s;

/// Who reclaimed, and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Reclaimer {
    pub cgroup_id: u64,
    /// Path below the memory controller's mount, when the id could be resolved.
    pub cgroup_path: Option<String>,
    pub comm: String,
    pub tgid: u32,
    pub totals: Totals,
    /// Folios reclaimed per second over the last interval.
    pub folios_per_s_now: f64,
}

impl Reclaimer {
    pub fn ratio(&self) -> Option<f64> {
        self.totals.flushes_per_reclaimed_folio()
    }

    /// The cgroup as shown: its path, or its id when the path is unknown (removed, too deep).
    pub fn cgroup_label(&self) -> String {
        cgroup_label(self.cgroup_path.as_deref(), self.cgroup_id)
    }
}

/// Rows of the reclaimer table: totals from `total`, the rate from `now` (`now_s` long).
pub fn reclaimers(
    total: &PassTable,
    now: &PassTable,
    now_s: f64,
    paths: &BTreeMap<u64, String>,
) -> Vec<Reclaimer> {
    total
        .by_reclaimer
        .iter()
        .map(|(k, counts)| Reclaimer {
            cgroup_id: k.cgroup_id,
            cgroup_path: paths.get(&k.cgroup_id).cloned(),
            comm: k.comm.clone(),
            tgid: k.tgid,
            totals: Totals::of_passes(counts),
            folios_per_s_now: now
                .by_reclaimer
                .get(k)
                .map_or(0.0, |c| per_s(c.folios_reclaimed, now_s)),
        })
        .collect()
}

/// Which reclaimers the tables show (`--cgroup`, `--pid`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// A memory cgroup path below the controller's mount (`/a/b`); its descendants match too.
    pub cgroup: Option<String>,
    /// The reclaiming process.
    pub pid: Option<u32>,
}

impl Filter {
    pub fn is_active(&self) -> bool {
        self.cgroup.is_some() || self.pid.is_some()
    }

    pub fn matches(&self, r: &Reclaimer) -> bool {
        let cgroup_ok = match (&self.cgroup, &r.cgroup_path) {
            (None, _) => true,
            (Some(want), Some(have)) => {
                want == "/"
                    || have == want
                    || have
                        .strip_prefix(want.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            // An unresolved cgroup cannot be shown to be inside the filter.
            (Some(_), None) => false,
        };
        cgroup_ok && self.pid.is_none_or(|p| p == r.tgid)
    }

    /// `cgroup /x, pid 42`, or empty.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.cgroup {
            parts.push(format!("cgroup {c}"));
        }
        if let Some(p) = self.pid {
            parts.push(format!("pid {p}"));
        }
        parts.join(", ")
    }
}

/// What tracing itself costs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cost {
    /// Kernel BPF statistics are on (else the BPF figures are unknown, not zero).
    pub stats_enabled: bool,
    /// Since the programs were loaded.
    pub bpf_run_time_ns: u64,
    pub bpf_run_count: u64,
    /// BPF run time over the last interval, in percent of one CPU.
    pub bpf_cpu_pct_now: f64,
    pub bpf_runs_per_s_now: f64,
    /// This process (user + system) over the last interval, in percent of one CPU.
    pub tool_cpu_pct_now: Option<f64>,
    pub programs: Vec<ProgramCost>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProgramCost {
    pub name: String,
    pub run_time_ns: u64,
    pub run_count: u64,
    pub cpu_pct_now: f64,
}

impl ProgramCost {
    pub fn ns_per_run(&self) -> Option<f64> {
        ns_per_run(self.run_time_ns, self.run_count)
    }
}

impl Cost {
    /// Cost from two readings of the programs' statistics `dt_s` apart, and the tool's CPU
    /// seconds used in that time (when known).
    pub fn between(
        stats_enabled: bool,
        before: &[ProgramStat],
        after: &[ProgramStat],
        dt_s: f64,
        tool_cpu_s: Option<f64>,
    ) -> Cost {
        let pct = |ns: u64| {
            if dt_s > 0.0 {
                100.0 * ns as f64 / (dt_s * 1e9)
            } else {
                0.0
            }
        };
        let mut programs: Vec<ProgramCost> = after
            .iter()
            .map(|a| {
                let b = before.iter().find(|b| b.name == a.name);
                let dns = a.run_time_ns.saturating_sub(b.map_or(0, |b| b.run_time_ns));
                ProgramCost {
                    name: a.name.clone(),
                    run_time_ns: a.run_time_ns,
                    run_count: a.run_count,
                    cpu_pct_now: pct(dns),
                }
            })
            .collect();
        programs.sort_by(|a, b| b.run_time_ns.cmp(&a.run_time_ns).then(a.name.cmp(&b.name)));
        let sum = |f: fn(&ProgramStat) -> u64, v: &[ProgramStat]| v.iter().map(f).sum::<u64>();
        let d_ns = sum(|p| p.run_time_ns, after).saturating_sub(sum(|p| p.run_time_ns, before));
        let d_runs = sum(|p| p.run_count, after).saturating_sub(sum(|p| p.run_count, before));
        Cost {
            stats_enabled,
            bpf_run_time_ns: sum(|p| p.run_time_ns, after),
            bpf_run_count: sum(|p| p.run_count, after),
            bpf_cpu_pct_now: pct(d_ns),
            bpf_runs_per_s_now: per_s(d_runs, dt_s),
            tool_cpu_pct_now: tool_cpu_s.map(|s| pct_of_one_core(s, dt_s).unwrap_or(0.0)),
            programs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::ReclaimerKey;
    use reclaim_trace_common::PassCounts;

    fn row(path: Option<&str>, tgid: u32) -> Reclaimer {
        Reclaimer {
            cgroup_id: 1,
            cgroup_path: path.map(String::from),
            comm: "x".into(),
            tgid,
            totals: Totals::default(),
            folios_per_s_now: 0.0,
        }
    }

    #[test]
    fn cgroup_filter_matches_the_subtree_not_siblings_with_a_common_prefix() {
        let f = Filter {
            cgroup: Some("/app".into()),
            pid: None,
        };
        assert!(f.matches(&row(Some("/app"), 1)));
        assert!(f.matches(&row(Some("/app/worker"), 1)));
        assert!(!f.matches(&row(Some("/apple"), 1)));
        assert!(!f.matches(&row(Some("/"), 1)));
        assert!(!f.matches(&row(None, 1)));
        let root = Filter {
            cgroup: Some("/".into()),
            pid: None,
        };
        assert!(root.matches(&row(Some("/anything"), 1)));
    }

    #[test]
    fn pid_filter_combines_with_cgroup() {
        let f = Filter {
            cgroup: Some("/app".into()),
            pid: Some(42),
        };
        assert!(f.matches(&row(Some("/app"), 42)));
        assert!(!f.matches(&row(Some("/app"), 43)));
        assert!(!f.matches(&row(Some("/db"), 42)));
        assert_eq!(f.describe(), "cgroup /app, pid 42");
        assert!(!Filter::default().is_active());
    }

    #[test]
    fn reclaimer_rows_take_totals_from_the_window_and_rates_from_the_interval() {
        let key = ReclaimerKey {
            cgroup_id: 7,
            comm: "stress".into(),
            tgid: 99,
        };
        let mut total = PassTable::default();
        total.by_reclaimer.insert(
            key.clone(),
            PassCounts {
                passes: 10,
                folios_reclaimed: 300,
                dirty_flushes: 150,
                ..Default::default()
            },
        );
        let mut now = PassTable::default();
        now.by_reclaimer.insert(
            key,
            PassCounts {
                folios_reclaimed: 60,
                ..Default::default()
            },
        );
        let paths = BTreeMap::from([(7, "/w".to_string())]);
        let r = reclaimers(&total, &now, 2.0, &paths);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].cgroup_label(), "/w");
        assert_eq!(r[0].tgid, 99);
        assert_eq!(r[0].totals.flushes, 150);
        assert_eq!(r[0].ratio(), Some(0.5));
        assert_eq!(r[0].folios_per_s_now, 30.0);
        let unresolved = reclaimers(&total, &now, 0.0, &BTreeMap::new());
        assert_eq!(unresolved[0].cgroup_label(), "id 7");
        assert_eq!(unresolved[0].folios_per_s_now, 0.0);
    }

    #[test]
    fn cost_is_the_difference_of_two_readings() {
        let st = |name: &str, ns: u64, n: u64| ProgramStat {
            name: name.into(),
            run_time_ns: ns,
            run_count: n,
        };
        let before = [st("tlb_flush", 1_000_000, 1000), st("vmscan", 0, 0)];
        let after = [
            st("tlb_flush", 21_000_000, 21_000),
            st("vmscan", 5_000_000, 500),
        ];
        let c = Cost::between(true, &before, &after, 2.0, Some(0.01));
        assert_eq!(c.bpf_run_time_ns, 26_000_000);
        assert_eq!(c.bpf_run_count, 21_500);
        assert!(
            (c.bpf_cpu_pct_now - 1.25).abs() < 1e-9,
            "{}",
            c.bpf_cpu_pct_now
        );
        assert_eq!(c.bpf_runs_per_s_now, 10_250.0);
        assert_eq!(c.tool_cpu_pct_now, Some(0.5));
        assert_eq!(c.programs[0].name, "tlb_flush");
        assert_eq!(c.programs[0].ns_per_run(), Some(1000.0));
        assert!((c.programs[1].cpu_pct_now - 0.25).abs() < 1e-9);
        // A program that appears later counts from zero; no interval gives no percentages.
        let c = Cost::between(false, &[], &after, 0.0, None);
        assert_eq!(c.bpf_cpu_pct_now, 0.0);
        assert_eq!(c.tool_cpu_pct_now, None);
    }
}
