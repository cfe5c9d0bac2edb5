//! `tlb:tlb_flush`: victims (reasons 1 and 5, counted per CPU) and, in the tracepoint tier,
//! flush episodes of the reclaiming task.
//!
//! Reasons (include/linux/mm_types.h): 0 task switch (filtered first: by far the most
//! frequent), 1 remote shootdown (hardirq on the victim: its pid is whatever task was
//! interrupted, so never attribute it to a task), 2 local shootdown (`flush_tlb_func` with
//! mm == NULL: the local leg of arch_tlbbatch_flush), 3 local mm shootdown (flush_tlb_mm_range:
//! not batched), 4 remote send IPI (pages == -1 for the full flush of a batch), 5 remote wrong
//! CPU (6.18+).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use reclaim_trace_common::{
    CFG_PRECISE_FLUSH, CNT_OTHER_FLUSHES, CNT_REMOTE_SHOOTDOWNS, CNT_REMOTE_WRONG_CPU,
    PROG_TLB_FLUSH, TLB_FLUSH_ALL, TLB_LOCAL_MM_SHOOTDOWN, TLB_LOCAL_SHOOTDOWN,
    TLB_REMOTE_SEND_IPI, TLB_REMOTE_SHOOTDOWN, TLB_REMOTE_WRONG_CPU,
};

use crate::{
    config, count, count_error, current_tid_tgid, is_self,
    pass::{
        EP_DONE, EP_NONE, EP_OPEN, EP_UNBATCHED, PassState, close_episode, open_episode, pass_of,
        task_of, task_or_insert,
    },
    vmscan::Record,
};

// name: tlb_flush (6.18)
// field:int reason;	offset:8;	size:4;	signed:1;
// field:unsigned long pages;	offset:16;	size:8;	signed:0;
#[tracepoint(category = "tlb", name = "tlb_flush")]
pub fn tlb_flush(ctx: TracePointContext) -> u32 {
    if try_tlb_flush(&ctx).is_err() {
        count_error(PROG_TLB_FLUSH);
    }
    0
}

fn try_tlb_flush(ctx: &TracePointContext) -> Result<(), ()> {
    let r = Record::<24>::read(ctx)?;
    let reason: i32 = r.get(ctx, config!(tp.tlb_reason))?;
    let reason = reason as u32;
    match reason {
        TLB_REMOTE_SHOOTDOWN => {
            count(CNT_REMOTE_SHOOTDOWNS, 1);
            return Ok(());
        }
        TLB_REMOTE_WRONG_CPU => {
            count(CNT_REMOTE_WRONG_CPU, 1);
            return Ok(());
        }
        TLB_LOCAL_SHOOTDOWN | TLB_LOCAL_MM_SHOOTDOWN | TLB_REMOTE_SEND_IPI => {}
        _ => return Ok(()),
    }
    if config!(flags) & CFG_PRECISE_FLUSH != 0 {
        return Ok(());
    }
    let (tid, tgid) = current_tid_tgid();
    if is_self(tgid) {
        return Ok(());
    }
    let pages: u64 = r.get(ctx, config!(tp.tlb_pages))?;
    match pass_of(tid) {
        Some(p) => in_pass(p, reason, pages),
        None => outside_pass(tid, reason, pages),
    }
    Ok(())
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
                (*p).ep = EP_UNBATCHED;
                (*p).counts.unbatched_flushes += 1;
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
                    (*p).counts.unbatched_flushes += 1;
                } else if ep == EP_UNBATCHED {
                    (*p).ep = EP_NONE;
                } else {
                    close_episode(p, false);
                    (*p).counts.unbatched_flushes += 1;
                }
            }
        }
    }
}

/// Batched flushes outside reclaim (migration, compaction, NUMA balancing) are counted, not
/// put in the ratio. A full remote flush counts at once; if its local leg shows it was an mm
/// flush (reason 3) it is taken back. Per-CPU counters are summed with wrapping arithmetic.
#[inline(always)]
fn outside_pass(tid: u32, reason: u32, pages: u64) {
    match reason {
        TLB_REMOTE_SEND_IPI if pages == TLB_FLUSH_ALL => {
            if let Some(t) = task_or_insert(tid) {
                // SAFETY: map value owned by this task.
                unsafe { (*t).ep = EP_OPEN };
                count(CNT_OTHER_FLUSHES, 1);
            }
        }
        TLB_REMOTE_SEND_IPI => {
            if let Some(t) = task_of(tid) {
                // SAFETY: as above.
                unsafe { (*t).ep = EP_NONE };
            }
        }
        TLB_LOCAL_SHOOTDOWN => {
            let open = match task_of(tid) {
                // SAFETY: as above.
                Some(t) => unsafe { core::mem::replace(&mut (*t).ep, EP_NONE) == EP_OPEN },
                None => false,
            };
            if !open {
                count(CNT_OTHER_FLUSHES, 1);
            }
        }
        _ => {
            if let Some(t) = task_of(tid) {
                // SAFETY: as above.
                if unsafe { core::mem::replace(&mut (*t).ep, EP_NONE) } == EP_OPEN {
                    count(CNT_OTHER_FLUSHES, u64::MAX); // -1
                }
            }
        }
    }
}
