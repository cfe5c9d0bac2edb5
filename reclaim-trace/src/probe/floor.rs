//! The benchmark's floor (`cargo xtask bench`): what attaching costs with programs that do
//! nothing, at the tool's own attach points.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{KProbe, RawTracePoint, TracePoint},
};
use reclaim_trace_common::{GLOBAL_CONFIG, MAP_REMOTE_SHOOTDOWNS};

use super::{EBPF_OBJECT, object_embedded, stats};
use crate::{
    kernel::KernelFacts,
    plan::{self, Attach, Failures, Plan, ProbeMode},
};

/// The benchmark floor: `floor_*` programs (which return at once) attached at the attach
/// points the tool would use on this kernel. fentry points get the kprobe floor (the floor
/// object has no per-function fentry programs); on tracepoint-only kernels the points are
/// identical to the tool's.
pub struct Floor {
    ebpf: Ebpf,
    pub plan: Plan,
    pub attach_points: usize,
}

impl Floor {
    /// Run time and count of the floor programs (needs BPF stats enabled).
    pub fn program_stats(&self) -> Vec<stats::ProgramStat> {
        stats::collect(&self.ebpf)
    }

    pub fn start(facts: &KernelFacts, mode: ProbeMode) -> Result<Floor> {
        if !object_embedded() {
            bail!("this binary was built without its eBPF programs (AYA_BUILD_SKIP=1)");
        }
        let failures = Failures {
            fentry: true,
            ..Default::default()
        };
        let plan = plan::plan(facts, mode, &failures)?;
        let config = plan::build_config(facts, &plan, std::process::id(), 0);
        // Nothing here needs BTF relocations or fentry.
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .map_max_entries(MAP_REMOTE_SHOOTDOWNS, facts.possible_cpus.max(1))
            .override_global(GLOBAL_CONFIG, &config, true)
            .load(EBPF_OBJECT)
            .context("loading the eBPF object failed")?;
        let mut loaded = BTreeSet::new();
        let mut n = 0;
        for p in &plan.programs {
            let name = match &p.attach {
                Attach::Tracepoint { .. } => "floor_tp",
                Attach::RawTracepoint { .. } => "floor_rtp",
                Attach::Kprobe { ret, .. } | Attach::Fentry { exit: ret, .. } => {
                    if *ret {
                        "floor_kr"
                    } else {
                        "floor_kp"
                    }
                }
            };
            let prog = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))?;
            match &p.attach {
                Attach::Tracepoint { category, name: tp } => {
                    let t: &mut TracePoint = prog.try_into()?;
                    if loaded.insert(name) {
                        t.load()?;
                    }
                    t.attach(category, tp)
                        .with_context(|| format!("floor on tracepoint {category}:{tp}"))?;
                }
                Attach::RawTracepoint { name: tp, .. } => {
                    let t: &mut RawTracePoint = prog.try_into()?;
                    if loaded.insert(name) {
                        t.load()?;
                    }
                    t.attach(tp)
                        .with_context(|| format!("floor on raw tracepoint {tp}"))?;
                }
                Attach::Kprobe { function, .. } | Attach::Fentry { function, .. } => {
                    let k: &mut KProbe = prog.try_into()?;
                    if loaded.insert(name) {
                        k.load()?;
                    }
                    k.attach(function, 0)
                        .with_context(|| format!("floor on kprobe {function}"))?;
                }
            }
            n += 1;
        }
        Ok(Floor {
            ebpf,
            plan,
            attach_points: n,
        })
    }
}
