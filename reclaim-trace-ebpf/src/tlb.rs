//! `tlb:tlb_flush`: remote shootdowns received (reasons 1 and 5, counted per CPU) and the
//! reclaiming task's flushes (the state machine is `reclaim_trace_common::flush`).
//!
//! Reasons (include/linux/mm_types.h): 0 task switch (filtered first: by far the most
//! frequent), 1 remote shootdown (hardirq on the victim: its pid is whatever task was
//! interrupted, so never attribute it to a task), 2 local shootdown (`flush_tlb_func` with
//! mm == NULL: the local leg of arch_tlbbatch_flush), 3 local mm shootdown (flush_tlb_mm_range:
//! not batched), 4 remote send IPI (pages == -1 for the full flush of a batch), 5 remote wrong
//! CPU (6.18+).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use reclaim_trace_common::{
    CFG_PRECISE_FLUSH, CNT_OTHER_FLUSHES, CNT_REMOTE_SHOOTDOWNS_TRACED, CNT_REMOTE_WRONG_CPU,
    CNT_UNKNOWN_TLB_FLUSH_REASON, TLB_FLUSH_ALL, TLB_LOCAL_MM_SHOOTDOWN, TLB_LOCAL_SHOOTDOWN,
    TLB_REMOTE_SEND_IPI, TLB_REMOTE_SHOOTDOWN, TLB_REMOTE_WRONG_CPU,
    flush::{EPISODE_NONE, outside_pass_flush},
};

use crate::{
    anomaly, config, count,
    pass::{PassState, current_key, entry_of, entry_or_insert, pass_of, record_closed},
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
            count(CNT_REMOTE_SHOOTDOWNS_TRACED, 1);
            return;
        }
        TLB_REMOTE_WRONG_CPU => {
            count(CNT_REMOTE_WRONG_CPU, 1);
            return;
        }
        TLB_LOCAL_SHOOTDOWN | TLB_LOCAL_MM_SHOOTDOWN | TLB_REMOTE_SEND_IPI => {}
        reason if reason > TLB_REMOTE_WRONG_CPU => {
            anomaly!(
                CNT_UNKNOWN_TLB_FLUSH_REASON,
                "unknown_tlb_flush_reason: tlb_flush reason {} is newer than this build \
                 (include/linux/mm_types.h); ignored",
                reason
            );
            return;
        }
        // TLB_FLUSH_ON_TASK_SWITCH: not a shootdown.
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
    let s = unsafe { &mut *p };
    let closed = s.episode.on_tlb_flush(&mut s.counts, reason, pages);
    record_closed(s, closed);
}

/// Precise tier: see `FlushEpisode::on_tlb_flush_precise`.
#[inline(always)]
fn immediate_in_precise_pass(p: *mut PassState, reason: u32) {
    // SAFETY: map value owned by this task.
    let s = unsafe { &mut *p };
    s.episode.on_tlb_flush_precise(&mut s.counts, reason);
}

/// Batched flushes outside reclaim (migration, compaction, NUMA balancing) are counted, not
/// put in the ratio (see `outside_pass_flush`).
#[inline(always)]
fn outside_pass(key: u64, reason: u32, pages: u64) {
    let opens = reason == TLB_REMOTE_SEND_IPI && pages == TLB_FLUSH_ALL;
    let entry = if opens {
        entry_or_insert(key)
    } else {
        entry_of(key)
    };
    let mut untracked = EPISODE_NONE;
    let state = match entry {
        // SAFETY: map value owned by this task.
        Some(t) => unsafe { &mut (*t).outside_flush },
        None if opens => return, // no slot for this task: cannot pair the legs
        None => &mut untracked,
    };
    let n = outside_pass_flush(state, reason, pages);
    if n != 0 {
        count(CNT_OTHER_FLUSHES, n);
    }
}
