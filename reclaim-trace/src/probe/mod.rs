//! The only module that talks to aya and the kernel's BPF interface: load the object with this
//! kernel's configuration, attach the planned programs (downgrading per signal when an attach
//! fails), read the ring buffer and snapshot the per-CPU maps.

mod floor;
mod reader;
pub mod stats;

pub use self::floor::Floor;

use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{FEntry, FExit, KProbe, RawTracePoint, TracePoint},
};
use reclaim_trace_common::{
    CONTROL_GENERATION, CONTROL_STOPPED, Config, EVENTS_BYTES, GLOBAL_CONFIG, HistBuckets,
    MAP_CONTROL, MAP_COUNTERS, MAP_EVENTS, MAP_HISTS, MAP_REMOTE_SHOOTDOWNS, MAP_STAGING,
    MAP_TOTALS, N_COUNTERS, N_CTX, N_HISTS, PassBatch, PassCounts,
    decode::{self, Record},
};

pub use self::reader::{RecordBatch, spawn_kernel_log, spawn_reader};
use crate::{
    aggregate::{KernelSnapshot, PerCpuMaps},
    kernel::KernelFacts,
    plan::{self, Attach, Failures, Plan, ProbeMode},
};

/// The eBPF object, built by build.rs (empty when built with AYA_BUILD_SKIP=1).
pub(crate) static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reclaim-trace"));

/// Whether the kernel accepts BPF tracing programs (fentry/fexit) at all: a cheap probe that
/// saves loading the whole object only to have every fentry program refused. `None` when the
/// probe itself failed (then loading decides).
pub fn fentry_supported() -> Option<bool> {
    aya::sys::is_program_supported(aya::programs::ProgramType::Tracing).ok()
}

/// True when this binary carries real eBPF programs.
pub fn object_embedded() -> bool {
    !EBPF_OBJECT.is_empty()
}

/// How a planned program fared.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttachOutcome {
    pub program: String,
    pub target: String,
    pub ok: bool,
    pub error: Option<String>,
}

/// Loaded and attached programs. Dropping it detaches everything.
pub struct Tracer {
    ebpf: Ebpf,
    pub plan: Plan,
    pub config: Config,
    pub outcomes: Vec<AttachOutcome>,
    /// Wall time from the first load attempt until every program was attached.
    pub load_attach_s: f64,
    counters: PerCpuArray<MapData, u64>,
    totals: PerCpuArray<MapData, PassCounts>,
    hists: PerCpuArray<MapData, HistBuckets>,
    remote_shootdowns: PerCpuArray<MapData, u64>,
    staging: PerCpuArray<MapData, PassBatch>,
    control: Array<MapData, u64>,
    /// The programs' aya-log records (anomalies), until a session takes it.
    kernel_log: Option<KernelLog>,
    generation: u64,
    cpus: usize,
}

/// What the programs log (aya-log), forwarded to this process's logger.
pub type KernelLog = aya_log::EbpfLogger<&'static dyn log::Log>;

/// Options of a tracing session.
#[derive(Clone, Debug, Default)]
pub struct TracerOptions {
    pub mode: ProbeMode,
    /// Extra `CFG_*` flags (e.g. per-flush records).
    pub extra_flags: u32,
    /// Leave out the stale-TLB window's per-folio bookkeeping.
    pub no_stale_window: bool,
    /// Ring-buffer size in bytes (a power of two, at least a page); 0: `EVENTS_BYTES`.
    pub ring_buffer_bytes: u32,
}

fn target(a: &Attach) -> String {
    match a {
        Attach::Tracepoint { category, name } => format!("tracepoint:{category}:{name}"),
        Attach::RawTracepoint { category, name } => format!("raw_tracepoint:{category}:{name}"),
        Attach::Kprobe { function, ret } => {
            format!("{}:{function}", if *ret { "kretprobe" } else { "kprobe" })
        }
        Attach::Fentry { function, exit } => {
            format!("{}:{function}", if *exit { "fexit" } else { "fentry" })
        }
    }
}

/// Why loading failed, said so that the user can act on it.
fn explain_load_error(e: &anyhow::Error) -> String {
    let s = format!("{e:#}");
    if s.contains("Operation not permitted") || s.contains("EPERM") {
        format!("{s} (missing privileges, or the kernel refuses this program type)")
    } else {
        s
    }
}

impl Tracer {
    /// Plan, load and attach; retry one tier lower for each precise probe that fails.
    pub fn start(facts: &KernelFacts, opts: &TracerOptions) -> Result<Tracer> {
        if !object_embedded() {
            bail!(
                "this binary was built without its eBPF programs (AYA_BUILD_SKIP=1); rebuild \
                 with `cargo xtask build` or run through `cargo xtask run`"
            );
        }
        let started = Instant::now();
        let mut failures = Failures::default();
        if facts.fentry_supported == Some(false) {
            failures.fentry = true;
            failures.reasons.push((
                "fentry".into(),
                "this kernel does not accept tracing (fentry/fexit) programs".into(),
            ));
        }
        // aya's copy of the kernel BTF (~5 MB to parse) is needed only to load fentry programs.
        let mut btf: Option<Btf> = None;
        for _round in 0..6 {
            let mut plan = plan::plan(facts, opts.mode, &failures)?;
            if opts.no_stale_window {
                plan = plan.without_stale_tlb_window();
            }
            let wants_fentry = plan
                .programs
                .iter()
                .any(|p| matches!(p.attach, Attach::Fentry { .. }));
            if wants_fentry && btf.is_none() {
                btf = Btf::from_sys_fs().ok();
            }
            let mut config = plan::build_config(facts, &plan, std::process::id(), opts.extra_flags);
            let ring_bytes = match opts.ring_buffer_bytes {
                0 => EVENTS_BYTES,
                n => n,
            };
            config.wakeup_bytes = ring_bytes / 4;
            // One parse of the kernel's BTF for every attempt (EbpfLoader::new() would parse
            // it again each time: ~5 MB, the bulk of start-up CPU).
            let mut ebpf = EbpfLoader::new()
                .btf(if wants_fentry { btf.as_ref() } else { None })
                .map_max_entries(MAP_REMOTE_SHOOTDOWNS, facts.possible_cpus.max(1))
                .map_max_entries(MAP_EVENTS, ring_bytes)
                .override_global(GLOBAL_CONFIG, &config, true)
                // Anomalies are logged at info level: below that the programs write no log
                // record at all. Absent from an object built without aya-log.
                .override_global(aya_log::LEVEL, &(log::max_level() as u8), false)
                .load(EBPF_OBJECT)
                .context("loading the eBPF object (maps and programs) failed")?;
            let Some(outcomes) = attach_all(&mut ebpf, &plan, btf.as_ref(), &mut failures) else {
                continue; // dropping `ebpf` detaches what was attached
            };
            note_tracepoint_failures(&mut plan, &outcomes);
            require_reclaim_pass(&plan, &outcomes)?;
            if let Some((f, why)) = failures.reasons.first() {
                log::info!("precise probes downgraded ({f}: {why})");
            }
            let load_attach_s = started.elapsed().as_secs_f64();
            return Tracer::from_attached(ebpf, plan, config, outcomes, load_attach_s);
        }
        bail!(
            "gave up after repeated attach failures: {:?}",
            failures.reasons
        )
    }

    /// Take the maps userspace reads from the loaded object.
    fn from_attached(
        mut ebpf: Ebpf,
        plan: Plan,
        config: Config,
        outcomes: Vec<AttachOutcome>,
        load_attach_s: f64,
    ) -> Result<Tracer> {
        let counters = PerCpuArray::try_from(take(&mut ebpf, MAP_COUNTERS)?)?;
        let totals = PerCpuArray::try_from(take(&mut ebpf, MAP_TOTALS)?)?;
        let hists = PerCpuArray::try_from(take(&mut ebpf, MAP_HISTS)?)?;
        let remote_shootdowns = PerCpuArray::try_from(take(&mut ebpf, MAP_REMOTE_SHOOTDOWNS)?)?;
        let staging = PerCpuArray::try_from(take(&mut ebpf, MAP_STAGING)?)?;
        let control = Array::try_from(take(&mut ebpf, MAP_CONTROL)?)?;
        let kernel_log = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            // Built with RECLAIM_TRACE_EBPF_LOG=0: anomalies are only counted.
            Err(aya_log::Error::MapNotFound) => None,
            Err(e) => {
                log::warn!(
                    "the eBPF programs' log cannot be read ({e}): anomalies are counted, not logged"
                );
                None
            }
        };
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| anyhow!("cannot read the number of possible CPUs: {e}"))?;
        Ok(Tracer {
            ebpf,
            plan,
            config,
            outcomes,
            load_attach_s,
            counters,
            totals,
            hists,
            remote_shootdowns,
            staging,
            control,
            kernel_log,
            generation: 0,
            cpus,
        })
    }

    /// The programs' log, for a task that forwards it (can be taken once).
    pub fn take_kernel_log(&mut self) -> Option<KernelLog> {
        self.kernel_log.take()
    }

    /// The ring buffer, for the reader task (can be taken once).
    pub fn take_events(&mut self) -> Result<aya::maps::RingBuf<MapData>> {
        Ok(aya::maps::RingBuf::try_from(take(
            &mut self.ebpf,
            MAP_EVENTS,
        )?)?)
    }

    /// Read the per-CPU maps and sum them.
    pub fn snapshot(&self) -> Result<KernelSnapshot> {
        fn read<V: aya::Pod>(map: &PerCpuArray<MapData, V>, n: u32) -> Result<Vec<Vec<V>>> {
            (0..n)
                .map(|i| Ok(map.get(&i, 0)?.iter().copied().collect()))
                .collect()
        }
        let maps = PerCpuMaps {
            totals: read(&self.totals, N_CTX)?,
            hists: read(&self.hists, N_HISTS)?,
            counters: read(&self.counters, N_COUNTERS)?,
            remote_shootdowns: (0..self.cpus as u32)
                .map(|cpu| {
                    self.remote_shootdowns
                        .get(&cpu, 0)
                        .map(|v| v.iter().copied().collect())
                        .unwrap_or_default()
                })
                .collect(),
        };
        Ok(KernelSnapshot::sum_cpus(&maps))
    }

    /// Tell the programs a snapshot was taken: each CPU sends its batch of pass records at its
    /// next pass end, so records lag the counters by at most one snapshot interval on a CPU
    /// that keeps reclaiming. (A CPU that stops reclaiming keeps its last few records until it
    /// reclaims again or the session ends.)
    pub fn next_generation(&mut self) -> Result<()> {
        self.generation += 1;
        self.control
            .set(CONTROL_GENERATION, self.generation, 0)
            .context("cannot write the CONTROL map")
    }

    /// From now on the programs count no pass anywhere (totals, histograms, records), so that
    /// the batches still waiting in the kernel and the totals can be read as one set.
    pub fn stop_counting(&mut self) -> Result<()> {
        self.control
            .set(CONTROL_STOPPED, 1, 0)
            .context("cannot write the CONTROL map")
    }

    /// The pass records still waiting in the per-CPU batches, and how many batches could not
    /// be decoded (counted as decode errors). Only consistent after
    /// [`Tracer::stop_counting`] plus the time for a running program to finish.
    pub fn staged_records(&self) -> Result<(Vec<Record>, u64)> {
        let per_cpu = self
            .staging
            .get(&0, 0)
            .context("cannot read the STAGING map")?;
        let mut out = Vec::new();
        let mut errors = 0;
        for b in per_cpu.iter() {
            if let Err(e) = decode::decode_staged(b, &mut out) {
                log::warn!("a CPU's last pass records: {e}");
                errors += 1;
            }
        }
        Ok((out, errors))
    }

    /// Run time and count of every attached program (needs BPF stats enabled).
    pub fn program_stats(&self) -> Vec<stats::ProgramStat> {
        stats::collect(&self.ebpf)
    }
}

/// Attach the plan's programs in order. `None` when a precise probe (fentry or kprobe) failed:
/// `failures` says which, and the caller plans again one tier lower. Tracepoint failures are
/// recorded in the outcomes and the plan is kept.
fn attach_all(
    ebpf: &mut Ebpf,
    plan: &Plan,
    btf: Option<&Btf>,
    failures: &mut Failures,
) -> Option<Vec<AttachOutcome>> {
    let mut outcomes = Vec::new();
    for p in &plan.programs {
        let target = target(&p.attach);
        let error = match attach_one(ebpf, p.program, &p.attach, btf) {
            Ok(()) => None,
            Err(e) => Some(explain_load_error(&e)),
        };
        if let Some(why) = &error {
            // An fentry refusal is routine (kernels without BPF trampolines, or with them
            // locked down): the plan says so; don't alarm on stderr.
            if matches!(p.attach, Attach::Fentry { .. }) {
                log::info!("attaching {} to {target} failed: {why}", p.program);
            } else {
                log::warn!("attaching {} to {target} failed: {why}", p.program);
            }
            match &p.attach {
                Attach::Fentry { function, .. } => {
                    failures.fentry = true;
                    failures.reasons.push((function.clone(), why.clone()));
                    return None;
                }
                Attach::Kprobe { function, .. } => {
                    failures.kprobe.insert(function.clone());
                    failures.reasons.push((function.clone(), why.clone()));
                    return None;
                }
                Attach::Tracepoint { .. } | Attach::RawTracepoint { .. } => {}
            }
        }
        outcomes.push(AttachOutcome {
            program: p.program.to_string(),
            target,
            ok: error.is_none(),
            error,
        });
    }
    Some(outcomes)
}

/// Without a reclaim-pass signal nothing can be counted: fail, naming what did not attach.
fn require_reclaim_pass(plan: &Plan, outcomes: &[AttachOutcome]) -> Result<()> {
    let lost = plan.signal(plan::Signal::ReclaimPass).tier == plan::Tier::Tracepoint
        && outcomes
            .iter()
            .any(|o| !o.ok && o.target.contains("mm_vmscan_lru_"));
    if lost {
        bail!(
            "no reclaim-pass signal could be attached: {}",
            outcomes
                .iter()
                .filter(|o| !o.ok)
                .map(|o| format!("{}: {}", o.target, o.error.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
}

fn attach_one(ebpf: &mut Ebpf, program: &str, attach: &Attach, btf: Option<&Btf>) -> Result<()> {
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| anyhow!("program {program} missing from the eBPF object"))?;
    match attach {
        Attach::Tracepoint { category, name } => {
            let tp: &mut TracePoint = prog.try_into()?;
            tp.load()?;
            tp.attach(category, name)?;
        }
        Attach::RawTracepoint { name, .. } => {
            let tp: &mut RawTracePoint = prog.try_into()?;
            tp.load()?;
            tp.attach(name)?;
        }
        Attach::Kprobe { function, .. } => {
            let kp: &mut KProbe = prog.try_into()?;
            kp.load()?;
            kp.attach(function, 0)?;
        }
        Attach::Fentry { function, exit } => {
            let btf = btf.ok_or_else(|| anyhow!("no kernel BTF for fentry"))?;
            if *exit {
                let fx: &mut FExit = prog.try_into()?;
                fx.load(function, btf)?;
                fx.attach()?;
            } else {
                let fe: &mut FEntry = prog.try_into()?;
                fe.load(function, btf)?;
                fe.attach()?;
            }
        }
    }
    Ok(())
}

/// A tracepoint that failed to attach degrades its signal; say so in the plan.
fn note_tracepoint_failures(plan: &mut Plan, outcomes: &[AttachOutcome]) {
    for o in outcomes.iter().filter(|o| !o.ok) {
        if let Some(p) = plan.programs.iter().find(|p| p.program == o.program) {
            let sig = p.signal;
            if let Some(row) = plan.signals.iter_mut().find(|r| r.signal == sig) {
                let msg = format!(
                    "{} failed to attach: {}",
                    o.target,
                    o.error.as_deref().unwrap_or("unknown error")
                );
                row.note = Some(match row.note.take() {
                    Some(n) => format!("{n}; {msg}"),
                    None => msg,
                });
            }
        }
    }
}
