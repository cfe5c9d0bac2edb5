//! The planner on kernels described by hand (`FakeKernel`): this machine's 6.18, Debian's
//! 6.1, and variations of them.

use std::collections::BTreeMap;

use reclaim_trace_common::BtfOffsets;

use super::*;
use crate::kernel::{
    Privileges, TRACEPOINTS, TracepointInfo, btf::Layout, kallsyms::Kallsyms, tracefs::EventFormat,
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
    pub machine: &'static str,
    pub kprobes: bool,
    pub symbols: Vec<&'static str>,
    pub missing_tracepoints: Vec<&'static str>,
    pub btf_funcs: Vec<&'static str>,
    pub void_shrink: bool,
    pub empty_batch: bool,
}

impl FakeKernel {
    /// This CI machine: 6.18, CONFIG_KPROBES off, everything else present.
    pub fn host_6_18() -> Self {
        FakeKernel {
            machine: "x86_64",
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
            empty_batch: false,
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

    /// Debian 6.12.118 cloud-arm64 (as its doctor showed under qemu): kprobes and fentry,
    /// `arch_tlbbatch_flush` inline and its batch struct empty, no `flush_tlb_func`;
    /// `tlb:tlb_flush` exists (the event is generic) but arm64 never emits it.
    pub fn debian_6_12_arm64() -> Self {
        let mut k = Self::host_6_18();
        k.machine = "aarch64";
        k.kprobes = true;
        k.symbols = vec![
            "shrink_folio_list",
            "try_to_unmap",
            "try_to_unmap_flush",
            "try_to_unmap_flush_dirty",
            "pageout",
            "generic_smp_call_function_single_interrupt",
        ];
        k.btf_funcs = vec![
            "shrink_folio_list",
            "try_to_unmap",
            "try_to_unmap_flush",
            "try_to_unmap_flush_dirty",
            "pageout",
        ];
        k.empty_batch = true;
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
        offsets.batch_cpumask = if self.empty_batch { OFF_NONE } else { 0 };
        if self.void_shrink {
            offsets.stat_nr_reclaimed = 48;
        }
        KernelFacts {
            release: "test".into(),
            machine: self.machine.into(),
            privileges: Privileges {
                euid: 0,
                cap_sys_admin: true,
                cap_bpf: true,
                cap_perfmon: true,
                cap_dac_read_search: true,
                cap_syslog: true,
                sysctls: Default::default(),
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
                batch_empty: self.empty_batch,
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
        progs.contains(&"vmscan_lru_isolate_raw8") && !progs.contains(&"vmscan_lru_isolate_raw")
    );
    // No BTF prototypes: the classic tracepoints, read by field name.
    let mut facts = FakeKernel::host_6_18().facts();
    facts.layout.raw_tracepoint_args.clear();
    let p = plan(&facts, ProbeMode::Tracepoint, &Failures::default()).unwrap();
    let progs = programs(&p);
    assert!(progs.contains(&"vmscan_lru_isolate") && !progs.contains(&"vmscan_lru_isolate_raw"));
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

#[test]
fn arm64_flushes_come_from_try_to_unmap_flush_and_reach_all_cpus_by_broadcast() {
    let facts = FakeKernel::debian_6_12_arm64().facts();
    let p = plan(&facts, ProbeMode::Auto, &Failures::default()).unwrap();
    assert_eq!(p.flush_reach, FlushReach::Broadcast);
    assert_eq!(p.probe_mode(), "fentry");
    assert!(p.batch_fill_exact);
    assert_ne!(p.flags & CFG_FLUSH_RMAP, 0);
    assert_ne!(p.flags & CFG_STALE_WINDOW, 0);
    let progs = programs(&p);
    for want in [
        "fe_try_to_unmap_flush",
        "fx_try_to_unmap_flush",
        "fe_try_to_unmap_flush_dirty",
        "fx_try_to_unmap_flush_dirty",
        "ipi_send_cpu",
    ] {
        assert!(progs.contains(&want), "{want} missing from {progs:?}");
    }
    // The tracepoint exists on arm64 but never fires; csd has no flush_tlb_func to match.
    for never in ["tlb_flush", "csd_queue_cpu", "fe_arch_tlbbatch_flush"] {
        assert!(!progs.contains(&never), "{never} in {progs:?}");
    }
    assert!(
        p.signal(Signal::Flush)
            .source
            .contains("try_to_unmap_flush")
    );
    assert!(
        p.signal(Signal::StaleTlbWindow)
            .source
            .contains("try_to_unmap_flush{,_dirty} exit")
    );
    for s in [Signal::FanoutTargets, Signal::RemoteShootdowns] {
        let row = p.signal(s);
        assert_eq!(row.tier, Tier::None);
        assert!(row.source.starts_with("broadcast"), "{}", row.source);
        assert!(row.note.is_none(), "broadcast is not a degradation");
    }
    // kprobes where fentry is refused: the same programs' kprobe flavours.
    let failures = Failures {
        fentry: true,
        reasons: vec![("try_to_unmap_flush".into(), "EPERM".into())],
        ..Default::default()
    };
    let p = plan(&facts, ProbeMode::Auto, &failures).unwrap();
    let progs = programs(&p);
    assert!(progs.contains(&"kr_try_to_unmap_flush_dirty"), "{progs:?}");
    assert_eq!(p.signal(Signal::Flush).tier, Tier::Kprobe);
}

#[test]
fn arm64_tracepoint_tier_says_what_it_cannot_give() {
    let facts = FakeKernel::debian_6_12_arm64().facts();
    let p = plan(&facts, ProbeMode::Tracepoint, &Failures::default()).unwrap();
    assert_eq!(p.signal(Signal::Flush).tier, Tier::None);
    let note = p.signal(Signal::Flush).note.clone().unwrap();
    for said in [
        "no tlb:tlb_flush",
        "no IPIs",
        "flushes per folio",
        "batch fill",
    ] {
        assert!(note.contains(said), "{said}: {note}");
    }
    assert!(!programs(&p).contains(&"tlb_flush"));
    assert_eq!(p.signal(Signal::ReclaimPass).tier, Tier::Tracepoint);
}
