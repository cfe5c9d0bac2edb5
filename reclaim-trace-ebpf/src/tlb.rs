//! `tlb:tlb_flush`: victims (reasons 1 and 5, counted per CPU) and, in the tracepoint tier,
//! flush episodes of the reclaiming task.
//!
//! Reasons (include/linux/mm_types.h): 0 task switch (filtered first: by far the most
//! frequent), 1 remote shootdown (hardirq on the victim: its pid is whatever task was
//! interrupted, so never attribute it to a task), 2 local shootdown (`flush_tlb_func` with
//! mm == NULL: the local leg of arch_tlbbatch_flush), 3 local mm shootdown (flush_tlb_mm_range:
//! not batched), 4 remote send IPI (pages == -1 for the full flush of a batch), 5 remote wrong
//! CPU (6.18+).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use reclaim_trace_common::{
    CFG_PRECISE_FLUSH, CNT_OTHER_FLUSHES, CNT_REMOTE_SHOOTDOWNS, CNT_REMOTE_WRONG_CPU,
    TLB_FLUSH_ALL, TLB_LOCAL_MM_SHOOTDOWN, TLB_LOCAL_SHOOTDOWN, TLB_REMOTE_SEND_IPI,
    TLB_REMOTE_SHOOTDOWN, TLB_REMOTE_WRONG_CPU,
};

use crate::{
    config, count,
    pass::{
        EP_DONE, EP_IMMEDIATE, EP_NONE, EP_OPEN, PassState, close_episode, current_key, entry_of,
        entry_or_insert, open_episode, pass_of,
    },
};

// TP_PROTO(int reason, unsigned long pages), unchanged 6.1 … 7.2. A raw tracepoint: the
// kernel skips building the trace record (this fires on every context switch), and the
// arguments are read straight from the context.
#[raw_tracepoint(tracepoint = "tlb_flush")]
pub fn tlb_flush(ctx: RawTracePointContext) -> u32 {
    try_tlb_flush(&ctx);
    0
}

fn try_tlb_flush(ctx: &RawTracePointContext) {
    let reason = ctx.arg::<u64>(0) as u32;
    match reason {
        TLB_REMOTE_SHOOTDOWN => {
            count(CNT_REMOTE_SHOOTDOWNS, 1);
            return;
        }
        TLB_REMOTE_WRONG_CPU => {
            count(CNT_REMOTE_WRONG_CPU, 1);
            return;
        }
        TLB_LOCAL_SHOOTDOWN | TLB_LOCAL_MM_SHOOTDOWN | TLB_REMOTE_SEND_IPI => {}
        _ => return,
    }
    let key = current_key();
    if config!(flags) & CFG_PRECISE_FLUSH != 0 {
        // arch_tlbbatch_flush delimits the deferred flushes; only immediate ones are left.
        if let Some(p) = pass_of(key) {
            immediate_in_precise_pass(p, reason);
        }
        return;
    }
    let pages = ctx.arg::<u64>(1);
    match pass_of(key) {
        Some(p) => in_pass(p, reason, pages),
        None => outside_pass(key, reason, pages),
    }
}

#[inline(always)]
fn in_pass(p: *mut PassState, reason: u32, pages: u64) {
    // SAFETY: map value owned by this task.
    let ep = unsafe { (*p).ep };
    match reason {
        TLB_REMOTE_SEND_IPI if pages == TLB_FLUSH_ALL => open_episode(p, false, u64::MAX, 0),
        TLB_REMOTE_SEND_IPI => {
            // A ranged flush from flush_tlb_mm_range: try_to_unmap_one could not defer.
            close_episode(p, false);
            // SAFETY: as above.
            unsafe {
                (*p).ep = EP_IMMEDIATE;
                (*p).counts.immediate_flushes += 1;
            }
        }
        TLB_LOCAL_SHOOTDOWN => {
            if ep != EP_OPEN {
                // A local-only batched flush: no other CPU was in the batch.
                open_episode(p, false, u64::MAX, 0);
            }
            // SAFETY: as above.
            unsafe { (*p).ep = EP_DONE };
        }
        _ => {
            // TLB_LOCAL_MM_SHOOTDOWN: the local leg of an mm flush, never of a batch.
            // SAFETY: as above.
            unsafe {
                if ep == EP_OPEN {
                    // The full flush that opened the episode was flush_tlb_mm_range's.
                    (*p).ep = EP_NONE;
                    (*p).counts.immediate_flushes += 1;
                } else if ep == EP_IMMEDIATE {
                    (*p).ep = EP_NONE;
                } else {
                    close_episode(p, false);
                    (*p).counts.immediate_flushes += 1;
                }
            }
        }
    }
}

/// Precise tier: a flush inside a pass but outside `arch_tlbbatch_flush` is an immediate one
/// (`flush_tlb_mm_range` from `try_to_unmap_one` when `should_defer_flush()` said no, or a PMD
/// split's flush). Its remote leg (reason 4) comes before its local one (reason 3); an mm on
/// this CPU only has the local leg.
#[inline(always)]
fn immediate_in_precise_pass(p: *mut PassState, reason: u32) {
    // SAFETY: map value owned by this task.
    let s = unsafe { &mut *p };
    if s.ep == EP_OPEN {
        return; // the legs of the batch flush arch_tlbbatch_flush is doing
    }
    match reason {
        TLB_REMOTE_SEND_IPI => {
            s.ep = EP_IMMEDIATE;
            s.counts.immediate_flushes += 1;
        }
        TLB_LOCAL_MM_SHOOTDOWN => {
            if s.ep == EP_IMMEDIATE {
                s.ep = EP_NONE;
            } else {
                s.counts.immediate_flushes += 1;
            }
        }
        _ => {}
    }
}

/// Batched flushes outside reclaim (migration, compaction, NUMA balancing) are counted, not
/// put in the ratio. A full remote flush counts at once; if its local leg shows it was an mm
/// flush (reason 3) it is taken back. Per-CPU counters are summed with wrapping arithmetic.
#[inline(always)]
fn outside_pass(key: u64, reason: u32, pages: u64) {
    match reason {
        TLB_REMOTE_SEND_IPI if pages == TLB_FLUSH_ALL => {
            if let Some(t) = entry_or_insert(key) {
                // SAFETY: map value owned by this task.
                unsafe { (*t).other_ep = EP_OPEN };
                count(CNT_OTHER_FLUSHES, 1);
            }
        }
        TLB_REMOTE_SEND_IPI => {
            if let Some(t) = entry_of(key) {
                // SAFETY: as above.
                unsafe { (*t).other_ep = EP_NONE };
            }
        }
        TLB_LOCAL_SHOOTDOWN => {
            let open = match entry_of(key) {
                // SAFETY: as above.
                Some(t) => unsafe { core::mem::replace(&mut (*t).other_ep, EP_NONE) == EP_OPEN },
                None => false,
            };
            if !open {
                count(CNT_OTHER_FLUSHES, 1);
            }
        }
        _ => {
            if let Some(t) = entry_of(key) {
                // SAFETY: as above.
                if unsafe { core::mem::replace(&mut (*t).other_ep, EP_NONE) } == EP_OPEN {
                    count(CNT_OTHER_FLUSHES, u64::MAX); // -1
                }
            }
        }
    }
}
