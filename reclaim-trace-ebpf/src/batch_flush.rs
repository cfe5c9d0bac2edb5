//! The precise tier's flush boundaries: where a reclaim pass's batched TLB flush begins and
//! ends, per architecture (the plan picks one flavour at run time, `CFG_FLUSH_RMAP`).
//!
//! - x86: `arch_tlbbatch_flush(batch)` is a real function; `batch->cpumask` are the candidate
//!   CPUs, and the flush sends IPIs to them (counted by `smp`). `try_to_unmap_flush_dirty()`
//!   entry only marks the next `arch_tlbbatch_flush` as the dirty flush.
//! - arm64 (6.5+): `arch_tlbbatch_flush` is a `static inline` in asm/tlbflush.h (no symbol,
//!   no BTF function, no probe) and its batch struct is empty: each unmap already broadcast its
//!   TLBI, the flush only waits for them (DSB). A flush is then `try_to_unmap_flush()` finding
//!   `current->tlb_ubc.flush_required`, or `try_to_unmap_flush_dirty()` finding `.writable`,
//!   from their entry to their return. On Debian's 6.12.118 (x86 and arm64 alike) the compiler
//!   inlines `try_to_unmap_flush` into `try_to_unmap_flush_dirty`, so both are probed; where it
//!   is a call, the nested entry finds the episode open and leaves it to its caller. The
//!   symbol stays for its other callers: in a 20 s anon run on 6.12.118 arm64 it flushed 647
//!   times (shrink_folio_list's end of list), `try_to_unmap_flush_dirty` 12,138.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_get_smp_processor_id},
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use reclaim_trace_common::{
    CFG_EMIT_FLUSHES, CFG_FLUSH_RMAP, CFG_STALE_WINDOW, CNT_DIRTY_FLUSH_WITHOUT_PAGEOUT,
    CNT_OTHER_FLUSH_CANDIDATES, CNT_OTHER_FLUSHES, CTX_OUTSIDE, FLUSH_OTHER,
    HIST_FANOUT_CANDIDATES, MAX_CPUMASK_WORDS, PROG_ARCH_TLBBATCH_FLUSH, PROG_FLUSH_DIRTY,
    PROG_RMAP_FLUSH,
};

use crate::{
    PassState, config, count, hist_add, kread,
    pass::{close_episode, current_key, open_episode, pass_of},
    precise::{flush_ended, report},
    records::emit_flush,
};

/// A batched flush of the pass `p` begins: its fill is the folios unmapped since the last one,
/// `cands` the CPUs it targets (`u64::MAX`: not known, arm64's broadcast).
#[inline(always)]
fn open_reclaim_flush(p: *mut PassState, dirty: bool, cands: u64) {
    // SAFETY: map value owned by this task.
    let fill = unsafe {
        let f = (*p).unmaps_since_flush;
        (*p).dirty_pending = 0;
        (*p).unmaps_since_flush = 0;
        if (*p).await_pageout != 0 {
            count(CNT_DIRTY_FLUSH_WITHOUT_PAGEOUT, 1);
        }
        (*p).await_pageout = dirty as u32;
        f
    };
    open_episode(p, dirty, cands, fill as u64);
}

/// A batched flush outside any reclaim pass (migration, compaction, khugepaged, DAMON).
#[inline(always)]
fn other_flush(cands: u64) {
    count(CNT_OTHER_FLUSHES, 1);
    if cands != u64::MAX {
        count(CNT_OTHER_FLUSH_CANDIDATES, cands);
        hist_add(HIST_FANOUT_CANDIDATES, CTX_OUTSIDE, cands, 1);
    }
    if config!(flags) & CFG_EMIT_FLUSHES != 0 {
        emit_flush(
            FLUSH_OTHER,
            CTX_OUTSIDE,
            u64::MAX,
            cands,
            u64::MAX,
            u64::MAX,
        );
    }
}

/// The open flush of the pass ends (arm64: at the first of the nested exits, right after
/// the DSB).
#[inline(always)]
fn close_reclaim_flush() {
    let Some(p) = pass_of(current_key()) else {
        return;
    };
    // SAFETY: map value owned by this task.
    if unsafe { !(*p).episode.is_open() } {
        return;
    }
    close_episode(p, false);
    if config!(flags) & CFG_STALE_WINDOW != 0 {
        flush_ended(p);
    }
}

/// `tlb_ubc.writable` (`dirty`) or `.flush_required` of the current task.
#[inline(always)]
fn tlb_ubc(dirty: bool) -> Result<bool, ()> {
    // SAFETY: current task pointer, only used as a base for probe reads.
    let task = unsafe { bpf_get_current_task() };
    let off = if dirty {
        config!(btf.task_tlb_ubc_writable)
    } else {
        config!(btf.task_tlb_ubc_flush_required)
    };
    Ok(kread::<u8>(task, off).ok_or(())? != 0)
}

// ------------------------------------------------------------------ try_to_unmap_flush_dirty

// With MGLRU on (the default of Debian's 6.12.118 and 7.2.13) pageout() keeps 0-12% of the
// folios right after this flush (presumably an extra reference from a fault; not verified), so
// dirty flushes exceed pageouts; `await_pageout` counts those (CNT_DIRTY_FLUSH_WITHOUT_PAGEOUT).
// With the classic LRU (6.1.192; 7.2.13 with MGLRU off) they matched one to one.
fn flush_dirty_core() -> Result<(), ()> {
    let Some(p) = pass_of(current_key()) else {
        return Ok(());
    };
    let writable = tlb_ubc(true)?;
    // SAFETY: map value owned by this task.
    unsafe {
        (*p).counts.dirty_flush_calls += 1;
        // try_to_unmap_flush_dirty() flushes only if a dirty PTE was batched; on x86 that
        // flush is the arch_tlbbatch_flush() that follows on this task.
        (*p).dirty_pending = writable as u32;
    }
    // SAFETY: map value owned by this task.
    if config!(flags) & CFG_FLUSH_RMAP != 0 && unsafe { (*p).episode.rmap_flush_opens(writable) } {
        open_reclaim_flush(p, true, u64::MAX);
    }
    Ok(())
}

#[kprobe]
pub fn kp_try_to_unmap_flush_dirty(_ctx: ProbeContext) -> u32 {
    report(PROG_FLUSH_DIRTY, flush_dirty_core())
}

#[fentry]
pub fn fe_try_to_unmap_flush_dirty(_ctx: FEntryContext) -> u32 {
    report(PROG_FLUSH_DIRTY, flush_dirty_core())
}

/// arm64: the dirty flush ends at the return (attached only with `CFG_FLUSH_RMAP`).
#[kretprobe]
pub fn kr_try_to_unmap_flush_dirty(_ctx: RetProbeContext) -> u32 {
    close_reclaim_flush();
    0
}

#[fexit]
pub fn fx_try_to_unmap_flush_dirty(_ctx: FExitContext) -> u32 {
    close_reclaim_flush();
    0
}

// ------------------------------------------------------------------ try_to_unmap_flush (arm64)

fn rmap_flush_entry_core() -> Result<(), ()> {
    let pending = tlb_ubc(false)?;
    match pass_of(current_key()) {
        // SAFETY: map value owned by this task.
        Some(p) if unsafe { (*p).episode.rmap_flush_opens(pending) } => {
            open_reclaim_flush(p, false, u64::MAX)
        }
        // Nothing batched (it returns at once), or called by try_to_unmap_flush_dirty(), whose
        // entry opened the flush already.
        Some(_) => {}
        None if pending => other_flush(u64::MAX),
        None => {}
    }
    Ok(())
}

#[kprobe]
pub fn kp_try_to_unmap_flush(_ctx: ProbeContext) -> u32 {
    report(PROG_RMAP_FLUSH, rmap_flush_entry_core())
}

#[kretprobe]
pub fn kr_try_to_unmap_flush(_ctx: RetProbeContext) -> u32 {
    close_reclaim_flush();
    0
}

#[fentry]
pub fn fe_try_to_unmap_flush(_ctx: FEntryContext) -> u32 {
    report(PROG_RMAP_FLUSH, rmap_flush_entry_core())
}

#[fexit]
pub fn fx_try_to_unmap_flush(_ctx: FExitContext) -> u32 {
    close_reclaim_flush();
    0
}

// ------------------------------------------------------------------ arch_tlbbatch_flush (x86)

/// CPUs in `batch->cpumask` other than this one, and whether this one is in it. Debian's cloud
/// kernels (6.1.192 .. 7.2.13) have NR_CPUS 8192, a 1 KiB cpumask: only the words below
/// nr_cpu_ids are read. On 6.1.192 (no csd:/ipi: tracepoints) this is the only fan-out figure.
#[inline(always)]
fn candidates(batch: u64) -> Result<(u64, bool), ()> {
    let mask = batch + config!(btf.batch_cpumask) as u64;
    if config!(btf.batch_cpumask) == reclaim_trace_common::OFF_NONE {
        return Err(());
    }
    // SAFETY: helper without preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let words = config!(cpumask_words);
    let mut n = 0u64;
    let mut self_in = false;
    for i in 0..MAX_CPUMASK_WORDS {
        if i >= words {
            break;
        }
        let w: u64 = kread(mask, i * 8).ok_or(())?;
        n += w.count_ones() as u64;
        if i == cpu / 64 && (w >> (cpu % 64)) & 1 == 1 {
            self_in = true;
        }
    }
    Ok((n - self_in as u64, self_in))
}

fn tlbbatch_entry_core(batch: u64) -> Result<(), ()> {
    let (cands, self_in) = candidates(batch)?;
    if cands == 0 && !self_in {
        return Ok(()); // empty batch: arch_tlbbatch_flush() does nothing
    }
    match pass_of(current_key()) {
        Some(p) => {
            // SAFETY: map value owned by this task.
            let dirty = unsafe { (*p).dirty_pending != 0 };
            open_reclaim_flush(p, dirty, cands);
        }
        None => other_flush(cands),
    }
    Ok(())
}

#[kprobe]
pub fn kp_arch_tlbbatch_flush(ctx: ProbeContext) -> u32 {
    let r = ctx.arg::<u64>(0).ok_or(()).and_then(tlbbatch_entry_core);
    report(PROG_ARCH_TLBBATCH_FLUSH, r)
}

#[kretprobe]
pub fn kr_arch_tlbbatch_flush(_ctx: RetProbeContext) -> u32 {
    close_reclaim_flush();
    0
}

#[fentry]
pub fn fe_arch_tlbbatch_flush(ctx: FEntryContext) -> u32 {
    report(
        PROG_ARCH_TLBBATCH_FLUSH,
        tlbbatch_entry_core(ctx.arg::<u64>(0)),
    )
}

#[fexit]
pub fn fx_arch_tlbbatch_flush(_ctx: FExitContext) -> u32 {
    close_reclaim_flush();
    0
}
