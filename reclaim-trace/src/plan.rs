//! The probe plan: for every signal, which source it comes from on this kernel and why.
//!
//! A pure function of the kernel facts and the user's tier limit, so that it can be printed
//! (`doctor`), stored with every summary, and tested without a kernel. Attach failures feed
//! back in as `Failures`, and the plan is computed again one tier lower for what failed.

use std::{collections::BTreeSet, fmt};

use reclaim_trace_common::{
    CFG_COUNT_FOLIOS, CFG_FLUSH_RMAP, CFG_PAGEOUT_PROBE, CFG_PRECISE_FLUSH, CFG_PRECISE_PASS,
    CFG_PRECISE_UNMAP, CFG_STALE_WINDOW, CFG_STAT_NR_RECLAIMED, Config, OFF_NONE, TpOffsets,
};
use serde::{Serialize, Serializer};

use crate::kernel::{Arch, KernelFacts};

/// How a signal is observed, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Fentry,
    Kprobe,
    Tracepoint,
    /// Not observable on this kernel.
    None,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Fentry => "fentry",
            Tier::Kprobe => "kprobe",
            Tier::Tracepoint => "tracepoint",
            Tier::None => "none",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most precise tier the user allows (`--probe-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ProbeMode {
    /// fentry where the kernel allows it, else kprobe, else tracepoints, per signal.
    #[default]
    Auto,
    Fentry,
    Kprobe,
    Tracepoint,
}

/// Observable quantities, in the order doctor and summaries list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    ReclaimPass,
    Folios,
    ReclaimContext,
    Pageouts,
    BatchedUnmaps,
    DirtyFlush,
    Flush,
    FanoutTargets,
    Ipis,
    RemoteShootdowns,
    StaleTlbWindow,
}

impl Signal {
    pub const ALL: [Signal; 11] = [
        Signal::ReclaimPass,
        Signal::Folios,
        Signal::ReclaimContext,
        Signal::Pageouts,
        Signal::BatchedUnmaps,
        Signal::DirtyFlush,
        Signal::Flush,
        Signal::FanoutTargets,
        Signal::Ipis,
        Signal::RemoteShootdowns,
        Signal::StaleTlbWindow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::ReclaimPass => "reclaim_pass",
            Signal::Folios => "folios",
            Signal::ReclaimContext => "reclaim_context",
            Signal::Pageouts => "pageouts",
            Signal::BatchedUnmaps => "batched_unmaps",
            Signal::DirtyFlush => "dirty_flush",
            Signal::Flush => "flush",
            Signal::FanoutTargets => "fanout_targets",
            Signal::Ipis => "ipis",
            Signal::RemoteShootdowns => "remote_shootdowns",
            Signal::StaleTlbWindow => "stale_tlb_window",
        }
    }
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One row of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignalPlan {
    pub signal: Signal,
    pub tier: Tier,
    /// What is attached, e.g. `kprobe:shrink_folio_list` or `tracepoint:tlb:tlb_flush`.
    pub source: String,
    /// Why this is not the best tier, or what the figure means in this tier.
    pub note: Option<String>,
}

/// How a program attaches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attach {
    Tracepoint {
        category: &'static str,
        name: &'static str,
    },
    /// A raw tracepoint (attached by event name; the category is for display).
    RawTracepoint {
        category: &'static str,
        name: &'static str,
    },
    Kprobe {
        function: String,
        ret: bool,
    },
    Fentry {
        function: String,
        exit: bool,
    },
}

/// A program of the eBPF object and where it goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProgramAttach {
    /// The program's symbol name in the object.
    pub program: &'static str,
    pub attach: Attach,
    /// The signal it serves (for reporting a failure).
    pub signal: Signal,
}

/// Precise probes that failed to load or attach, fed back for the next planning round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    /// fentry/fexit programs are refused by this kernel (e.g. EPERM, no trampoline support).
    pub fentry: bool,
    /// Functions whose kprobe failed.
    pub kprobe: BTreeSet<String>,
    /// Human-readable reasons, by function.
    pub reasons: Vec<(String, String)>,
}

/// The whole plan.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub signals: Vec<SignalPlan>,
    #[serde(skip)]
    pub programs: Vec<ProgramAttach>,
    #[serde(skip)]
    pub flags: u32,
    /// Tracepoint-tier batch fill is an estimate.
    pub batch_fill_exact: bool,
    /// How a batched flush reaches the other CPUs: IPIs (x86, fan-out counted per flush) or
    /// a hardware broadcast (arm64: no IPIs, no per-CPU targets to count).
    pub flush_reach: FlushReach,
}

/// See [`Plan::flush_reach`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushReach {
    Ipi,
    Broadcast,
}

impl FlushReach {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReach::Ipi => "ipi",
            FlushReach::Broadcast => "broadcast",
        }
    }

    pub fn of(facts: &KernelFacts) -> FlushReach {
        match facts.arch() {
            crate::kernel::Arch::Arm64 => FlushReach::Broadcast,
            _ => FlushReach::Ipi,
        }
    }
}

/// Why the tool cannot run at all.
#[derive(Debug, thiserror::Error)]
#[error(
    "no reclaim-pass signal can be attached on this kernel: {0}. Run `reclaim-trace doctor` \
     for the full picture"
)]
pub struct NoPassSignal(pub String);

impl Plan {
    pub fn signal(&self, s: Signal) -> &SignalPlan {
        // Every plan has one row per signal (built from Signal::ALL).
        self.signals
            .iter()
            .find(|p| p.signal == s)
            .unwrap_or(&self.signals[0])
    }

    /// `fentry`, `kprobe`, `tracepoint` or `mixed`, judged on the signals that the precise
    /// tier improves (pass boundaries, unmaps, flushes). Pageouts are left out: where `pageout`
    /// is inlined (6.18+) `mm_vmscan_write_folio` fires on exactly the same event.
    pub fn probe_mode(&self) -> &'static str {
        let tiers: BTreeSet<Tier> = [
            Signal::ReclaimPass,
            Signal::BatchedUnmaps,
            Signal::DirtyFlush,
            Signal::Flush,
        ]
        .iter()
        .map(|&s| match self.signal(s).tier {
            Tier::None => Tier::Tracepoint,
            t => t,
        })
        .collect();
        match tiers.into_iter().collect::<Vec<_>>().as_slice() {
            [t] => t.as_str(),
            _ => "mixed",
        }
    }

    /// Signals not observed at their best tier (for the "degraded" markers of the UIs).
    pub fn degraded(&self) -> Vec<&SignalPlan> {
        self.signals.iter().filter(|s| s.note.is_some()).collect()
    }
}

struct Planner<'a> {
    facts: &'a KernelFacts,
    mode: ProbeMode,
    failures: &'a Failures,
    signals: Vec<SignalPlan>,
    programs: Vec<ProgramAttach>,
    flags: u32,
}

impl Planner<'_> {
    fn tp(&self, cat: &str, name: &str) -> bool {
        self.facts.tracepoint(cat, name).is_some()
    }

    /// The precise tier to use for `function`, or why there is none.
    fn precise_tier(&self, function: &str) -> Result<Tier, String> {
        if self.mode == ProbeMode::Tracepoint {
            return Err("--probe-mode tracepoint".into());
        }
        if let Some(why) = self.facts.kallsyms.unprobeable_reason(function) {
            return Err(format!("{function}: {why}"));
        }
        let fentry_ok = self.mode != ProbeMode::Kprobe
            && !self.failures.fentry
            && self.facts.layout.funcs.contains(function);
        if fentry_ok {
            return Ok(Tier::Fentry);
        }
        if self.mode == ProbeMode::Fentry {
            return Err(format!(
                "{function}: fentry unavailable and --probe-mode fentry forbids kprobes"
            ));
        }
        if !self.facts.kprobes {
            let fentry = if self.failures.fentry {
                let why = self
                    .failures
                    .reasons
                    .first()
                    .map(|(_, w)| w.as_str())
                    .unwrap_or("refused");
                format!("fentry refused by this kernel ({why}); ")
            } else if !self.facts.layout.funcs.contains(function) {
                format!("{function} has no BTF record for fentry; ")
            } else {
                String::new()
            };
            return Err(format!(
                "{fentry}kprobes are not available (CONFIG_KPROBES off: no perf kprobe PMU)"
            ));
        }
        if self.failures.kprobe.contains(function) {
            let why = self
                .failures
                .reasons
                .iter()
                .find(|(f, _)| f == function)
                .map(|(_, w)| w.as_str())
                .unwrap_or("attach failed");
            return Err(format!("kprobe on {function} failed: {why}"));
        }
        Ok(Tier::Kprobe)
    }

    fn add_probe(
        &mut self,
        tier: Tier,
        function: &str,
        entry: Option<(&'static str, &'static str)>,
        exit: Option<(&'static str, &'static str)>,
        signal: Signal,
    ) {
        // (fentry program, kprobe program) for entry and exit.
        for (pair, is_exit) in [(entry, false), (exit, true)] {
            let Some((fe, kp)) = pair else { continue };
            let (program, attach) = match tier {
                Tier::Fentry => (
                    fe,
                    Attach::Fentry {
                        function: function.to_string(),
                        exit: is_exit,
                    },
                ),
                _ => (
                    kp,
                    Attach::Kprobe {
                        function: function.to_string(),
                        ret: is_exit,
                    },
                ),
            };
            self.programs.push(ProgramAttach {
                program,
                attach,
                signal,
            });
        }
    }

    fn add_tp(
        &mut self,
        program: &'static str,
        category: &'static str,
        name: &'static str,
        s: Signal,
    ) {
        if self.tp(category, name) && !self.programs.iter().any(|p| p.program == program) {
            self.programs.push(ProgramAttach {
                program,
                attach: Attach::Tracepoint { category, name },
                signal: s,
            });
        }
    }

    fn row(&mut self, signal: Signal, tier: Tier, source: String, note: Option<String>) {
        self.signals.push(SignalPlan {
            signal,
            tier,
            source,
            note,
        });
    }

    fn add_raw(
        &mut self,
        program: &'static str,
        category: &'static str,
        name: &'static str,
        s: Signal,
    ) {
        if !self.programs.iter().any(|p| p.program == program) {
            self.programs.push(ProgramAttach {
                program,
                attach: Attach::RawTracepoint { category, name },
                signal: s,
            });
        }
    }

    /// A raw tracepoint exists with the argument count its program expects (positional
    /// arguments: checked against the `btf_trace_<event>` prototype when BTF has it).
    fn raw_tp(&self, cat: &str, name: &str) -> Result<(), String> {
        let want = crate::kernel::btf::RAW_TRACEPOINTS
            .iter()
            .find(|(_, n, _)| *n == name)
            .map_or(0, |t| t.2);
        match self.facts.layout.raw_tracepoint_args.get(name) {
            Some(&n) if n == want => Ok(()),
            Some(&n) => Err(format!(
                "raw tracepoint {name} takes {n} arguments on this kernel, not the {want} the \
                 program reads"
            )),
            None if self.tp(cat, name) => Ok(()),
            None => Err(self.tracepoint_missing(cat, name)),
        }
    }

    /// Why tracepoint `cat:name` cannot be used: absent from this kernel, or tracefs (where
    /// the tracepoints are listed) could not be read.
    fn tracepoint_missing(&self, cat: &str, name: &str) -> String {
        match &self.facts.tracefs_error {
            Some(e) if self.facts.tracefs.is_none() => {
                format!("tracepoint {cat}:{name} cannot be used ({e})")
            }
            _ => format!("tracepoint {cat}:{name} not present"),
        }
    }

    /// Check that a tracepoint has the fields a program reads.
    fn tp_fields(&self, cat: &str, name: &str, fields: &[(&str, &[u32])]) -> Result<(), String> {
        let Some(f) = self.facts.tracepoint(cat, name) else {
            return Err(self.tracepoint_missing(cat, name));
        };
        for (field, sizes) in fields {
            if f.offset(field, sizes).is_none() {
                return Err(format!("tracepoint {cat}:{name} has no field {field}"));
            }
        }
        Ok(())
    }
}

impl Plan {
    /// The plan without the stale-TLB window's per-folio bookkeeping (`--no-stale-window`:
    /// what it costs is measured against this).
    pub fn without_stale_tlb_window(mut self) -> Plan {
        if self.flags & CFG_STALE_WINDOW == 0 {
            return self;
        }
        self.flags &= !CFG_STALE_WINDOW;
        self.programs.retain(|a| a.signal != Signal::StaleTlbWindow);
        for row in &mut self.signals {
            if row.signal == Signal::StaleTlbWindow {
                row.tier = Tier::None;
                row.source = "none".into();
                row.note = Some("switched off (--no-stale-window)".into());
            }
        }
        self
    }
}

/// Compute the plan. Fails only when no reclaim-pass signal exists at all.
use self::{
    reach::fanout,
    signals::{
        batched_unmaps, flushes, folios, pageouts, reclaim_context, reclaim_pass, stale_tlb_window,
    },
};

pub fn plan(
    facts: &KernelFacts,
    mode: ProbeMode,
    failures: &Failures,
) -> Result<Plan, NoPassSignal> {
    let mut p = Planner {
        facts,
        mode,
        failures,
        signals: Vec::new(),
        programs: Vec::new(),
        flags: 0,
    };
    reclaim_pass(&mut p)?;
    reclaim_context(&mut p);
    pageouts(&mut p);
    flushes(&mut p);
    let batch_fill_exact = batched_unmaps(&mut p);
    stale_tlb_window(&mut p);
    folios(&mut p);
    fanout(&mut p);
    p.signals.sort_by_key(|s| s.signal);
    p.programs.sort();
    Ok(Plan {
        signals: p.signals,
        programs: p.programs,
        flags: p.flags,
        batch_fill_exact,
        flush_reach: FlushReach::of(facts),
    })
}

impl Planner<'_> {
    fn signal_tier(&self, s: Signal) -> Tier {
        self.signals
            .iter()
            .find(|r| r.signal == s)
            .map(|r| r.tier)
            .unwrap_or(Tier::None)
    }
}

/// The configuration block for the programs: tracepoint offsets, BTF offsets, addresses.
pub fn build_config(facts: &KernelFacts, plan: &Plan, self_tgid: u32, extra_flags: u32) -> Config {
    let off = |cat: &str, name: &str, field: &str, sizes: &[u32]| {
        facts
            .tracepoint(cat, name)
            .and_then(|f| f.offset(field, sizes))
            .unwrap_or(OFF_NONE)
    };
    let mut tp = TpOffsets::NONE;
    tp.isolate_nr_taken = off("vmscan", "mm_vmscan_lru_isolate", "nr_taken", &[8]);
    tp.isolate_lru = off("vmscan", "mm_vmscan_lru_isolate", "lru", &[4]);
    let si = "mm_vmscan_lru_shrink_inactive";
    tp.shrink_nr_scanned = off("vmscan", si, "nr_scanned", &[8]);
    tp.shrink_nr_reclaimed = off("vmscan", si, "nr_reclaimed", &[8]);
    tp.shrink_nr_dirty = off("vmscan", si, "nr_dirty", &[8]);
    tp.shrink_nr_writeback = off("vmscan", si, "nr_writeback", &[8]);
    tp.shrink_nr_activate0 = off("vmscan", si, "nr_activate0", &[4]);
    tp.shrink_nr_activate1 = off("vmscan", si, "nr_activate1", &[4]);
    tp.shrink_nr_unmap_fail = off("vmscan", si, "nr_unmap_fail", &[8]);
    tp.reclaim_pages_nr_scanned = off("vmscan", "mm_vmscan_reclaim_pages", "nr_scanned", &[8]);
    tp.reclaim_pages_nr_reclaimed = off("vmscan", "mm_vmscan_reclaim_pages", "nr_reclaimed", &[8]);
    Config {
        self_tgid,
        flags: plan.flags | extra_flags,
        flush_tlb_func: facts.kallsyms.addr("flush_tlb_func").unwrap_or(0),
        ipi_callback: facts
            .kallsyms
            .addr("generic_smp_call_function_single_interrupt")
            .unwrap_or(0),
        cpumask_words: facts.possible_cpus.div_ceil(64).clamp(1, 128),
        folio_walk_limit: 1024,
        tp,
        btf: facts.layout.offsets,
        wakeup_bytes: reclaim_trace_common::DEFAULT_WAKEUP_BYTES,
    }
}

mod reach;
mod signals;
#[cfg(test)]
pub(crate) mod tests;
