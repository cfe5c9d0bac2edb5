//! Every program of the eBPF object, once: its symbol, how it attaches, and whether it is hot
//! (attached to an event that fires whether or not reclaim runs: every TLB flush, IPI or page
//! free on the machine). The planner's programs, the hot-event count of the BPF statistics and
//! the tests' leak check read this table; tests check it against the planner and against the
//! built object.

/// How a program attaches (the program type in the object).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
    Tracepoint,
    RawTracepoint,
}

#[derive(Clone, Copy, Debug)]
pub struct Program {
    /// The symbol in the eBPF object (the kernel shows its first 15 bytes).
    pub name: &'static str,
    pub kind: Kind,
    pub hot: bool,
}

const fn p(name: &'static str, kind: Kind) -> Program {
    Program {
        name,
        kind,
        hot: false,
    }
}

const fn hot(name: &'static str) -> Program {
    Program {
        name,
        kind: Kind::RawTracepoint,
        hot: true,
    }
}

use Kind::*;

pub const PROGRAMS: &[Program] = &[
    // Reclaim passes, precise tier (precise.rs).
    p("fe_shrink_folio_list", Fentry),
    p("fx_shrink_folio_list", Fexit),
    p("kp_shrink_folio_list", Kprobe),
    p("kr_shrink_folio_list", Kretprobe),
    p("fe_try_to_unmap", Fentry),
    p("kp_try_to_unmap", Kprobe),
    p("fe_try_to_unmap_flush_dirty", Fentry),
    p("kp_try_to_unmap_flush_dirty", Kprobe),
    p("fx_try_to_unmap_flush_dirty", Fexit),
    p("kr_try_to_unmap_flush_dirty", Kretprobe),
    p("fe_try_to_unmap_flush", Fentry),
    p("fx_try_to_unmap_flush", Fexit),
    p("kp_try_to_unmap_flush", Kprobe),
    p("kr_try_to_unmap_flush", Kretprobe),
    p("fe_arch_tlbbatch_flush", Fentry),
    p("fx_arch_tlbbatch_flush", Fexit),
    p("kp_arch_tlbbatch_flush", Kprobe),
    p("kr_arch_tlbbatch_flush", Kretprobe),
    p("fe_pageout", Fentry),
    p("kp_pageout", Kprobe),
    p("fx_pageout", Fexit),
    p("kr_pageout", Kretprobe),
    // Reclaim passes and contexts, tracepoint tier (vmscan.rs).
    p("vmscan_lru_isolate", Tracepoint),
    p("vmscan_lru_isolate_raw", RawTracepoint),
    p("vmscan_lru_isolate_raw8", RawTracepoint),
    p("vmscan_lru_shrink_inactive", Tracepoint),
    p("vmscan_lru_shrink_inactive_raw", RawTracepoint),
    p("vmscan_reclaim_pages", Tracepoint),
    p("vmscan_write_folio", RawTracepoint),
    p("vmscan_direct_begin", Tracepoint),
    p("vmscan_direct_end", Tracepoint),
    p("vmscan_memcg_begin", Tracepoint),
    p("vmscan_memcg_end", Tracepoint),
    p("vmscan_node_begin", Tracepoint),
    p("vmscan_node_end", Tracepoint),
    p("vmscan_softlimit_begin", Tracepoint),
    p("vmscan_softlimit_end", Tracepoint),
    // Flushes, IPIs, frees: every one on the machine (tlb.rs, smp.rs, vmscan.rs).
    hot("tlb_flush"),
    hot("csd_queue_cpu"),
    hot("ipi_send_cpu"),
    hot("ipi_send_cpumask"),
    hot("mm_page_free"),
    // The bench's empty programs, the floor of its overhead comparison (floor.rs).
    p("floor_tp", Tracepoint),
    p("floor_rtp", RawTracepoint),
    p("floor_kp", Kprobe),
    p("floor_kr", Kretprobe),
];

/// The table's entry for `name`.
pub fn program(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

/// Is `name` a hot program (see the module documentation)?
pub fn is_hot(name: &str) -> bool {
    program(name).is_some_and(|p| p.hot)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use aya_obj::ProgramSection;

    use super::*;
    use crate::plan::{Attach, Failures, ProbeMode, plan, tests::FakeKernel};

    fn kind_of(a: &Attach) -> Kind {
        match a {
            Attach::Fentry { exit: false, .. } => Fentry,
            Attach::Fentry { exit: true, .. } => Fexit,
            Attach::Kprobe { ret: false, .. } => Kprobe,
            Attach::Kprobe { ret: true, .. } => Kretprobe,
            Attach::Tracepoint { .. } => Tracepoint,
            Attach::RawTracepoint { .. } => RawTracepoint,
        }
    }

    /// Every program any plan attaches is in the table, with the kind the plan attaches it as.
    #[test]
    fn every_planned_program_is_in_the_table_with_its_kind() {
        let mut seen = BTreeSet::new();
        for k in [FakeKernel::host_6_18(), FakeKernel::debian_6_1()] {
            for mode in [
                ProbeMode::Auto,
                ProbeMode::Fentry,
                ProbeMode::Kprobe,
                ProbeMode::Tracepoint,
            ] {
                let Ok(p) = plan(&k.facts(), mode, &Failures::default()) else {
                    continue;
                };
                for a in &p.programs {
                    let t = program(a.program)
                        .unwrap_or_else(|| panic!("{} is not in PROGRAMS", a.program));
                    assert_eq!(t.kind, kind_of(&a.attach), "{}", a.program);
                    seen.insert(a.program);
                }
            }
        }
        assert!(seen.len() >= 30, "the plans used only {seen:?}");
    }

    /// The table and the built eBPF object hold the same programs, of the same types: a
    /// renamed or retyped program fails here, not at attach time on some kernel.
    #[test]
    fn the_table_matches_the_ebpf_object() {
        let object = crate::probe::EBPF_OBJECT;
        if object.is_empty() {
            eprintln!("SKIPPED: the eBPF object was not built (AYA_BUILD_SKIP)");
            return;
        }
        let obj = aya_obj::Object::parse(object).expect("parse the eBPF object");
        let in_object: BTreeSet<&str> = obj.programs.keys().map(String::as_str).collect();
        let in_table: BTreeSet<&str> = PROGRAMS.iter().map(|p| p.name).collect();
        assert_eq!(in_object, in_table, "object vs table");
        for (name, prog) in &obj.programs {
            let kind = match prog.section {
                ProgramSection::FEntry { .. } => Fentry,
                ProgramSection::FExit { .. } => Fexit,
                ProgramSection::KProbe => Kprobe,
                ProgramSection::KRetProbe => Kretprobe,
                ProgramSection::TracePoint => Tracepoint,
                ProgramSection::RawTracePoint => RawTracepoint,
                ref other => panic!("{name}: unexpected program type {other:?}"),
            };
            assert_eq!(program(name).unwrap().kind, kind, "{name}");
        }
    }
}
