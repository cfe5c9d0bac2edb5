//! The precise tier: fentry/fexit (or kprobe/kretprobe) on the functions of the reclaim path.
//!
//! Every program is a thin entry point around one `*_core` function that takes plain
//! arguments, so the fentry and kprobe flavours share one implementation. Struct member offsets
//! come from the running kernel's BTF (`CONFIG.btf`); nothing here hard-codes a layout.
//!
//! Attach targets (global or plain static symbols on 6.1, 6.12, 6.18, 7.2; userspace refuses
//! `.isra`/`.constprop` clones, whose argument lists may have been rewritten):
//! - `shrink_folio_list(folio_list, pgdat, sc, stat, ignore_references[, memcg])`: pass
//!   boundaries; its return value is reclaimed base pages (or `stat->nr_reclaimed` once the
//!   "batch TLB flushing for dirty folios" series makes it void).
//! - `try_to_unmap(folio, flags)`: with `TTU_BATCH_FLUSH` a folio may be deferred into the batch.
//! - `try_to_unmap_flush_dirty()`: flushes only when `current->tlb_ubc.writable`.
//! - where a batched flush begins and ends: see `batch_flush`.
//! - `pageout(folio, mapping, plug[, folio_list])`: real symbol on 6.1/6.12, inlined on 6.18.
//!
//! Loaded and checked against the guest kernel's counters (`cargo xtask vm`) on Debian's
//! 6.1.192, 6.12.118 and 7.2.13 cloud kernels: fentry/fexit attach on all three, and so does
//! the kprobe flavour (`--probe-mode kprobe`, run on 6.1.192 and 7.2.13).

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_task, bpf_ktime_get_ns, generated::bpf_get_func_ret},
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use reclaim_trace_common::{
    CFG_PRECISE_FLUSH, CFG_PRECISE_UNMAP, CFG_STALE_WINDOW, CFG_STAT_NR_RECLAIMED,
    CNT_DIRTY_FLUSH_WITHOUT_PAGEOUT, CNT_FOLIO_WALK_TRUNCATED, CNT_PAGEOUT_CALLS,
    CNT_PAGEOUTS_BEFORE_FLUSH, CNT_PAGEOUTS_NOT_UNMAPPED, CNT_PAGEOUTS_OUTSIDE,
    CNT_PAGEOUTS_READONLY_PENDING, CNT_PAGEOUTS_UNDEFERRED, CNT_WINDOW_UNKNOWN, CTX_MEMCG,
    CTX_PROACTIVE, HIST_FLUSH_TO_PAGEOUT, HIST_UNFLUSHED_WINDOW, PASS_F_FILL_EXACT,
    PASS_F_FLUSH_EXACT, PASS_F_FOLIOS_IN_TRUNCATED, PASS_F_HAS_START, PASS_F_PRECISE, PROG_PAGEOUT,
    PROG_PAGEOUT_ENTRY, PROG_SHRINK_FOLIO_LIST, PROG_TRY_TO_UNMAP, TTU_BATCH_FLUSH, delta_u32,
    log2_ns,
};

use crate::{
    anomaly, config, count, count_error, current_tid_tgid, hist_add, is_self, kread,
    pass::{CTX_AUTO, css_id, current_key, end_pass, pass_of, start_pass, stopped},
};

/// Compile-time bound of the folio-list walk (the run-time limit is `CONFIG.folio_walk_limit`).
const MAX_FOLIO_WALK: u32 = 1024;
/// `enum pageout_t` (mm/vmscan.c): PAGE_KEEP, PAGE_ACTIVATE, PAGE_SUCCESS, PAGE_CLEAN.
const PAGE_SUCCESS: u64 = 2;

#[inline(always)]
pub(crate) fn report(prog: u32, r: Result<(), ()>) -> u32 {
    if r.is_err() {
        count_error(prog);
    }
    0
}

// ------------------------------------------------------------------ shrink_folio_list

fn shrink_entry_core(folio_list: u64, sc: u64, stat: u64) -> Result<(), ()> {
    let (tid, tgid) = current_tid_tgid();
    if is_self(tgid) || stopped() {
        return Ok(());
    }
    let target: u64 = kread(sc, config!(btf.sc_target_mem_cgroup)).unwrap_or(0);
    let proactive_byte: u8 = kread(sc, config!(btf.sc_proactive_byte)).unwrap_or(0);
    let proactive = proactive_byte as u32 & config!(btf.sc_proactive_mask) != 0;
    // kswapd is recognised by start_pass (PF_KSWAPD, cached per task).
    let ctx = if proactive {
        CTX_PROACTIVE
    } else if target != 0 {
        CTX_MEMCG
    } else {
        CTX_AUTO
    };
    // The memcg whose limit drove the pass; global reclaim falls back to the task's memcg.
    let cgroup_id = if target != 0 {
        css_id(target + config!(btf.memcg_css) as u64)
    } else {
        0
    };
    let cfg = config!(flags);
    let mut flags = PASS_F_HAS_START | PASS_F_PRECISE;
    if cfg & CFG_PRECISE_UNMAP != 0 {
        flags |= PASS_F_FILL_EXACT;
    }
    if cfg & CFG_PRECISE_FLUSH != 0 {
        flags |= PASS_F_FLUSH_EXACT;
    }
    let p = start_pass(tid, tgid, ctx, flags, cgroup_id).ok_or(())?;
    // SAFETY: map value owned by this task.
    unsafe {
        (*p).sc = sc;
        (*p).stat = stat;
        (*p).sc_nr_scanned_start = kread(sc, config!(btf.sc_nr_scanned)).unwrap_or(0);
    }
    // Count the folios on the list (bounded walk of list_head.next pointers). Last, after
    // start_pass: the verifier explores the code after a bounded loop once per trip count, so
    // a walk placed before start_pass's branches exceeded its 1M-instruction budget on 6.1.192
    // (E2BIG at load).
    let limit = config!(folio_walk_limit);
    let mut n = 0u64;
    let mut node: u64 = kread(folio_list, 0).unwrap_or(folio_list);
    let mut i = 0u32;
    while i < MAX_FOLIO_WALK {
        if node == folio_list || node == 0 || i >= limit {
            break;
        }
        n += 1;
        node = kread(node, 0).unwrap_or(0);
        i += 1;
    }
    // SAFETY: as above.
    unsafe { (*p).counts.folios_in = delta_u32(n) };
    if node != folio_list && node != 0 {
        // SAFETY: as above.
        unsafe { (*p).flags |= PASS_F_FOLIOS_IN_TRUNCATED };
        anomaly!(
            CNT_FOLIO_WALK_TRUNCATED,
            "folio_walk_truncated: a folio list of shrink_folio_list is longer than the walk \
             limit of {} folios; folios_in of that pass is a lower bound",
            limit
        );
    }
    Ok(())
}

/// `staged`: the pass record may wait in this CPU's batch (see pass::end_pass).
fn shrink_exit_core(ret: u64, staged: bool) -> Result<(), ()> {
    let Some(p) = pass_of(current_key()) else {
        return Ok(());
    };
    // SAFETY: map value owned by this task.
    let s = unsafe { &mut *p };
    let stat = s.stat;
    let pages = if config!(flags) & CFG_STAT_NR_RECLAIMED != 0 {
        kread::<u32>(stat, config!(btf.stat_nr_reclaimed)).unwrap_or(0) as u64
    } else {
        ret & 0xffff_ffff // unsigned int
    };
    s.counts.pages_reclaimed = delta_u32(pages);
    let scanned: u64 = kread(s.sc, config!(btf.sc_nr_scanned)).unwrap_or(0);
    s.counts.pages_scanned = delta_u32(scanned.saturating_sub(s.sc_nr_scanned_start));
    s.counts.nr_dirty = kread::<u32>(stat, config!(btf.stat_nr_dirty)).unwrap_or(0);
    s.counts.nr_writeback = kread::<u32>(stat, config!(btf.stat_nr_writeback)).unwrap_or(0);
    s.counts.nr_activate = kread::<u32>(stat, config!(btf.stat_nr_activate0))
        .unwrap_or(0)
        .saturating_add(kread::<u32>(stat, config!(btf.stat_nr_activate1)).unwrap_or(0));
    s.counts.nr_unmap_fail = kread::<u32>(stat, config!(btf.stat_nr_unmap_fail)).unwrap_or(0);
    if s.await_pageout != 0 {
        count(CNT_DIRTY_FLUSH_WITHOUT_PAGEOUT, 1);
    }
    end_pass(p, staged);
    Ok(())
}

#[kprobe]
pub fn kp_shrink_folio_list(ctx: ProbeContext) -> u32 {
    let r = match (ctx.arg::<u64>(0), ctx.arg::<u64>(2), ctx.arg::<u64>(3)) {
        (Some(list), Some(sc), Some(stat)) => shrink_entry_core(list, sc, stat),
        _ => Err(()),
    };
    report(PROG_SHRINK_FOLIO_LIST, r)
}

#[kretprobe]
pub fn kr_shrink_folio_list(ctx: RetProbeContext) -> u32 {
    let ret: u64 = ctx.ret();
    // kretprobes run with preemption off: the per-CPU batch has one writer at a time.
    report(PROG_SHRINK_FOLIO_LIST, shrink_exit_core(ret, true))
}

#[fentry]
pub fn fe_shrink_folio_list(ctx: FEntryContext) -> u32 {
    let r = shrink_entry_core(ctx.arg::<u64>(0), ctx.arg::<u64>(2), ctx.arg::<u64>(3));
    report(PROG_SHRINK_FOLIO_LIST, r)
}

#[fexit]
pub fn fx_shrink_folio_list(ctx: FExitContext) -> u32 {
    // The return value follows the arguments, whose number differs between kernels (5 on
    // 6.1.192 and 6.12.118, 6 with `memcg` on 6.18.44 and 7.2.13): ask the helper instead of
    // indexing the context.
    let mut ret = 0u64;
    // SAFETY: ctx is the fexit program context; the helper writes one u64.
    unsafe { bpf_get_func_ret(ctx.as_ptr(), &mut ret) };
    // fexit programs only disable migration: on a preemptible kernel (PREEMPT_LAZY on 7.x)
    // two tasks could interleave their writes to this CPU's batch, so the record goes to the
    // ring buffer directly.
    report(PROG_SHRINK_FOLIO_LIST, shrink_exit_core(ret, false))
}

// ------------------------------------------------------------------ try_to_unmap

fn unmap_core(folio: u64, flags: u64) -> Result<(), ()> {
    if flags & TTU_BATCH_FLUSH == 0 {
        return Ok(());
    }
    if let Some(p) = pass_of(current_key()) {
        // SAFETY: map value owned by this task.
        let (start_ns, seq) = unsafe {
            (*p).unmaps_since_flush += 1;
            (*p).counts.batched_unmaps += 1;
            ((*p).start_ns, (*p).flush_seq)
        };
        if config!(flags) & CFG_STALE_WINDOW != 0 {
            let u = FolioUnmap {
                // SAFETY: helper without preconditions.
                unmap_ns: unsafe { bpf_ktime_get_ns() },
                pass_start_ns: start_ns,
                flush_seq: seq,
                _pad: 0,
            };
            UNFLUSHED.insert(folio, u, 0).map_err(|_| ())?;
        }
    }
    Ok(())
}

#[kprobe]
pub fn kp_try_to_unmap(ctx: ProbeContext) -> u32 {
    let r = match (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) {
        (Some(folio), Some(flags)) => unmap_core(folio, flags),
        _ => Err(()),
    };
    report(PROG_TRY_TO_UNMAP, r)
}

#[fentry]
pub fn fe_try_to_unmap(ctx: FEntryContext) -> u32 {
    report(
        PROG_TRY_TO_UNMAP,
        unmap_core(ctx.arg::<u64>(0), ctx.arg::<u64>(1)),
    )
}

// ------------------------------------------------------------------ the stale-TLB window
//
// Between a folio's `try_to_unmap` (its PTEs cleared, the flush deferred into
// `current->tlb_ubc`) and the end of the flush that covers it, another CPU may still write to
// it through a stale TLB entry; that is safe only if the folio's I/O starts after that flush.
// Per folio, without a record: its unmap time and the task's flush sequence number then, in
// an LRU map keyed by the folio (clean folios that are never written out age out of it); per
// task, the number and end time of its last flush. At `pageout()` entry the covering flush is
// the one numbered `flush_seq + 1`: if it is the last one, the window is measured; if later
// flushes came too, the folio is counted in CNT_WINDOW_UNKNOWN.

/// A folio unmapped into its task's TLB batch.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FolioUnmap {
    unmap_ns: u64,
    /// Which pass (its start time): a folio kept from an earlier pass is not this pass's.
    pass_start_ns: u64,
    /// The task's `PassState::flush_seq` at the unmap.
    flush_seq: u32,
    _pad: u32,
}

/// Folios a pass's `try_to_unmap` deferred into the batch, by folio address. A pass holds at
/// most a few thousand (MGLRU hands up to 4096 folios to one call).
#[map(name = "UNFLUSHED")]
static UNFLUSHED: LruHashMap<u64, FolioUnmap> = LruHashMap::with_max_entries(16384, 0);

/// A flush of this pass ended: number it and keep its time in the pass state (a map of every
/// flush's time cost more than the rest of the window's bookkeeping together under TCG).
#[inline(always)]
pub(crate) fn flush_ended(p: *mut crate::PassState) {
    // SAFETY: helper without preconditions; map value owned by this task.
    unsafe {
        (*p).flush_seq += 1;
        (*p).last_flush_end_ns = bpf_ktime_get_ns();
    }
}

/// `pageout()` entry, or (where it is inlined) its `mm_vmscan_write_folio` tracepoint.
pub(crate) fn pageout_entry_core(folio: u64) -> Result<(), ()> {
    if config!(flags) & CFG_STALE_WINDOW == 0 {
        return Ok(());
    }
    let task = current_key();
    let Some(p) = pass_of(task) else {
        return Ok(());
    };
    count(CNT_PAGEOUT_CALLS, 1);
    // SAFETY: read-only copy of a map value. The entry is not removed: the next unmap of the
    // folio overwrites it, and the pass check below ignores one from an earlier pass (a
    // delete per folio cost about as much as the lookup under TCG).
    // SAFETY: map value owned by this task.
    let (start_ns, seq, ctx) = unsafe { ((*p).start_ns, (*p).flush_seq, (*p).ctx) };
    let u = match unsafe { UNFLUSHED.get(folio) }.copied() {
        Some(u) if u.pass_start_ns == start_ns => u,
        _ => {
            count(CNT_PAGEOUTS_NOT_UNMAPPED, 1);
            return Ok(());
        }
    };
    if seq == u.flush_seq {
        // No flush since the unmap. Only a pending writable entry makes that dangerous
        // (try_to_unmap_flush_dirty() rightly skips the flush when the batch is read-only).
        // SAFETY: current task pointer, only used as a base for probe reads.
        let t = unsafe { bpf_get_current_task() };
        let writable: u8 = kread(t, config!(btf.task_tlb_ubc_writable)).ok_or(())?;
        let pending: u8 = kread(t, config!(btf.task_tlb_ubc_flush_required)).ok_or(())?;
        if writable != 0 {
            count(CNT_PAGEOUTS_BEFORE_FLUSH, 1);
        } else if pending == 0 {
            count(CNT_PAGEOUTS_UNDEFERRED, 1);
        } else {
            count(CNT_PAGEOUTS_READONLY_PENDING, 1);
        }
        return Ok(());
    }
    if seq != u.flush_seq + 1 {
        // Flushed more than once since (a full free batch came first): the covering flush's
        // time is gone with the later one.
        count(CNT_WINDOW_UNKNOWN, 1);
        return Ok(());
    }
    // SAFETY: helper without preconditions; map value owned by this task.
    let (now, flushed) = unsafe { (bpf_ktime_get_ns(), (*p).last_flush_end_ns) };
    hist_add(
        HIST_UNFLUSHED_WINDOW,
        ctx,
        log2_ns(flushed.saturating_sub(u.unmap_ns)),
        1,
    );
    hist_add(
        HIST_FLUSH_TO_PAGEOUT,
        ctx,
        log2_ns(now.saturating_sub(flushed)),
        1,
    );
    Ok(())
}

#[kprobe]
pub fn kp_pageout(ctx: ProbeContext) -> u32 {
    let r = ctx.arg::<u64>(0).ok_or(()).and_then(pageout_entry_core);
    report(PROG_PAGEOUT_ENTRY, r)
}

#[fentry]
pub fn fe_pageout(ctx: FEntryContext) -> u32 {
    report(PROG_PAGEOUT_ENTRY, pageout_entry_core(ctx.arg::<u64>(0)))
}

// ------------------------------------------------------------------ pageout
// A real (static) symbol on Debian 6.1.192 and 6.12.118; inlined into shrink_folio_list on
// 6.18.44 and 7.2.13, where the plan counts vmscan:mm_vmscan_write_folio instead (same path).

fn pageout_core(ret: u64) -> Result<(), ()> {
    if ret & 0xffff_ffff != PAGE_SUCCESS {
        return Ok(());
    }
    match pass_of(current_key()) {
        // SAFETY: map value owned by this task.
        Some(p) => unsafe {
            (*p).counts.pageouts += 1;
            (*p).await_pageout = 0;
        },
        None => count(CNT_PAGEOUTS_OUTSIDE, 1),
    }
    Ok(())
}

#[kretprobe]
pub fn kr_pageout(ctx: RetProbeContext) -> u32 {
    let ret: u64 = ctx.ret();
    report(PROG_PAGEOUT, pageout_core(ret))
}

#[fexit]
pub fn fx_pageout(ctx: FExitContext) -> u32 {
    let mut ret = 0u64;
    // SAFETY: as in fx_shrink_folio_list.
    unsafe { bpf_get_func_ret(ctx.as_ptr(), &mut ret) };
    report(PROG_PAGEOUT, pageout_core(ret))
}
