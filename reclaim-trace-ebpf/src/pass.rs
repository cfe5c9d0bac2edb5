//! Per-task reclaim pass state, flush episodes, and the end-of-pass record.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_task, bpf_get_smp_processor_id, bpf_ktime_get_ns,
};
use reclaim_trace_common::{
    CFG_EMIT_FLUSHES, CNT_FLUSH_RECORD_DROPS, CNT_PASS_MAP_FULL, CNT_RINGBUF_DROPS, CTX_DIRECT,
    CTX_KSWAPD, CTX_MEMCG, CTX_OTHER, FLUSH_BATCH, FLUSH_DIRTY, FlushRecord, HIST_BATCH_FILL,
    HIST_FANOUT_CANDIDATES, HIST_FANOUT_TARGETS, HIST_IPIS, N_CTX, PASS_F_FILL_EXACT, PF_KSWAPD,
    PassCounts, PassRecord, RECORD_FLUSH, RECORD_PASS, WAKEUP_BYTES,
};

use crate::{EVENTS, PASSES, TASKS, TOTALS, ZERO, config, count, hist_add, kread};

/// No flush in progress.
pub const EP_NONE: u32 = 0;
/// A batched (full) flush has started (`tlb_flush` reason 4 with pages = -1, or
/// `arch_tlbbatch_flush` entry); its targets and IPIs are being counted.
pub const EP_OPEN: u32 = 1;
/// The flush's local leg was seen (reason 2); waiting to learn whether a pageout follows.
pub const EP_DONE: u32 = 2;
/// An immediate, non-batched flush (`flush_tlb_mm_range`) is in progress; not a batch flush.
pub const EP_UNBATCHED: u32 = 3;

/// Reclaim-context windows opened by the `*_reclaim_begin`/`_end` tracepoints.
pub const WIN_DIRECT: u32 = 1 << 0;
pub const WIN_MEMCG: u32 = 1 << 1;

/// What the kernel side remembers about one task that is reclaiming.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PassState {
    pub flags: u32,
    pub ctx: u32,
    pub cgroup_id: u64,
    pub start_ns: u64,
    pub counts: PassCounts,
    /// `EP_*`.
    pub ep: u32,
    /// The open episode is a dirty flush (`try_to_unmap_flush_dirty` found `writable`).
    pub ep_dirty: u32,
    pub ep_targets: u64,
    pub ep_ipis: u64,
    /// `u64::MAX` when the batch cpumask is not observable (tracepoint tier).
    pub ep_candidates: u64,
    pub ep_fill: u64,
    pub unmaps_since_flush: u64,
    /// Precise tier: `try_to_unmap_flush_dirty` saw `tlb_ubc.writable`; the next
    /// `arch_tlbbatch_flush` on this task is a dirty flush.
    pub dirty_pending: u32,
    /// Precise tier: a dirty flush happened and no pageout has followed it yet.
    pub await_pageout: u32,
    /// Precise tier: arguments of shrink_folio_list, kept for the exit probe.
    pub sc: u64,
    pub stat: u64,
    pub sc_nr_scanned_start: u64,
}

/// Per-task state outside passes: reclaim-context windows and out-of-pass flush episodes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TaskState {
    /// `WIN_*` bits.
    pub windows: u32,
    /// `EP_OPEN` while a full remote flush outside any pass (migration, compaction...) waits
    /// for its local leg, which tells a batched flush (reason 2) from an mm flush (reason 3).
    pub ep: u32,
}

#[inline(always)]
pub fn pass_of(tid: u32) -> Option<*mut PassState> {
    PASSES.get_ptr_mut(tid)
}

#[inline(always)]
pub fn task_of(tid: u32) -> Option<*mut TaskState> {
    TASKS.get_ptr_mut(tid)
}

/// Get or create the task state of `tid`.
#[inline(always)]
pub fn task_or_insert(tid: u32) -> Option<*mut TaskState> {
    if let Some(t) = TASKS.get_ptr_mut(tid) {
        return Some(t);
    }
    let zero = TaskState { windows: 0, ep: 0 };
    if TASKS.insert(tid, zero, 0).is_err() {
        count(CNT_PASS_MAP_FULL, 1);
        return None;
    }
    TASKS.get_ptr_mut(tid)
}

/// The memory cgroup id of the current task (kernfs id of its memcg directory).
#[inline(always)]
fn current_memcg_id() -> u64 {
    // SAFETY: returns the current task_struct pointer as an integer; never dereferenced here.
    let task = unsafe { bpf_get_current_task() };
    let css_set: u64 = kread(task, config!(btf.task_cgroups)).unwrap_or(0);
    let css: u64 = kread(css_set, config!(btf.css_set_memory_subsys)).unwrap_or(0);
    css_id(css)
}

/// kernfs id of the cgroup a `cgroup_subsys_state` belongs to.
#[inline(always)]
pub fn css_id(css: u64) -> u64 {
    let cgrp: u64 = kread(css, config!(btf.css_cgroup)).unwrap_or(0);
    let kn: u64 = kread(cgrp, config!(btf.cgroup_kn)).unwrap_or(0);
    kread(kn, config!(btf.kernfs_node_id)).unwrap_or(0)
}

#[inline(always)]
pub fn current_is_kswapd() -> bool {
    // SAFETY: as above.
    let task = unsafe { bpf_get_current_task() };
    let flags: u32 = kread(task, config!(btf.task_flags)).unwrap_or(0);
    flags & PF_KSWAPD != 0
}

/// The reclaim context from the task's windows (tracepoint tier, and precise-tier fallback).
#[inline(always)]
pub fn window_context(tid: u32) -> u32 {
    if current_is_kswapd() {
        return CTX_KSWAPD;
    }
    let windows = match task_of(tid) {
        // SAFETY: map value pointer from a successful lookup.
        Some(t) => unsafe { (*t).windows },
        None => 0,
    };
    if windows & WIN_MEMCG != 0 {
        CTX_MEMCG
    } else if windows & WIN_DIRECT != 0 {
        CTX_DIRECT
    } else {
        CTX_OTHER
    }
}

/// Start a pass on `tid`, replacing any stale one. `cgroup_id == 0` means "the current task's".
#[inline(always)]
pub fn start_pass(tid: u32, ctx: u32, flags: u32, cgroup_id: u64) -> Option<*mut PassState> {
    let zero = ZERO.get_ptr(0)?;
    // SAFETY: ZERO is never written, so its value is all zeroes. Passed by reference: a copy
    // would put the whole PassState on the 512-byte BPF stack.
    #[allow(clippy::needless_borrows_for_generic_args)]
    if PASSES.insert(tid, unsafe { &*zero }, 0).is_err() {
        count(CNT_PASS_MAP_FULL, 1);
        return None;
    }
    let p = PASSES.get_ptr_mut(tid)?;
    let cgroup_id = if cgroup_id == 0 {
        current_memcg_id()
    } else {
        cgroup_id
    };
    // SAFETY: freshly inserted map value owned by this task.
    unsafe {
        (*p).flags = flags;
        (*p).ctx = if ctx < N_CTX { ctx } else { CTX_OTHER };
        (*p).cgroup_id = cgroup_id;
        (*p).start_ns = bpf_ktime_get_ns();
        (*p).ep_candidates = u64::MAX;
    }
    Some(p)
}

/// Open a flush episode (a previous one still open is closed as a batch flush first).
#[inline(always)]
pub fn open_episode(p: *mut PassState, dirty: bool, candidates: u64, fill: u64) {
    close_episode(p, false);
    // SAFETY: map value owned by this task.
    unsafe {
        (*p).ep = EP_OPEN;
        (*p).ep_dirty = dirty as u32;
        (*p).ep_targets = 0;
        (*p).ep_ipis = 0;
        (*p).ep_candidates = candidates;
        (*p).ep_fill = fill;
    }
}

/// Close the open episode. A batched flush is classified dirty if the probe said so or if
/// `by_pageout` (a pageout immediately followed the flush: the tracepoint-tier rule).
#[inline(always)]
pub fn close_episode(p: *mut PassState, by_pageout: bool) {
    // SAFETY: map value owned by this task.
    let s = unsafe { &mut *p };
    let ep = s.ep;
    s.ep = EP_NONE;
    if ep != EP_OPEN && ep != EP_DONE {
        return;
    }
    let dirty = s.ep_dirty != 0 || by_pageout;
    let ctx = s.ctx;
    if dirty {
        s.counts.dirty_flushes += 1;
    } else {
        s.counts.batch_flushes += 1;
    }
    s.counts.fanout_targets += s.ep_targets;
    s.counts.ipis += s.ep_ipis;
    if s.ep_targets == 0 {
        s.counts.flushes_without_ipi += 1;
    }
    hist_add(HIST_FANOUT_TARGETS, ctx, s.ep_targets, 1);
    hist_add(HIST_IPIS, ctx, s.ep_ipis, 1);
    if s.ep_candidates != u64::MAX {
        s.counts.fanout_candidates += s.ep_candidates;
        hist_add(HIST_FANOUT_CANDIDATES, ctx, s.ep_candidates, 1);
    }
    if s.flags & PASS_F_FILL_EXACT != 0 {
        hist_add(HIST_BATCH_FILL, ctx, s.ep_fill, 1);
    }
    if config!(flags) & CFG_EMIT_FLUSHES != 0 {
        let class = if dirty { FLUSH_DIRTY } else { FLUSH_BATCH };
        emit_flush(
            class,
            ctx,
            s.ep_fill_or_unknown(),
            s.ep_candidates,
            s.ep_targets,
            s.ep_ipis,
        );
    }
}

impl PassState {
    #[inline(always)]
    fn ep_fill_or_unknown(&self) -> u64 {
        if self.flags & PASS_F_FILL_EXACT != 0 {
            self.ep_fill
        } else {
            u64::MAX
        }
    }
}

/// Submit flags: wake the reader only when a quarter of the buffer is waiting (it also drains
/// on a timer), so that the common case costs no irq_work.
#[inline(always)]
fn submit_flags() -> u64 {
    const BPF_RB_AVAIL_DATA: u64 = 0;
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
pub fn emit_flush(class: u32, ctx: u32, fill: u64, candidates: u64, targets: u64, ipis: u64) {
    let Some(mut entry) = EVENTS.reserve::<FlushRecord>(0) else {
        count(CNT_FLUSH_RECORD_DROPS, 1);
        return;
    };
    let r = entry.as_mut_ptr();
    let (tid, _) = crate::current_tid_tgid();
    // SAFETY: `r` points at a reserved, writable ring-buffer slot of the right size.
    unsafe {
        (*r).kind = RECORD_FLUSH;
        (*r).class = class;
        (*r).tid = tid;
        (*r).context = ctx;
        (*r).cpu = bpf_get_smp_processor_id();
        (*r)._pad = 0;
        (*r).ts_ns = bpf_ktime_get_ns();
        (*r).fill = fill;
        (*r).candidates = candidates;
        (*r).targets = targets;
        (*r).ipis = ipis;
    }
    entry.submit(submit_flags());
}

#[inline(always)]
fn add_counts(dst: &mut PassCounts, src: &PassCounts) {
    dst.passes += src.passes;
    dst.folios_in += src.folios_in;
    dst.folios_reclaimed += src.folios_reclaimed;
    dst.pages_reclaimed += src.pages_reclaimed;
    dst.pages_scanned += src.pages_scanned;
    dst.pageouts += src.pageouts;
    dst.dirty_flushes += src.dirty_flushes;
    dst.batch_flushes += src.batch_flushes;
    dst.unbatched_flushes += src.unbatched_flushes;
    dst.fanout_candidates += src.fanout_candidates;
    dst.fanout_targets += src.fanout_targets;
    dst.ipis += src.ipis;
    dst.flushes_without_ipi += src.flushes_without_ipi;
    dst.batched_unmaps += src.batched_unmaps;
    dst.duration_ns += src.duration_ns;
    dst.nr_dirty += src.nr_dirty;
    dst.nr_writeback += src.nr_writeback;
    dst.nr_activate += src.nr_activate;
    dst.nr_unmap_fail += src.nr_unmap_fail;
    dst.dirty_flush_calls += src.dirty_flush_calls;
}

/// Estimated batch fill when unmaps are not observable (tracepoint tier): each dirty flush
/// covered the one folio written next; the batch flushes share the rest of the reclaimed
/// folios evenly. Userspace marks the histogram `exact: false`.
#[inline(always)]
fn estimate_fill(s: &PassCounts, ctx: u32) {
    let dirty = s.dirty_flushes;
    hist_add(HIST_BATCH_FILL, ctx, 1, dirty);
    let batch = s.batch_flushes;
    if batch == 0 {
        return;
    }
    let rest = s.folios_reclaimed.saturating_sub(dirty);
    let q = rest / batch;
    let r = rest % batch;
    hist_add(HIST_BATCH_FILL, ctx, q, batch - r);
    hist_add(HIST_BATCH_FILL, ctx, q + 1, r);
}

/// Finish the pass of `tid`: close its last flush, add it to the totals, send its record.
#[inline(always)]
pub fn end_pass(tid: u32, tgid: u32, p: *mut PassState) {
    close_episode(p, false);
    // SAFETY: map value owned by this task; removed from the map only at the end.
    let s = unsafe { &mut *p };
    let end_ns = unsafe { bpf_ktime_get_ns() };
    s.counts.passes = 1;
    s.counts.duration_ns = end_ns.saturating_sub(s.start_ns);
    let ctx = if s.ctx < N_CTX { s.ctx } else { CTX_OTHER };
    if s.flags & PASS_F_FILL_EXACT == 0 {
        estimate_fill(&s.counts, ctx);
    }
    if let Some(t) = TOTALS.get_ptr_mut(ctx) {
        // SAFETY: per-CPU slot.
        add_counts(unsafe { &mut *t }, &s.counts);
    }
    match EVENTS.reserve::<PassRecord>(0) {
        Some(mut entry) => {
            let r = entry.as_mut_ptr();
            // SAFETY: `r` points at a reserved ring-buffer slot of size_of::<PassRecord>().
            unsafe {
                (*r).kind = RECORD_PASS;
                (*r).flags = s.flags;
                (*r).tid = tid;
                (*r).tgid = tgid;
                (*r).context = ctx;
                (*r).cpu = bpf_get_smp_processor_id();
                (*r).cgroup_id = s.cgroup_id;
                (*r).start_ns = s.start_ns;
                (*r).end_ns = end_ns;
                (*r).comm = bpf_get_current_comm().unwrap_or([0; 16]);
                (*r).counts = s.counts;
            }
            entry.submit(submit_flags());
        }
        None => count(CNT_RINGBUF_DROPS, 1),
    }
    let _ = PASSES.remove(tid);
}
