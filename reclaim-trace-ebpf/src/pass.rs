//! Per-task reclaim pass state: the task slots, pass start and end, flush episodes (the
//! state machine itself is `reclaim_trace_common::flush`), folio counting.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_ktime_get_ns, generated as raw};
use reclaim_trace_common::{
    CFG_COUNT_FOLIOS, CFG_EMIT_FLUSHES, CFG_PRECISE_FLUSH, CNT_EPISODE_LEFT_OPEN,
    CNT_PASS_MAP_FULL, CNT_RINGBUF_DROPS, CNT_UNMATCHED_PAGES, CNT_UNMATCHED_PASSES,
    CONTROL_STOPPED, CTX_DIRECT, CTX_KSWAPD, CTX_MEMCG, CTX_OTHER, FLUSH_BATCH, FLUSH_DIRTY,
    HIST_BATCH_FILL, HIST_FANOUT_CANDIDATES, HIST_FANOUT_TARGETS, HIST_IPIS, N_CTX, OFF_NONE,
    PASS_F_FILL_EXACT, PASS_F_HAS_START, PF_KSWAPD, PassCounts, PassDelta, PassWire,
    flush::{Closed, FanoutRun, FlushEpisode, estimated_batch_fill, unmatched_pages},
    pass_delta_fields,
};

use crate::{
    CONTROL, EVENTS, TASK_SLOTS, TASKS, TOTALS, anomaly, config, count, hist_add, kread,
    records::{emit_flush, stage, submit_flags, write_record},
    zero_words,
};

/// Reclaim-context windows opened by the `*_reclaim_begin`/`_end` tracepoints.
pub const WIN_DIRECT: u32 = 1 << 0;
pub const WIN_MEMCG: u32 = 1 << 1;

/// `start_pass` context argument: derive it from the task (kswapd flag, reclaim windows).
pub const CTX_AUTO: u32 = u32::MAX;

/// One reclaim pass of a task; reset at every pass start.
///
/// Field order is for the cache: the hot events (`tlb_flush`, `csd_queue_cpu`, `ipi_send_*`,
/// `write_folio`: several per reclaimed folio) read and write the first 56 bytes, which share
/// one cache line with the slot's `task` tag (the slots are 256 bytes, four lines); the counts
/// are the next 72 bytes. A flush that touched a third line of the slot cost `tlb_flush` ~3 ns
/// a run on 6.18.44, so everything an episode writes stays in the first.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PassState {
    /// A pass is open (the entry outlives passes: no map insert/delete per pass).
    pub active: u32,
    /// Precise tier: a dirty flush happened and no pageout has followed it yet.
    pub await_pageout: u32,
    pub flags: u32,
    pub ctx: u32,
    /// The flush in progress and the run of equal fan-outs (see reclaim_trace_common::flush).
    pub episode: FlushEpisode,
    pub counts: PassDelta,
    pub tid: u32,
    pub tgid: u32,
    pub cgroup_id: u64,
    pub start_ns: u64,
    pub unmaps_since_flush: u32,
    /// Base pages of the folios this pass freed (`kmem:mm_page_free`, with `CFG_COUNT_FOLIOS`):
    /// checked against the kernel's reclaimed pages at the pass end.
    pub pages_freed: u32,
    /// Precise tier: `try_to_unmap_flush_dirty` saw `tlb_ubc.writable`; the next
    /// `arch_tlbbatch_flush` on this task is a dirty flush.
    pub dirty_pending: u32,
    /// Precise tier: flushes this pass has finished (`arch_tlbbatch_flush` exits), the
    /// sequence the stale-TLB window is measured against (see precise::FLUSH_END_NS).
    pub flush_seq: u32,
    /// Precise tier: when flush number `flush_seq` ended (the stale-TLB window's end for the
    /// folios unmapped before it and after the flush before it).
    pub last_flush_end_ns: u64,
    /// Precise tier: arguments of shrink_folio_list, kept for the exit probe.
    pub sc: u64,
    pub stat: u64,
    pub sc_nr_scanned_start: u64,
}

/// Everything the kernel side keeps about one task, in a slot of the TASKS array.
///
/// Slots, not a hash map: every hot event looks its task up, and an array lookup is inlined
/// by the verifier while a hash lookup is a call (measured on 6.18.44: ~110 ns of the ~270 ns a
/// tlb_flush run cost). A task owns one of two slots chosen from a hash of its task_struct
/// address (`bpf_get_current_task`), tagged with that address. The identity caches save
/// re-reading task_struct and the cgroup chain at every pass.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TaskEntry {
    /// The task_struct the caches below belong to (a recycled tid has another one).
    pub task: u64,
    pub pass: PassState,
    /// Last `task->cgroups` seen; `memcg_id` is its memory cgroup's kernfs id.
    pub css_set: u64,
    pub memcg_id: u64,
    /// PF_KSWAPD was set.
    pub kswapd: u32,
    /// `WIN_*` bits.
    pub windows: u32,
    /// `EPISODE_OPEN` while a full remote flush outside any pass (migration, compaction...)
    /// waits for its local leg, which tells a batched flush (reason 2) from an mm flush
    /// (reason 3): see `reclaim_trace_common::flush::outside_pass_flush`.
    pub outside_flush: u32,
    /// Passes left before `comm` is read from task_struct again (0: read at the next pass end).
    pub comm_age: u32,
    /// The task's command name, as of the last read. Reading `task->comm` at every pass end
    /// cost ~200 ns on 6.18.44 (a cache line the reclaim path never touches, cold by then;
    /// `bpf_get_current_comm` or a plain read alike), so it is re-read every
    /// `COMM_REFRESH_PASSES` passes and when the slot is claimed. A rename (exec, prctl) shows
    /// up within that many passes of the task.
    pub comm: [u64; 2],
}

/// See `TaskEntry::comm`.
const COMM_REFRESH_PASSES: u32 = 64;

const _: () = {
    assert!(core::mem::size_of::<TaskEntry>() == 256);
    assert!(
        core::mem::offset_of!(TaskEntry, pass) + core::mem::offset_of!(PassState, counts) == 64
    );
};

/// The key of the current task's entry.
#[inline(always)]
pub fn current_key() -> u64 {
    // SAFETY: helper without preconditions; the value is only used as a key.
    unsafe { bpf_get_current_task() }
}

/// The two slots a task may own: a multiplicative hash of its task_struct address, and the
/// neighbouring slot.
#[inline(always)]
fn slots(key: u64) -> (u32, u32) {
    let h = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u32 & (TASK_SLOTS - 1);
    (h, h ^ 1)
}

#[inline(always)]
pub fn entry_of(key: u64) -> Option<*mut TaskEntry> {
    let (a, b) = slots(key);
    for i in [a, b] {
        if let Some(e) = TASKS.get_ptr_mut(i) {
            // SAFETY: array slot pointer; the tag is a plain u64.
            if unsafe { (*e).task } == key {
                return Some(e);
            }
        }
    }
    None
}

/// The open pass of the task with `key`, if any.
#[inline(always)]
pub fn pass_of(key: u64) -> Option<*mut PassState> {
    let e = entry_of(key)?;
    // SAFETY: map value pointer from a successful lookup; only this task writes it.
    unsafe {
        if (*e).pass.active != 0 {
            Some(&raw mut (*e).pass)
        } else {
            None
        }
    }
}

/// A slot whose owner holds no state worth keeping: no open pass (or one older than
/// `STALE_NS`, left by a task that died mid-pass), no reclaim window, no pending flush.
#[inline(always)]
fn idle(e: &TaskEntry, now: u64) -> bool {
    (e.pass.active == 0 || now.saturating_sub(e.pass.start_ns) > STALE_NS)
        && e.windows == 0
        && e.outside_flush == 0
}

/// Passes older than this are abandoned (reclaim passes take micro- to milliseconds).
const STALE_NS: u64 = 10_000_000_000;

/// Get or claim the entry of the task with `key`. When both of its slots hold other tasks'
/// live state the task is not tracked, and `CNT_PASS_MAP_FULL` says so.
#[inline(always)]
pub fn entry_or_insert(key: u64) -> Option<*mut TaskEntry> {
    if let Some(e) = entry_of(key) {
        return Some(e);
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let (a, b) = slots(key);
    for i in [a, b] {
        let Some(e) = TASKS.get_ptr_mut(i) else {
            continue;
        };
        // SAFETY: array slot pointer. Two tasks claiming one slot at the same instant is
        // possible (no compare-and-swap on this target): the tag is re-read below and the
        // loser backs off.
        let entry = unsafe { &mut *e };
        if entry.task == 0 || idle(entry, now) {
            entry.task = key;
            entry.css_set = 0;
            entry.memcg_id = 0;
            entry.kswapd = 0;
            entry.windows = 0;
            entry.outside_flush = 0;
            entry.comm_age = 0;
            entry.pass.active = 0;
            // SAFETY: a plain read of our own slot; volatile so that it is really re-read.
            if unsafe { core::ptr::read_volatile(&raw const (*e).task) } == key {
                return Some(e);
            }
        }
    }
    anomaly!(
        CNT_PASS_MAP_FULL,
        "pass_map_full: both task slots of task {:x} hold other tasks' live passes; its pass \
         is not tracked",
        key
    );
    None
}

/// kernfs id of the cgroup a `cgroup_subsys_state` belongs to.
#[inline(always)]
pub fn css_id(css: u64) -> u64 {
    let cgrp: u64 = kread(css, config!(btf.css_cgroup)).unwrap_or(0);
    let kn: u64 = kread(cgrp, config!(btf.cgroup_kn)).unwrap_or(0);
    kread(kn, config!(btf.kernfs_node_id)).unwrap_or(0)
}

/// Bring the entry's identity caches up to date with the current task: one read of
/// `task->cgroups` in the common case, the full chain only when the task changed cgroups.
#[inline(always)]
fn refresh_identity(e: &mut TaskEntry, task: u64) {
    if e.css_set == 0 {
        // A freshly claimed slot: read the flags once for this task.
        let flags: u32 = kread(task, config!(btf.task_flags)).unwrap_or(0);
        e.kswapd = (flags & PF_KSWAPD != 0) as u32;
    }
    let css_set: u64 = kread(task, config!(btf.task_cgroups)).unwrap_or(0);
    if css_set != e.css_set {
        let css: u64 = kread(css_set, config!(btf.css_set_memory_subsys)).unwrap_or(0);
        e.memcg_id = css_id(css);
        e.css_set = css_set;
    }
}

/// The reclaim context from the task's windows (tracepoint tier, and precise-tier fallback).
#[inline(always)]
fn window_context(e: &TaskEntry) -> u32 {
    if e.windows & WIN_MEMCG != 0 {
        CTX_MEMCG
    } else if e.windows & WIN_DIRECT != 0 {
        CTX_DIRECT
    } else {
        CTX_OTHER
    }
}

/// Start a pass on the current task (`tid`, `tgid`), replacing any unfinished one. `ctx` is a `CTX_*` or `CTX_AUTO`
/// (kswapd, else the reclaim windows); kswapd always wins. `cgroup_id == 0` means "the current
/// task's memory cgroup".
#[inline(always)]
pub fn start_pass(
    tid: u32,
    tgid: u32,
    ctx: u32,
    flags: u32,
    cgroup_id: u64,
) -> Option<*mut PassState> {
    let key = current_key();
    let e = entry_or_insert(key)?;
    // SAFETY: map value; the entry is only written by its own task.
    let e = unsafe { &mut *e };
    refresh_identity(e, key);
    // Eight bytes at a time (see crate::zero_words): a `write_bytes` compiles to a byte loop of
    // ~1,400 instructions (~200 ns on 6.18.44). Unconditional: a branch here, before the
    // precise tier's folio walk, takes 6.1.192's verifier over its 1M instruction budget.
    // SAFETY: PassState is plain integers (all-zero is valid), 8-byte aligned.
    unsafe { zero_words(&raw mut e.pass) };
    let ctx = if e.kswapd != 0 {
        CTX_KSWAPD
    } else if ctx == CTX_AUTO {
        window_context(e)
    } else if ctx < N_CTX {
        ctx
    } else {
        CTX_OTHER
    };
    let p = &mut e.pass;
    p.active = 1;
    p.tid = tid;
    p.tgid = tgid;
    p.flags = flags;
    p.ctx = ctx;
    p.cgroup_id = if cgroup_id == 0 {
        e.memcg_id
    } else {
        cgroup_id
    };
    // SAFETY: helper without preconditions.
    p.start_ns = unsafe { bpf_ktime_get_ns() };
    p.episode.candidates = u64::MAX;
    Some(&raw mut e.pass)
}

/// Open a flush episode (a previous one still open is closed as a batch flush first).
#[inline(always)]
pub fn open_episode(p: *mut PassState, dirty: bool, candidates: u64, batch_fill: u64) {
    // SAFETY: map value owned by this task.
    let s = unsafe { &mut *p };
    let closed = s.episode.open(&mut s.counts, dirty, candidates, batch_fill);
    record_closed(s, closed);
}

/// Close the open episode. A batched flush is classified dirty if the probe said so or if
/// `by_pageout` (a pageout immediately followed the flush: the tracepoint-tier rule).
#[inline(always)]
pub fn close_episode(p: *mut PassState, by_pageout: bool) {
    // SAFETY: map value owned by this task.
    let s = unsafe { &mut *p };
    let closed = s.episode.close(&mut s.counts, by_pageout);
    record_closed(s, closed);
}

/// Put a flush that just closed (its counts are already in the pass) into the histograms,
/// and send its record when flush records were asked for.
#[inline(always)]
pub fn record_closed(s: &PassState, closed: Option<Closed>) {
    let Some(c) = closed else {
        return;
    };
    let ctx = s.ctx;
    if let Some(run) = c.ended_run {
        add_fanout_run(ctx, run);
    }
    if c.candidates != u64::MAX {
        hist_add(HIST_FANOUT_CANDIDATES, ctx, c.candidates, 1);
    }
    let fill_exact = s.flags & PASS_F_FILL_EXACT != 0;
    if fill_exact {
        hist_add(HIST_BATCH_FILL, ctx, c.batch_fill as u64, 1);
    }
    if config!(flags) & CFG_EMIT_FLUSHES != 0 {
        let class = if c.dirty { FLUSH_DIRTY } else { FLUSH_BATCH };
        let batch_fill = if fill_exact {
            c.batch_fill as u64
        } else {
            u64::MAX
        };
        emit_flush(
            class,
            ctx,
            batch_fill,
            c.candidates,
            c.targets as u64,
            c.ipis as u64,
        );
    }
}

/// Add a run of equal fan-outs to the histograms.
#[inline(always)]
fn add_fanout_run(ctx: u32, run: FanoutRun) {
    hist_add(HIST_FANOUT_TARGETS, ctx, run.targets as u64, run.n as u64);
    hist_add(HIST_IPIS, ctx, run.ipis as u64, run.n as u64);
}

/// Add one pass (`src`, lasting `duration_ns`) to the totals, field by field (a `widen` into
/// a temporary and a struct add would be copies, see crate::zero_words).
#[inline(always)]
fn add_counts(dst: &mut PassCounts, src: &PassDelta, duration_ns: u64) {
    macro_rules! add {
        ($($f:ident),*) => {
            $(dst.$f += src.$f as u64;)*
        };
    }
    dst.passes += 1;
    dst.duration_ns += duration_ns;
    pass_delta_fields!(add);
}

/// Decide the pass's folio count. Counted folio by folio (`page_freed`) when their frees were
/// seen, and then exact if their pages add up to the kernel's reclaimed pages; otherwise the
/// kernel's base pages stand in, and either way `CNT_UNMATCHED_*` says how far off it may be.
#[inline(always)]
fn settle_folios(s: &mut PassState) {
    let pages = s.counts.pages_reclaimed;
    if config!(flags) & CFG_COUNT_FOLIOS == 0 {
        s.counts.folios_reclaimed = pages;
        return;
    }
    let seen_from_start = s.flags & PASS_F_HAS_START != 0;
    if !seen_from_start {
        // Known only from its end (mm_vmscan_reclaim_pages, a missed start): its frees
        // happened while no pass was open.
        s.counts.folios_reclaimed = pages;
    }
    let diff = unmatched_pages(pages, s.pages_freed, seen_from_start);
    if diff != 0 {
        count(CNT_UNMATCHED_PASSES, 1);
        count(CNT_UNMATCHED_PAGES, diff as u64);
    }
}

/// `kmem:mm_page_free` on the current task: the folio at `page`, of `2^order` pages, was
/// freed. Inside a pass, a freed folio that held data is one the pass reclaimed
/// (shrink_folio_list frees them in batches of 31); the pass also frees pages that held none
/// (measured on 6.18.44 with THP swap-out: about one order-0 page per huge folio, swap-cache
/// xarray nodes or page tables), which `PG_uptodate` tells apart.
#[inline(always)]
pub fn page_freed(page: u64, order: u64) {
    if let Some(p) = pass_of(current_key()) {
        let bit = config!(btf.pg_uptodate_bit);
        if bit < 64 {
            let flags: u64 = kread(page, 0).unwrap_or(u64::MAX);
            if (flags >> bit) & 1 == 0 {
                return;
            }
        }
        // SAFETY: map value owned by this task.
        unsafe {
            (*p).counts.folios_reclaimed += 1;
            (*p).pages_freed = (*p).pages_freed.wrapping_add(1u32 << (order & 31));
        }
    }
}

/// The session is ending (`CONTROL_STOPPED`): count nothing more. Pass boundary programs
/// return at once (without counting an error), and `end_pass` drops a pass still open.
#[inline(always)]
pub fn stopped() -> bool {
    CONTROL.get(CONTROL_STOPPED).is_some_and(|v| *v != 0)
}

/// The entry a pass belongs to (`p` always points at `TaskEntry::pass`).
#[inline(always)]
fn entry_of_pass(p: *mut PassState) -> *mut TaskEntry {
    p.cast::<u8>()
        .wrapping_sub(core::mem::offset_of!(TaskEntry, pass))
        .cast::<TaskEntry>()
}

/// The current task's command name, from the entry's cache (see `TaskEntry::comm`).
#[inline(always)]
fn cached_comm(e: *mut TaskEntry) -> [u64; 2] {
    // SAFETY: map value owned by this task.
    let e = unsafe { &mut *e };
    if e.comm_age == 0 {
        let dst = (&raw mut e.comm).cast::<core::ffi::c_void>();
        let off = config!(btf.task_comm);
        // SAFETY: the helpers write 16 bytes into the entry's cache (zeroed if the read
        // faults). The raw helpers write in place: the safe wrappers return an array that
        // would be copied a byte at a time.
        unsafe {
            if off != OFF_NONE {
                let src = bpf_get_current_task() + off as u64;
                raw::bpf_probe_read_kernel(dst, 16, src as *const core::ffi::c_void);
            } else {
                raw::bpf_get_current_comm(dst, 16);
            }
        }
        e.comm_age = COMM_REFRESH_PASSES;
    }
    e.comm_age -= 1;
    e.comm
}

/// Finish a pass: close its last flush, add it to the totals, send its record.
///
/// Records are `staged`: written into this CPU's batch and sent 16 at a time (one copy into
/// the ring buffer), or at the next pass end after a userspace snapshot. On 6.18.44 (2 vCPUs,
/// bpf_stats) a ring-buffer reservation per record costs ~450 ns, writing the record into the
/// batch ~200 ns of the pass end's ~700.
/// Callers that may be preempted (fexit) send the record directly instead. Userspace reads
/// what is left in the batches when the session ends (after `CONTROL_STOPPED`).
#[inline(always)]
pub fn end_pass(p: *mut PassState, staged: bool) {
    if stopped() {
        // SAFETY: map value owned by this task.
        unsafe { (*p).active = 0 };
        return;
    }
    // SAFETY: map value owned by this task.
    if config!(flags) & CFG_PRECISE_FLUSH != 0 && unsafe { (*p).episode.is_open() } {
        anomaly!(
            CNT_EPISODE_LEFT_OPEN,
            "episode_left_open: a reclaim pass of task {:x} ended inside arch_tlbbatch_flush \
             (its return was not seen); the flush is counted, its fan-out may be short",
            current_key()
        );
    }
    close_episode(p, false);
    // SAFETY: map value owned by this task.
    let s = unsafe { &mut *p };
    let end_ns = unsafe { bpf_ktime_get_ns() };
    let duration_ns = end_ns.saturating_sub(s.start_ns);
    let ctx = if s.ctx < N_CTX { s.ctx } else { CTX_OTHER };
    s.ctx = ctx;
    if let Some(run) = s.episode.take_run() {
        add_fanout_run(ctx, run);
    }
    settle_folios(s);
    if s.flags & PASS_F_FILL_EXACT == 0 {
        // Tracepoint tier: userspace marks this histogram as estimated.
        for (value, n) in estimated_batch_fill(&s.counts) {
            hist_add(HIST_BATCH_FILL, ctx, value, n);
        }
    }
    if let Some(t) = TOTALS.get_ptr_mut(ctx) {
        // SAFETY: per-CPU slot.
        add_counts(unsafe { &mut *t }, &s.counts, duration_ns);
    }
    let comm = cached_comm(entry_of_pass(p));
    if !(staged && stage(s, ctx, duration_ns, comm)) {
        match EVENTS.reserve::<PassWire>(0) {
            Some(mut entry) => {
                write_record(entry.as_mut_ptr(), s, ctx, duration_ns, comm);
                entry.submit(submit_flags());
            }
            None => count(CNT_RINGBUF_DROPS, 1),
        }
    }
    s.active = 0;
}
