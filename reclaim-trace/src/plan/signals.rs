//! One function per signal group: which probe serves it on this kernel (or why none), the
//! programs to attach, the flags the programs read, and the plan's row.

use super::*;

/// The stale-TLB window per written-out folio: its unmap, the flush that covers it and its
/// `pageout()` must all be probed in the precise tier (`pageout` is inlined on 6.18 and 7.2).
pub(super) fn stale_tlb_window(p: &mut Planner<'_>) {
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
                format!(
                    "{tier}:try_to_unmap -> {} exit -> pageout entry",
                    flush_end(p)
                ),
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
                format!("try_to_unmap -> {} exit -> raw_tracepoint:vmscan:mm_vmscan_write_folio", flush_end(p)),
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

/// The probe whose return ends a batched flush.
fn flush_end(p: &Planner<'_>) -> &'static str {
    if p.flags & CFG_FLUSH_RMAP != 0 {
        "try_to_unmap_flush{,_dirty}"
    } else {
        "arch_tlbbatch_flush"
    }
}

/// Reclaimed folios, counted as the pass frees them: the kernel reports reclaimed base pages
/// only, in every tier.
pub(super) fn folios(p: &mut Planner<'_>) {
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

/// Reclaim passes: `shrink_folio_list` entry/exit where probeable, else the vmscan tracepoints
/// around it.
pub(super) fn reclaim_pass(p: &mut Planner<'_>) -> Result<(), NoPassSignal> {
    let facts = p.facts;
    let layout = &facts.layout;
    let has = |off: u32| off != OFF_NONE;
    let shrink_list = facts
        .kallsyms
        .shrink_list_function()
        .unwrap_or("shrink_folio_list");
    let pass_precise = match p.precise_tier(shrink_list) {
        Ok(t) if layout.shrink_folio_list_void && !has(layout.offsets.stat_nr_reclaimed) => {
            Err(format!(
                "{shrink_list} returns void but reclaim_stat.nr_reclaimed is missing from BTF ({t})"
            ))
        }
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
    match pass_precise {
        Ok(tier) => {
            p.flags |= CFG_PRECISE_PASS;
            if layout.shrink_folio_list_void {
                p.flags |= CFG_STAT_NR_RECLAIMED;
            }
            p.add_probe(
                tier,
                shrink_list,
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
                format!("{tier}:{shrink_list} ({variant})"),
                None,
            );
        }
        Err(why) => {
            if let Err(tp_why) = tp_pass {
                return Err(NoPassSignal(format!("{why}; {tp_why}")));
            }
            let kind = pass_tracepoints(p);
            let mut note = format!("precise tier unavailable ({why})");
            if facts.lru_gen == Some(true) {
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

/// The tracepoint tier's pass boundaries: raw tracepoints when BTF shows the prototypes (no
/// trace record is built, the arguments are read directly), the classic ones, by field name,
/// otherwise. Returns which kind.
fn pass_tracepoints(p: &mut Planner<'_>) -> &'static str {
    let raw = &p.facts.layout.raw_tracepoint_args;
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
    kind
}

/// Which reclaim context a pass belongs to.
pub(super) fn reclaim_context(p: &mut Planner<'_>) {
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
pub(super) fn pageouts(p: &mut Planner<'_>) {
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
pub(super) fn flushes(p: &mut Planner<'_>) {
    if p.facts.arch() == Arch::Arm64 {
        return flushes_rmap(p);
    }
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

/// arm64 (6.5+): `arch_tlbbatch_flush` is inline, so a batched flush is `try_to_unmap_flush`
/// or `try_to_unmap_flush_dirty` finding the batch pending, from entry to return (see
/// reclaim-trace-ebpf `batch_flush`). There is no tracepoint fallback: arm64 emits no
/// `tlb:tlb_flush` and sends no IPI for these flushes. (The event is in tracefs all the same:
/// Debian's 6.12.118 arm64 lists `tlb:tlb_flush`, and nothing fires it; the plan does not
/// attach it there.)
fn flushes_rmap(p: &mut Planner<'_>) {
    let layout = &p.facts.layout;
    let has = |off: u32| off != OFF_NONE;
    let tiers = p
        .precise_tier("try_to_unmap_flush")
        .and_then(|t| Ok((t, p.precise_tier("try_to_unmap_flush_dirty")?)))
        .and_then(|t| {
            if !has(layout.offsets.task_tlb_ubc_flush_required) {
                Err("task_struct.tlb_ubc.flush_required missing from BTF".into())
            } else if !has(layout.offsets.task_tlb_ubc_writable) {
                Err("task_struct.tlb_ubc.writable missing from BTF".into())
            } else {
                Ok(t)
            }
        });
    match tiers {
        Ok((tier, dirty_tier)) => {
            p.flags |= CFG_PRECISE_FLUSH | CFG_FLUSH_RMAP;
            p.add_probe(
                tier,
                "try_to_unmap_flush",
                Some(("fe_try_to_unmap_flush", "kp_try_to_unmap_flush")),
                Some(("fx_try_to_unmap_flush", "kr_try_to_unmap_flush")),
                Signal::Flush,
            );
            p.add_probe(
                dirty_tier,
                "try_to_unmap_flush_dirty",
                Some(("fe_try_to_unmap_flush_dirty", "kp_try_to_unmap_flush_dirty")),
                Some(("fx_try_to_unmap_flush_dirty", "kr_try_to_unmap_flush_dirty")),
                Signal::DirtyFlush,
            );
            p.row(
                Signal::Flush,
                tier,
                format!(
                    "{tier}:try_to_unmap_flush + try_to_unmap_flush_dirty \
                     (current->tlb_ubc.flush_required; the DSB completing TLBIs broadcast at unmap)"
                ),
                None,
            );
            p.row(
                Signal::DirtyFlush,
                dirty_tier,
                format!("{dirty_tier}:try_to_unmap_flush_dirty (current->tlb_ubc.writable)"),
                None,
            );
        }
        Err(why) => {
            let note = format!(
                "{why}; arm64 emits no tlb:tlb_flush and sends no IPIs for these flushes, so \
                 without try_to_unmap_flush probes there are no flushes, flushes per folio, \
                 dirty/batch split, batch fill or stale-TLB window (passes, folios, pages, \
                 pageouts and contexts remain)"
            );
            p.row(Signal::Flush, Tier::None, "none".into(), Some(note.clone()));
            p.row(Signal::DirtyFlush, Tier::None, "none".into(), Some(note));
        }
    }
}

/// Folios deferred into a flush batch (`try_to_unmap` with `TTU_BATCH_FLUSH`): batch fill is
/// exact with them (the return value), estimated without.
pub(super) fn batched_unmaps(p: &mut Planner<'_>) -> bool {
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
