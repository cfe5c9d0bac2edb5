//! The probe plan: for every signal, which source it comes from on this kernel and why.
//!
//! A pure function of the kernel facts and the user's tier limit, so that it can be printed
//! (`doctor`), stored with every summary, and tested without a kernel. Attach failures feed
//! back in as `Failures`, and the plan is computed again one tier lower for what failed.

use std::{collections::BTreeSet, fmt};

use reclaim_trace_common::{
    CFG_COUNT_FOLIOS, CFG_PAGEOUT_PROBE, CFG_PRECISE_FLUSH, CFG_PRECISE_PASS, CFG_PRECISE_UNMAP,
    CFG_STALE_WINDOW, CFG_STAT_NR_RECLAIMED, Config, OFF_NONE, TpOffsets,
};
use serde::{Serialize, Serializer};

use crate::kernel::KernelFacts;

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
            None => Err(format!("tracepoint {cat}:{name} not present")),
        }
    }

    /// Check that a tracepoint has the fields a program reads.
    fn tp_fields(&self, cat: &str, name: &str, fields: &[(&str, &[u32])]) -> Result<(), String> {
        let Some(f) = self.facts.tracepoint(cat, name) else {
            return Err(format!("tracepoint {cat}:{name} not present"));
        };
        for (field, sizes) in fields {
            if f.offset(field, sizes).is_none() {
                return Err(format!("tracepoint {cat}:{name} has no field {field}"));
            }
        }
        Ok(())
    }
}

/// The stale-TLB window per written-out folio: its unmap, the flush that covers it and its
/// `pageout()` must all be probed in the precise tier (`pageout` is inlined on 6.18 and 7.2).
fn stale_tlb_window(p: &mut Planner<'_>) {
    if p.flags & CFG_PRECISE_UNMAP == 0 {
        p.row(
            Signal::StaleTlbWindow,
            Tier::None,
            "none".into(),
            Some("not measured: needs the precise try_to_unmap and flush probes".into()),
        );
        return;
    }
    match p.precise_tier("pageout") {
        Ok(tier) => {
            p.flags |= CFG_STALE_WINDOW;
            p.add_probe(
                tier,
                "pageout",
                Some(("fe_pageout", "kp_pageout")),
                None,
                Signal::StaleTlbWindow,
            );
            p.row(
                Signal::StaleTlbWindow,
                tier,
                format!("{tier}:try_to_unmap -> arch_tlbbatch_flush exit -> pageout entry"),
                None,
            );
        }
        // pageout() is inlined on 6.18 and 7.2: its tracepoint (already counting pageouts)
        // marks the write instead, just after ->writepage() began it.
        Err(_)
            if p.flags & CFG_PAGEOUT_PROBE == 0
                && p.programs.iter().any(|a| a.program == "vmscan_write_folio") =>
        {
            p.flags |= CFG_STALE_WINDOW;
            let tier = p
                .signals
                .iter()
                .find(|r| r.signal == Signal::BatchedUnmaps)
                .map_or(Tier::Tracepoint, |r| r.tier);
            p.row(
                Signal::StaleTlbWindow,
                tier,
                "try_to_unmap -> arch_tlbbatch_flush exit -> raw_tracepoint:vmscan:mm_vmscan_write_folio".into(),
                Some("pageout() is inlined: the window ends at its tracepoint, after the write began".into()),
            );
        }
        Err(why) => p.row(
            Signal::StaleTlbWindow,
            Tier::None,
            "none".into(),
            Some(format!("not measured: {why}")),
        ),
    }
}

/// Reclaimed folios, counted as the pass frees them: the kernel reports reclaimed base pages
/// only, in every tier.
fn folios(p: &mut Planner<'_>) {
    match p.raw_tp("kmem", "mm_page_free") {
        Ok(()) => {
            p.flags |= CFG_COUNT_FOLIOS;
            p.add_raw("mm_page_free", "kmem", "mm_page_free", Signal::Folios);
            p.row(
                Signal::Folios,
                p.signal_tier(Signal::ReclaimPass),
                "raw_tracepoint:kmem:mm_page_free in the pass (folio and order), checked against the pass's reclaimed pages".into(),
                None,
            );
        }
        Err(why) => p.row(
            Signal::Folios,
            Tier::None,
            "none".into(),
            Some(format!(
                "{why}: reclaimed folios are reported as base pages"
            )),
        ),
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
    })
}

/// Reclaim passes: `shrink_folio_list` entry/exit where probeable, else the vmscan tracepoints
/// around it.
fn reclaim_pass(p: &mut Planner<'_>) -> Result<(), NoPassSignal> {
    let facts = p.facts;
    let layout = &facts.layout;
    let has = |off: u32| off != OFF_NONE;
    // Named shrink_page_list before v6.1.
    let sfl = if !facts.kallsyms.has("shrink_folio_list") && facts.kallsyms.has("shrink_page_list")
    {
        "shrink_page_list"
    } else {
        "shrink_folio_list"
    };
    let pass_precise = match p.precise_tier(sfl) {
        Ok(t) if layout.shrink_folio_list_void && !has(layout.offsets.stat_nr_reclaimed) => Err(
            format!("{sfl} returns void but reclaim_stat.nr_reclaimed is missing from BTF ({t})"),
        ),
        other => other,
    };
    let tp_pass = p
        .tp_fields(
            "vmscan",
            "mm_vmscan_lru_isolate",
            &[("nr_taken", &[8]), ("lru", &[4])],
        )
        .and_then(|()| {
            p.tp_fields(
                "vmscan",
                "mm_vmscan_lru_shrink_inactive",
                &[("nr_scanned", &[8]), ("nr_reclaimed", &[8])],
            )
        });
    let mgl = facts.lru_gen == Some(true);
    match pass_precise {
        Ok(tier) => {
            p.flags |= CFG_PRECISE_PASS;
            if layout.shrink_folio_list_void {
                p.flags |= CFG_STAT_NR_RECLAIMED;
            }
            p.add_probe(
                tier,
                sfl,
                Some(("fe_shrink_folio_list", "kp_shrink_folio_list")),
                Some(("fx_shrink_folio_list", "kr_shrink_folio_list")),
                Signal::ReclaimPass,
            );
            let variant = match (
                layout.shrink_folio_list_params,
                layout.shrink_folio_list_void,
            ) {
                (Some(n), true) => format!("{n} args, void: stat->nr_reclaimed"),
                (Some(n), false) => format!("{n} args, returns reclaimed pages"),
                (None, _) => "not in BTF".to_string(),
            };
            p.row(
                Signal::ReclaimPass,
                tier,
                format!("{tier}:{sfl} ({variant})"),
                None,
            );
        }
        Err(why) => {
            if let Err(tp_why) = tp_pass {
                return Err(NoPassSignal(format!("{why}; {tp_why}")));
            }
            // Raw tracepoints when BTF shows the prototypes (no trace record is built, the
            // arguments are read directly); the classic ones, by field name, otherwise.
            let raw = &layout.raw_tracepoint_args;
            let raw_ok = matches!(raw.get("mm_vmscan_lru_isolate"), Some(7 | 8))
                && raw.get("mm_vmscan_lru_shrink_inactive") == Some(&6);
            let kind = if raw_ok {
                "raw_tracepoint"
            } else {
                "tracepoint"
            };
            if raw_ok {
                // `lru` is the last argument: 7 arguments since 6.3, 8 before.
                let isolate = if raw.get("mm_vmscan_lru_isolate") == Some(&8) {
                    "vmscan_lru_isolate_raw8"
                } else {
                    "vmscan_lru_isolate_raw"
                };
                p.add_raw(
                    isolate,
                    "vmscan",
                    "mm_vmscan_lru_isolate",
                    Signal::ReclaimPass,
                );
                p.add_raw(
                    "vmscan_lru_shrink_inactive_raw",
                    "vmscan",
                    "mm_vmscan_lru_shrink_inactive",
                    Signal::ReclaimPass,
                );
            } else {
                p.add_tp(
                    "vmscan_lru_isolate",
                    "vmscan",
                    "mm_vmscan_lru_isolate",
                    Signal::ReclaimPass,
                );
                p.add_tp(
                    "vmscan_lru_shrink_inactive",
                    "vmscan",
                    "mm_vmscan_lru_shrink_inactive",
                    Signal::ReclaimPass,
                );
            }
            p.add_tp(
                "vmscan_reclaim_pages",
                "vmscan",
                "mm_vmscan_reclaim_pages",
                Signal::ReclaimPass,
            );
            let mut note = format!("precise tier unavailable ({why})");
            if mgl {
                note.push_str(
                    "; MGLRU is on: passes without lru_shrink_inactive (before 6.12) are missed",
                );
            }
            p.row(
                Signal::ReclaimPass,
                Tier::Tracepoint,
                format!("{kind}:vmscan:mm_vmscan_lru_isolate..mm_vmscan_lru_shrink_inactive"),
                Some(note),
            );
        }
    }
    Ok(())
}

/// Which reclaim context a pass belongs to.
fn reclaim_context(p: &mut Planner<'_>) {
    let layout = &p.facts.layout;
    let has = |off: u32| off != OFF_NONE;
    for (prog, name) in [
        ("vmscan_direct_begin", "mm_vmscan_direct_reclaim_begin"),
        ("vmscan_direct_end", "mm_vmscan_direct_reclaim_end"),
        ("vmscan_memcg_begin", "mm_vmscan_memcg_reclaim_begin"),
        ("vmscan_memcg_end", "mm_vmscan_memcg_reclaim_end"),
        ("vmscan_node_begin", "mm_vmscan_node_reclaim_begin"),
        ("vmscan_node_end", "mm_vmscan_node_reclaim_end"),
        (
            "vmscan_softlimit_begin",
            "mm_vmscan_memcg_softlimit_reclaim_begin",
        ),
        (
            "vmscan_softlimit_end",
            "mm_vmscan_memcg_softlimit_reclaim_end",
        ),
    ] {
        p.add_tp(prog, "vmscan", name, Signal::ReclaimContext);
    }
    let precise_ctx = p.flags & CFG_PRECISE_PASS != 0
        && has(layout.offsets.sc_target_mem_cgroup)
        && has(layout.offsets.sc_proactive_byte);
    if precise_ctx {
        p.row(
            Signal::ReclaimContext,
            p.signal_tier(Signal::ReclaimPass),
            "PF_KSWAPD, scan_control.target_mem_cgroup, scan_control.proactive (BTF)".into(),
            None,
        );
    } else {
        p.row(
            Signal::ReclaimContext,
            Tier::Tracepoint,
            "PF_KSWAPD + tracepoint:vmscan:*_reclaim_begin/end windows".into(),
            Some("proactive reclaim (memory.reclaim) is counted as memcg".into()),
        );
    }
}

/// Successful pageouts: `pageout` where it is a symbol, else its tracepoint.
fn pageouts(p: &mut Planner<'_>) {
    match p.precise_tier("pageout") {
        Ok(tier) => {
            p.flags |= CFG_PAGEOUT_PROBE;
            p.add_probe(
                tier,
                "pageout",
                None,
                Some(("fx_pageout", "kr_pageout")),
                Signal::Pageouts,
            );
            p.row(
                Signal::Pageouts,
                tier,
                format!("{tier}:pageout (returns PAGE_SUCCESS)"),
                None,
            );
        }
        Err(why) => {
            if p.raw_tp("vmscan", "mm_vmscan_write_folio").is_ok() {
                p.add_raw(
                    "vmscan_write_folio",
                    "vmscan",
                    "mm_vmscan_write_folio",
                    Signal::Pageouts,
                );
                p.row(
                    Signal::Pageouts,
                    Tier::Tracepoint,
                    "raw_tracepoint:vmscan:mm_vmscan_write_folio".into(),
                    // The tracepoint fires on exactly the successful pageouts; being here is
                    // not a loss of precision, so no note unless the precise tier was wanted.
                    (!why.contains("inlined") && !why.contains("probe-mode"))
                        .then(|| format!("pageout probe unavailable: {why}")),
                );
            } else {
                p.row(
                    Signal::Pageouts,
                    Tier::None,
                    "none".into(),
                    Some(format!(
                        "{why}; tracepoint vmscan:mm_vmscan_write_folio not present"
                    )),
                );
            }
        }
    }
}

/// Flushes: `arch_tlbbatch_flush` + `try_to_unmap_flush_dirty` go together, else `tlb_flush`.
fn flushes(p: &mut Planner<'_>) {
    let layout = &p.facts.layout;
    let has = |off: u32| off != OFF_NONE;
    let flush_precise = p
        .precise_tier("arch_tlbbatch_flush")
        .and_then(|t| p.precise_tier("try_to_unmap_flush_dirty").map(|_| t))
        .and_then(|t| {
            if !has(layout.offsets.batch_cpumask) {
                Err("arch_tlbflush_unmap_batch.cpumask missing from BTF".into())
            } else if !has(layout.offsets.task_tlb_ubc_writable) {
                Err("task_struct.tlb_ubc.writable missing from BTF".into())
            } else {
                Ok(t)
            }
        });
    let tlb_tp = p.raw_tp("tlb", "tlb_flush");
    if tlb_tp.is_ok() {
        p.add_raw("tlb_flush", "tlb", "tlb_flush", Signal::Flush);
    }
    match flush_precise {
        Ok(tier) => {
            p.flags |= CFG_PRECISE_FLUSH;
            p.add_probe(
                tier,
                "arch_tlbbatch_flush",
                Some(("fe_arch_tlbbatch_flush", "kp_arch_tlbbatch_flush")),
                Some(("fx_arch_tlbbatch_flush", "kr_arch_tlbbatch_flush")),
                Signal::Flush,
            );
            p.add_probe(
                tier,
                "try_to_unmap_flush_dirty",
                Some(("fe_try_to_unmap_flush_dirty", "kp_try_to_unmap_flush_dirty")),
                None,
                Signal::DirtyFlush,
            );
            p.row(
                Signal::Flush,
                tier,
                format!("{tier}:arch_tlbbatch_flush (batch->cpumask)"),
                None,
            );
            p.row(
                Signal::DirtyFlush,
                tier,
                format!("{tier}:try_to_unmap_flush_dirty (current->tlb_ubc.writable)"),
                None,
            );
        }
        Err(why) => match tlb_tp {
            Ok(()) => {
                p.row(
                    Signal::Flush,
                    Tier::Tracepoint,
                    "raw_tracepoint:tlb:tlb_flush (reason 4 pages=-1, reason 2)".into(),
                    Some(format!(
                        "precise tier unavailable ({why}); batch cpumask not observable; \
                         INVLPGB/hypercall flushes emit no event"
                    )),
                );
                p.row(
                    Signal::DirtyFlush,
                    Tier::Tracepoint,
                    "raw_tracepoint:tlb:tlb_flush followed by mm_vmscan_write_folio".into(),
                    Some("a flush followed by a pageout on the same task counts as dirty".into()),
                );
            }
            Err(tp_why) => {
                p.row(
                    Signal::Flush,
                    Tier::None,
                    "none".into(),
                    Some(format!("{why}; {tp_why}")),
                );
                p.row(
                    Signal::DirtyFlush,
                    Tier::None,
                    "none".into(),
                    Some(format!("{why}; {tp_why}")),
                );
            }
        },
    }
}

/// Folios deferred into a flush batch (`try_to_unmap` with `TTU_BATCH_FLUSH`): batch fill is
/// exact with them (the return value), estimated without.
fn batched_unmaps(p: &mut Planner<'_>) -> bool {
    let unmap = p.precise_tier("try_to_unmap").and_then(|t| {
        if p.flags & CFG_PRECISE_PASS == 0 {
            Err("needs the precise reclaim-pass probe".into())
        } else if p.flags & CFG_PRECISE_FLUSH == 0 {
            Err("needs the precise flush probe".into())
        } else {
            Ok(t)
        }
    });
    match unmap {
        Ok(tier) => {
            p.flags |= CFG_PRECISE_UNMAP;
            p.add_probe(
                tier,
                "try_to_unmap",
                Some(("fe_try_to_unmap", "kp_try_to_unmap")),
                None,
                Signal::BatchedUnmaps,
            );
            p.row(
                Signal::BatchedUnmaps,
                tier,
                format!("{tier}:try_to_unmap (flags & TTU_BATCH_FLUSH)"),
                None,
            );
            true
        }
        Err(why) => {
            p.row(
                Signal::BatchedUnmaps,
                Tier::None,
                "estimate: reclaimed folios shared among the pass's flushes".into(),
                Some(format!("not observable ({why}); batch fill is an estimate")),
            );
            false
        }
    }
}

/// Where each flush went: csd targets, IPIs, and the remote shootdowns each CPU received.
fn fanout(p: &mut Planner<'_>) {
    let facts = p.facts;
    let csd = p.raw_tp("csd", "csd_queue_cpu");
    let have_flush_func = facts.kallsyms.addr("flush_tlb_func").is_some();
    match (csd, have_flush_func) {
        (Ok(()), true) => {
            p.add_raw(
                "csd_queue_cpu",
                "csd",
                "csd_queue_cpu",
                Signal::FanoutTargets,
            );
            p.row(
                Signal::FanoutTargets,
                Tier::Tracepoint,
                "raw_tracepoint:csd:csd_queue_cpu (func == flush_tlb_func)".into(),
                None,
            );
        }
        (csd, _) => {
            let why = match csd {
                Err(w) => format!("{w} (added in 6.5)"),
                Ok(()) => "flush_tlb_func address not readable from /proc/kallsyms".into(),
            };
            p.row(
                Signal::FanoutTargets,
                Tier::None,
                "none".into(),
                Some(format!(
                    "{why}; only candidates (precise tier) and per-CPU remote shootdowns remain"
                )),
            );
        }
    }
    let ipi_cb = facts
        .kallsyms
        .addr("generic_smp_call_function_single_interrupt")
        .is_some();
    let ipi_cpu = p.raw_tp("ipi", "ipi_send_cpu");
    let ipi_mask = p.raw_tp("ipi", "ipi_send_cpumask");
    match (ipi_cpu, ipi_cb) {
        (Ok(()), true) => {
            p.add_raw("ipi_send_cpu", "ipi", "ipi_send_cpu", Signal::Ipis);
            if ipi_mask.is_ok() {
                p.add_raw("ipi_send_cpumask", "ipi", "ipi_send_cpumask", Signal::Ipis);
            }
            p.row(
                Signal::Ipis,
                Tier::Tracepoint,
                "raw_tracepoint:ipi:ipi_send_cpu/ipi_send_cpumask during a flush".into(),
                None,
            );
        }
        (r, _) => {
            let why = match r {
                Err(w) => format!("{w} (added in 6.4)"),
                Ok(()) => "IPI callback address not readable from /proc/kallsyms".into(),
            };
            p.row(Signal::Ipis, Tier::None, "none".into(), Some(why));
        }
    }
    if p.signal_tier(Signal::FanoutTargets) == Tier::Tracepoint {
        p.row(
            Signal::RemoteShootdowns,
            Tier::Tracepoint,
            "raw_tracepoint:csd:csd_queue_cpu target CPU (flush_tlb_func)".into(),
            None,
        );
    } else if p.tp("tlb", "tlb_flush") {
        p.row(
            Signal::RemoteShootdowns,
            Tier::Tracepoint,
            "raw_tracepoint:tlb:tlb_flush reason 1, per CPU".into(),
            Some(
                "hardirq events are dropped when they interrupt another BPF program: an \
                 undercount"
                    .into(),
            ),
        );
    } else {
        p.row(
            Signal::RemoteShootdowns,
            Tier::None,
            "none".into(),
            Some("tracepoint tlb:tlb_flush not present".into()),
        );
    }
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
        _pad: 0,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use reclaim_trace_common::BtfOffsets;

    use super::*;
    use crate::kernel::{
        Privileges, TRACEPOINTS, TracepointInfo, btf::Layout, kallsyms::Kallsyms,
        tracefs::EventFormat,
    };

    /// Field lists as in the 6.18 tracefs formats (offsets differ per kernel; these are the
    /// 6.18 ones).
    fn format_of(name: &str) -> &'static str {
        match name {
            "mm_vmscan_lru_isolate" => {
                "field:unsigned long nr_taken;\toffset:40;\tsize:8;\tsigned:0;\n\
                 field:int lru;\toffset:48;\tsize:4;\tsigned:1;"
            }
            "mm_vmscan_lru_shrink_inactive" => {
                "field:unsigned long nr_scanned;\toffset:16;\tsize:8;\tsigned:0;\n\
                 field:unsigned long nr_reclaimed;\toffset:24;\tsize:8;\tsigned:0;\n\
                 field:unsigned int nr_activate0;\toffset:64;\tsize:4;\tsigned:0;"
            }
            "mm_vmscan_reclaim_pages" => {
                "field:unsigned long nr_scanned;\toffset:16;\tsize:8;\tsigned:0;\n\
                 field:unsigned long nr_reclaimed;\toffset:24;\tsize:8;\tsigned:0;"
            }
            "tlb_flush" => {
                "field:int reason;\toffset:8;\tsize:4;\tsigned:1;\n\
                 field:unsigned long pages;\toffset:16;\tsize:8;\tsigned:0;"
            }
            "ipi_send_cpu" => "field:void * callback;\toffset:24;\tsize:8;\tsigned:0;",
            "ipi_send_cpumask" => {
                "field:__data_loc cpumask_t cpumask;\toffset:8;\tsize:4;\tsigned:0;\n\
                 field:void * callback;\toffset:24;\tsize:8;\tsigned:0;"
            }
            "csd_queue_cpu" => {
                "field:unsigned int cpu;\toffset:8;\tsize:4;\tsigned:0;\n\
                 field:void * func;\toffset:24;\tsize:8;\tsigned:0;"
            }
            _ => "field:int nid;\toffset:8;\tsize:4;\tsigned:1;",
        }
    }

    pub(crate) struct FakeKernel {
        pub kprobes: bool,
        pub symbols: Vec<&'static str>,
        pub missing_tracepoints: Vec<&'static str>,
        pub btf_funcs: Vec<&'static str>,
        pub void_shrink: bool,
    }

    impl FakeKernel {
        /// This CI machine: 6.18, CONFIG_KPROBES off, everything else present.
        pub fn host_6_18() -> Self {
            FakeKernel {
                kprobes: false,
                symbols: vec![
                    "shrink_folio_list",
                    "try_to_unmap",
                    "try_to_unmap_flush_dirty",
                    "arch_tlbbatch_flush",
                    "flush_tlb_func",
                    "generic_smp_call_function_single_interrupt",
                ],
                missing_tracepoints: vec![],
                btf_funcs: vec![
                    "shrink_folio_list",
                    "try_to_unmap",
                    "try_to_unmap_flush_dirty",
                    "arch_tlbbatch_flush",
                ],
                void_shrink: false,
            }
        }

        /// Debian 6.1: kprobes, `pageout` a real symbol, no csd:/ipi: tracepoints.
        pub fn debian_6_1() -> Self {
            let mut k = Self::host_6_18();
            k.kprobes = true;
            k.symbols.push("pageout");
            k.btf_funcs.push("pageout");
            k.missing_tracepoints = vec![
                "csd:csd_queue_cpu",
                "ipi:ipi_send_cpu",
                "ipi:ipi_send_cpumask",
            ];
            k
        }

        pub fn facts(&self) -> KernelFacts {
            let kallsyms_text: String = self
                .symbols
                .iter()
                .enumerate()
                .map(|(i, s)| format!("ffffffff8100{i:04x} t {s}\n"))
                .collect();
            let tracepoints: BTreeMap<String, TracepointInfo> = TRACEPOINTS
                .iter()
                .map(|(cat, name)| {
                    let key = format!("{cat}:{name}");
                    let present = !self.missing_tracepoints.contains(&key.as_str());
                    (
                        key,
                        TracepointInfo {
                            present,
                            format: if present {
                                EventFormat::parse(format_of(name))
                            } else {
                                EventFormat::default()
                            },
                        },
                    )
                })
                .collect();
            let mut offsets = BtfOffsets::NONE;
            offsets.task_flags = 44;
            offsets.task_tlb_ubc_writable = 3300;
            offsets.task_tlb_ubc_flush_required = 3299;
            offsets.sc_target_mem_cgroup = 8;
            offsets.sc_nr_scanned = 80;
            offsets.sc_proactive_byte = 40;
            offsets.sc_proactive_mask = 0x4;
            offsets.batch_cpumask = 0;
            if self.void_shrink {
                offsets.stat_nr_reclaimed = 48;
            }
            KernelFacts {
                release: "test".into(),
                machine: "x86_64".into(),
                privileges: Privileges {
                    euid: 0,
                    cap_sys_admin: true,
                    cap_bpf: true,
                    cap_perfmon: true,
                },
                tracefs: Some("/sys/kernel/tracing".into()),
                tracefs_error: None,
                fentry_supported: None,
                btf: true,
                btf_error: None,
                kprobes: self.kprobes,
                kallsyms_addresses_hidden: false,
                possible_cpus: 4,
                online_cpus: 4,
                lru_gen: None,
                invlpgb: false,
                hypervisor: None,
                tracepoints,
                kallsyms: Kallsyms::parse(&kallsyms_text),
                layout: Layout {
                    offsets,
                    shrink_folio_list_params: Some(5),
                    shrink_folio_list_void: self.void_shrink,
                    cpumask_bytes: Some(32),
                    batch_unmapped_pages: false,
                    raw_tracepoint_args: crate::kernel::btf::RAW_TRACEPOINTS
                        .iter()
                        .filter(|(c, e, _)| {
                            !self
                                .missing_tracepoints
                                .contains(&format!("{c}:{e}").as_str())
                        })
                        .map(|(_, e, n)| (e.to_string(), *n))
                        .collect(),
                    funcs: self.btf_funcs.iter().map(|s| s.to_string()).collect(),
                    missing: vec![],
                },
                variants: vec![],
            }
        }
    }

    fn programs(p: &Plan) -> Vec<&str> {
        p.programs.iter().map(|a| a.program).collect()
    }

    #[test]
    fn host_without_kprobes_after_fentry_refusal_is_tracepoint_only() {
        let facts = FakeKernel::host_6_18().facts();
        let failures = Failures {
            fentry: true,
            reasons: vec![("arch_tlbbatch_flush".into(), "EPERM".into())],
            ..Default::default()
        };
        let p = plan(&facts, ProbeMode::Auto, &failures).unwrap();
        assert_eq!(p.probe_mode(), "tracepoint");
        assert_eq!(p.flags, CFG_COUNT_FOLIOS);
        assert!(!p.batch_fill_exact);
        assert_eq!(p.signal(Signal::Folios).tier, Tier::Tracepoint);
        let progs = programs(&p);
        for want in [
            "tlb_flush",
            "csd_queue_cpu",
            "ipi_send_cpu",
            "vmscan_lru_isolate_raw",
            "vmscan_write_folio",
        ] {
            assert!(progs.contains(&want), "{want} not in {progs:?}");
        }
        assert!(
            progs
                .iter()
                .all(|p| !p.starts_with("kp_") && !p.starts_with("fe_"))
        );
        let note = p.signal(Signal::ReclaimPass).note.clone().unwrap();
        assert!(
            note.contains("fentry refused") && note.contains("EPERM"),
            "{note}"
        );
        assert_eq!(p.signal(Signal::BatchedUnmaps).tier, Tier::None);
        assert_eq!(p.signal(Signal::FanoutTargets).tier, Tier::Tracepoint);
    }

    #[test]
    fn folios_are_pages_and_say_so_without_the_page_free_event() {
        let mut k = FakeKernel::host_6_18();
        k.missing_tracepoints.push("kmem:mm_page_free");
        let p = plan(&k.facts(), ProbeMode::Auto, &Failures::default()).unwrap();
        assert_eq!(p.flags & CFG_COUNT_FOLIOS, 0);
        assert!(!programs(&p).contains(&"mm_page_free"));
        let f = p.signal(Signal::Folios);
        assert_eq!(f.tier, Tier::None);
        assert!(f.note.as_deref().unwrap().contains("base pages"), "{f:?}");
        let full = plan(
            &FakeKernel::host_6_18().facts(),
            ProbeMode::Auto,
            &Failures::default(),
        );
        assert!(programs(&full.unwrap()).contains(&"mm_page_free"));
    }

    #[test]
    fn fentry_first_when_nothing_failed() {
        let facts = FakeKernel::host_6_18().facts();
        let p = plan(&facts, ProbeMode::Auto, &Failures::default()).unwrap();
        assert_eq!(p.probe_mode(), "fentry");
        assert_eq!(
            p.flags,
            CFG_PRECISE_PASS
                | CFG_PRECISE_FLUSH
                | CFG_PRECISE_UNMAP
                | CFG_STALE_WINDOW
                | CFG_COUNT_FOLIOS
        );
        assert!(p.batch_fill_exact);
        // The stale-TLB window ends at mm_vmscan_write_folio where pageout() is inlined.
        let w = p.signal(Signal::StaleTlbWindow);
        assert_eq!(w.tier, Tier::Fentry);
        assert!(w.source.ends_with("mm_vmscan_write_folio"), "{}", w.source);
        assert!(w.note.as_deref().is_some_and(|n| n.contains("inlined")));
        assert_eq!(
            p.clone().without_stale_tlb_window().flags & CFG_STALE_WINDOW,
            0
        );
        let progs = programs(&p);
        for want in [
            "fe_shrink_folio_list",
            "fx_shrink_folio_list",
            "fe_arch_tlbbatch_flush",
            "fx_arch_tlbbatch_flush",
            "fe_try_to_unmap",
            "fe_try_to_unmap_flush_dirty",
        ] {
            assert!(progs.contains(&want), "{want} not in {progs:?}");
        }
        // Pass boundaries come from the probes: the vmscan pass tracepoints are not attached.
        assert!(!progs.contains(&"vmscan_lru_isolate"));
        // pageout is inlined on 6.18: mm_vmscan_write_folio, with no note (same event).
        assert_eq!(p.signal(Signal::Pageouts).tier, Tier::Tracepoint);
        assert_eq!(p.signal(Signal::Pageouts).note, None);
    }

    #[test]
    fn debian_6_1_uses_kprobes_and_says_what_it_lacks() {
        let facts = FakeKernel::debian_6_1().facts();
        let failures = Failures {
            fentry: true,
            ..Default::default()
        };
        let p = plan(&facts, ProbeMode::Auto, &failures).unwrap();
        assert_eq!(p.probe_mode(), "kprobe");
        assert!(
            p.flags & CFG_PAGEOUT_PROBE != 0,
            "pageout is a real symbol on 6.1"
        );
        assert_eq!(
            p.signal(Signal::Pageouts).source,
            "kprobe:pageout (returns PAGE_SUCCESS)"
        );
        assert_eq!(p.signal(Signal::FanoutTargets).tier, Tier::None);
        assert!(
            p.signal(Signal::FanoutTargets)
                .note
                .as_deref()
                .unwrap()
                .contains("6.5")
        );
        assert_eq!(p.signal(Signal::Ipis).tier, Tier::None);
        let rs = p.signal(Signal::RemoteShootdowns);
        assert!(rs.source.contains("reason 1") && rs.note.is_some());
        let progs = programs(&p);
        assert!(progs.contains(&"kp_shrink_folio_list") && progs.contains(&"kr_shrink_folio_list"));
        assert!(!progs.contains(&"csd_queue_cpu"));
    }

    #[test]
    fn a_failed_kprobe_downgrades_only_what_depends_on_it() {
        let facts = FakeKernel::debian_6_1().facts();
        let mut failures = Failures {
            fentry: true,
            ..Default::default()
        };
        failures.kprobe.insert("arch_tlbbatch_flush".into());
        failures
            .reasons
            .push(("arch_tlbbatch_flush".into(), "ENOENT".into()));
        let p = plan(&facts, ProbeMode::Auto, &failures).unwrap();
        assert_eq!(p.signal(Signal::ReclaimPass).tier, Tier::Kprobe);
        assert_eq!(p.signal(Signal::Flush).tier, Tier::Tracepoint);
        assert!(
            p.signal(Signal::Flush)
                .note
                .as_deref()
                .unwrap()
                .contains("ENOENT")
        );
        // Batch fill needs the flush probe to delimit batches.
        assert_eq!(p.signal(Signal::BatchedUnmaps).tier, Tier::None);
        assert_eq!(p.probe_mode(), "mixed");
    }

    #[test]
    fn clones_and_void_variants_are_handled_in_the_plan() {
        let mut k = FakeKernel::debian_6_1();
        k.symbols.retain(|s| *s != "shrink_folio_list");
        k.symbols.push("shrink_folio_list.isra.0");
        let p = plan(&k.facts(), ProbeMode::Kprobe, &Failures::default()).unwrap();
        assert_eq!(p.signal(Signal::ReclaimPass).tier, Tier::Tracepoint);
        assert!(
            p.signal(Signal::ReclaimPass)
                .note
                .as_deref()
                .unwrap()
                .contains("isra")
        );

        let mut k = FakeKernel::debian_6_1();
        k.void_shrink = true;
        let p = plan(&k.facts(), ProbeMode::Kprobe, &Failures::default()).unwrap();
        assert!(p.flags & CFG_STAT_NR_RECLAIMED != 0);
        assert!(p.signal(Signal::ReclaimPass).source.contains("void"));
    }

    #[test]
    fn no_pass_signal_is_the_only_fatal_plan() {
        let mut k = FakeKernel::host_6_18();
        k.missing_tracepoints = vec!["vmscan:mm_vmscan_lru_isolate"];
        let e = plan(&k.facts(), ProbeMode::Tracepoint, &Failures::default()).unwrap_err();
        assert!(e.to_string().contains("mm_vmscan_lru_isolate"), "{e}");
    }

    #[test]
    fn hot_events_are_raw_tracepoints_checked_against_their_prototype() {
        let facts = FakeKernel::host_6_18().facts();
        let p = plan(&facts, ProbeMode::Tracepoint, &Failures::default()).unwrap();
        let raw: Vec<&str> = p
            .programs
            .iter()
            .filter(|a| matches!(a.attach, Attach::RawTracepoint { .. }))
            .map(|a| a.program)
            .collect();
        for want in [
            "tlb_flush",
            "csd_queue_cpu",
            "ipi_send_cpu",
            "ipi_send_cpumask",
            "vmscan_write_folio",
        ] {
            assert!(raw.contains(&want), "{want} not raw in {raw:?}");
        }
        // A kernel whose csd_queue_cpu takes other arguments: not attached, and said why.
        let mut facts = FakeKernel::host_6_18().facts();
        facts
            .layout
            .raw_tracepoint_args
            .insert("csd_queue_cpu".into(), 3);
        let p = plan(&facts, ProbeMode::Tracepoint, &Failures::default()).unwrap();
        assert_eq!(p.signal(Signal::FanoutTargets).tier, Tier::None);
        let note = p.signal(Signal::FanoutTargets).note.clone().unwrap();
        assert!(note.contains("takes 3 arguments"), "{note}");
    }

    #[test]
    fn pass_tracepoints_are_raw_with_btf_and_classic_without() {
        // 6.1: mm_vmscan_lru_isolate still has isolate_mode, `lru` is argument 7.
        let mut facts = FakeKernel::host_6_18().facts();
        facts
            .layout
            .raw_tracepoint_args
            .insert("mm_vmscan_lru_isolate".into(), 8);
        let p = plan(&facts, ProbeMode::Tracepoint, &Failures::default()).unwrap();
        let progs = programs(&p);
        assert!(
            progs.contains(&"vmscan_lru_isolate_raw8")
                && !progs.contains(&"vmscan_lru_isolate_raw")
        );
        // No BTF prototypes: the classic tracepoints, read by field name.
        let mut facts = FakeKernel::host_6_18().facts();
        facts.layout.raw_tracepoint_args.clear();
        let p = plan(&facts, ProbeMode::Tracepoint, &Failures::default()).unwrap();
        let progs = programs(&p);
        assert!(
            progs.contains(&"vmscan_lru_isolate") && !progs.contains(&"vmscan_lru_isolate_raw")
        );
        assert!(
            p.signal(Signal::ReclaimPass)
                .source
                .starts_with("tracepoint:")
        );
    }

    #[test]
    fn config_carries_this_kernels_offsets_and_addresses() {
        let facts = FakeKernel::host_6_18().facts();
        let p = plan(&facts, ProbeMode::Tracepoint, &Failures::default()).unwrap();
        let c = build_config(&facts, &p, 42, 0);
        assert_eq!(c.self_tgid, 42);
        assert_eq!(c.tp.isolate_nr_taken, 40);
        assert_eq!(c.tp.isolate_lru, 48);
        assert_eq!(c.tp.shrink_nr_reclaimed, 24);
        assert_eq!(
            c.tp.shrink_nr_unmap_fail, OFF_NONE,
            "absent field stays unknown"
        );
        assert_eq!(
            c.flush_tlb_func,
            facts.kallsyms.addr("flush_tlb_func").unwrap()
        );
        assert_eq!(c.cpumask_words, 1);
        assert_eq!(c.btf.task_tlb_ubc_writable, 3300);
    }
}
