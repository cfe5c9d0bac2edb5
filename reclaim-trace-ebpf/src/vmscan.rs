//! vmscan tracepoints: reclaim pass boundaries (tracepoint tier), pageouts, and the
//! reclaim-context windows. Field offsets come from each event's tracefs `format` (they differ
//! between kernels), handed over in `CONFIG.tp`.

use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use reclaim_trace_common::{
    CFG_COUNT_FOLIOS, CFG_PAGEOUT_PROBE, CFG_PRECISE_FLUSH, CFG_PRECISE_PASS, CNT_PAGEOUTS_OUTSIDE,
    CNT_PASS_END_WITHOUT_START, CTX_RECLAIM_PAGES, OFF_NONE, PASS_F_HAS_START, PROG_LRU_ISOLATE,
    PROG_RECLAIM_PAGES, PROG_RECLAIM_WINDOW, PROG_SHRINK_INACTIVE, PROG_WRITE_FOLIO, delta_u32,
};

use crate::{
    anomaly, config, count, count_error, current_tid_tgid, is_self,
    pass::{
        CTX_AUTO, PassState, WIN_DIRECT, WIN_MEMCG, current_key, end_pass, entry_or_insert,
        pass_of, record_closed, start_pass, stopped,
    },
};

/// Read a tracepoint field at an offset from CONFIG; unknown offsets are an error.
#[inline(always)]
pub(crate) fn field<T>(ctx: &TracePointContext, off: u32) -> Result<T, ()> {
    if off == OFF_NONE {
        return Err(());
    }
    // SAFETY: the offset comes from this kernel's tracefs format for this event; the helper
    // behind read_at copies with fault handling.
    unsafe { ctx.read_at::<T>(off as usize).map_err(|_| ()) }
}

/// The first `N` bytes of a tracepoint record, copied with one helper call. Hot programs read
/// their fields from this copy instead of calling `bpf_probe_read_kernel` once per field.
/// (Direct context loads would be cheaper still, but the offsets are run-time globals and LLVM
/// turns a match over constant offsets into pointer arithmetic that the verifier rejects as
/// "dereference of modified ctx ptr" — seen on 6.18.44.)
pub(crate) struct Record<const N: usize> {
    bytes: [u8; N],
}

impl<const N: usize> Record<N> {
    #[inline(always)]
    pub(crate) fn read(ctx: &TracePointContext) -> Result<Self, ()> {
        // SAFETY: tracepoint records are at least as long as the fields the programs read;
        // the helper copies with fault handling.
        unsafe { ctx.read_at::<[u8; N]>(0) }
            .map(|bytes| Record { bytes })
            .map_err(|_| ())
    }

    /// The field at `off`: from the copy when it lies inside it, else read from the record.
    #[inline(always)]
    pub(crate) fn get<T: Copy>(&self, ctx: &TracePointContext, off: u32) -> Result<T, ()> {
        let size = core::mem::size_of::<T>();
        if (off as usize) + size <= N {
            // SAFETY: bounds checked just above; read_unaligned has no alignment needs.
            return Ok(unsafe {
                core::ptr::read_unaligned(self.bytes.as_ptr().add(off as usize).cast::<T>())
            });
        }
        field(ctx, off)
    }
}

// name: mm_vmscan_lru_isolate (6.18)
// field:int highest_zoneidx;	offset:8;	size:4;	signed:1;
// field:int order;	offset:12;	size:4;	signed:1;
// field:unsigned long nr_requested;	offset:16;	size:8;	signed:0;
// field:unsigned long nr_scanned;	offset:24;	size:8;	signed:0;
// field:unsigned long nr_skipped;	offset:32;	size:8;	signed:0;
// field:unsigned long nr_taken;	offset:40;	size:8;	signed:0;
// field:int lru;	offset:48;	size:4;	signed:1;
#[tracepoint(category = "vmscan", name = "mm_vmscan_lru_isolate")]
pub fn vmscan_lru_isolate(ctx: TracePointContext) -> u32 {
    if try_lru_isolate(&ctx).is_err() {
        count_error(PROG_LRU_ISOLATE);
    }
    0
}

fn try_lru_isolate(ctx: &TracePointContext) -> Result<(), ()> {
    if config!(flags) & CFG_PRECISE_PASS != 0 {
        return Ok(());
    }
    let r = Record::<56>::read(ctx)?;
    let lru: i32 = r.get(ctx, config!(tp.isolate_lru))?;
    let nr_taken: u64 = r.get(ctx, config!(tp.isolate_nr_taken))?;
    isolate_core(lru, nr_taken)
}

// TP_PROTO(int highest_zoneidx, int order, unsigned long nr_requested, unsigned long
//          nr_scanned, unsigned long nr_skipped, unsigned long nr_taken, int lru)   (6.3 … 7.2)
// nr_taken is argument 5, lru the last one. Two programs, one per arity, so that both are
// direct context loads: an argument index from CONFIG would need a helper call (the verifier
// refuses a computed context offset), and this runs once per reclaim pass.
#[raw_tracepoint(tracepoint = "mm_vmscan_lru_isolate")]
pub fn vmscan_lru_isolate_raw(ctx: RawTracePointContext) -> u32 {
    if config!(flags) & CFG_PRECISE_PASS == 0
        && isolate_core(ctx.arg::<u64>(6) as i32, ctx.arg::<u64>(5)).is_err()
    {
        count_error(PROG_LRU_ISOLATE);
    }
    0
}

// Before 6.3: `isolate_mode_t isolate_mode` before `lru`, which is argument 7.
#[raw_tracepoint(tracepoint = "mm_vmscan_lru_isolate")]
pub fn vmscan_lru_isolate_raw8(ctx: RawTracePointContext) -> u32 {
    if config!(flags) & CFG_PRECISE_PASS == 0
        && isolate_core(ctx.arg::<u64>(7) as i32, ctx.arg::<u64>(5)).is_err()
    {
        count_error(PROG_LRU_ISOLATE);
    }
    0
}

fn isolate_core(lru: i32, nr_taken: u64) -> Result<(), ()> {
    // shrink_active_list isolates from the active lists (odd `enum lru_list` values below
    // LRU_UNEVICTABLE) and never unmaps; only inactive-list isolation starts a pass.
    // shrink_inactive_list returns before shrink_folio_list when nothing was taken.
    if lru & 1 == 1 || nr_taken == 0 || stopped() {
        return Ok(());
    }
    let (tid, tgid) = current_tid_tgid();
    if is_self(tgid) {
        return Ok(());
    }
    let p = start_pass(tid, tgid, CTX_AUTO, PASS_F_HAS_START, 0).ok_or(())?;
    // SAFETY: map value owned by this task.
    unsafe { (*p).counts.folios_in = delta_u32(nr_taken) };
    Ok(())
}

/// The pass that ends now on this task, or one reconstructed from its end alone.
#[inline(always)]
fn ending_pass(tid: u32, tgid: u32) -> Result<*mut PassState, ()> {
    match pass_of(current_key()) {
        Some(p) => Ok(p),
        None => {
            anomaly!(
                CNT_PASS_END_WITHOUT_START,
                "pass_end_without_start: a reclaim pass of task {} ended without a start (it \
                 began before tracing did, or its start event was lost); counted from its end",
                tid
            );
            start_pass(tid, tgid, CTX_AUTO, 0, 0).ok_or(())
        }
    }
}

// name: mm_vmscan_lru_shrink_inactive (6.18)
// field:int nid;	offset:8;	size:4;	signed:1;
// field:unsigned long nr_scanned;	offset:16;	size:8;	signed:0;
// field:unsigned long nr_reclaimed;	offset:24;	size:8;	signed:0;
// field:unsigned long nr_dirty;	offset:32;	size:8;	signed:0;
// field:unsigned long nr_writeback;	offset:40;	size:8;	signed:0;
// field:unsigned long nr_congested;	offset:48;	size:8;	signed:0;
// field:unsigned long nr_immediate;	offset:56;	size:8;	signed:0;
// field:unsigned int nr_activate0;	offset:64;	size:4;	signed:0;
// field:unsigned int nr_activate1;	offset:68;	size:4;	signed:0;
// field:unsigned long nr_ref_keep;	offset:72;	size:8;	signed:0;
// field:unsigned long nr_unmap_fail;	offset:80;	size:8;	signed:0;
// field:int priority;	offset:88;	size:4;	signed:1;
// field:int reclaim_flags;	offset:92;	size:4;	signed:1;
#[tracepoint(category = "vmscan", name = "mm_vmscan_lru_shrink_inactive")]
pub fn vmscan_lru_shrink_inactive(ctx: TracePointContext) -> u32 {
    if try_shrink_inactive(&ctx).is_err() {
        count_error(PROG_SHRINK_INACTIVE);
    }
    0
}

fn try_shrink_inactive(ctx: &TracePointContext) -> Result<(), ()> {
    if config!(flags) & CFG_PRECISE_PASS != 0 {
        return Ok(());
    }
    let r = Record::<96>::read(ctx)?;
    let get_u64 = |off: u32| r.get::<u64>(ctx, off).unwrap_or(0);
    let get_u32 = |off: u32| r.get::<u32>(ctx, off).unwrap_or(0) as u64;
    let nr_scanned: u64 = r.get(ctx, config!(tp.shrink_nr_scanned))?;
    let nr_reclaimed: u64 = r.get(ctx, config!(tp.shrink_nr_reclaimed))?;
    let extra = [
        get_u64(config!(tp.shrink_nr_dirty)),
        get_u64(config!(tp.shrink_nr_writeback)),
        get_u32(config!(tp.shrink_nr_activate0)) + get_u32(config!(tp.shrink_nr_activate1)),
        get_u64(config!(tp.shrink_nr_unmap_fail)),
    ];
    shrink_core(nr_scanned, nr_reclaimed, extra)
}

// TP_PROTO(int nid, unsigned long nr_scanned, unsigned long nr_reclaimed,
//          struct reclaim_stat *stat, int priority, int file)            (6.1 … 7.2)
#[raw_tracepoint(tracepoint = "mm_vmscan_lru_shrink_inactive")]
pub fn vmscan_lru_shrink_inactive_raw(ctx: RawTracePointContext) -> u32 {
    if try_shrink_inactive_raw(&ctx).is_err() {
        count_error(PROG_SHRINK_INACTIVE);
    }
    0
}

/// Bytes of `struct reclaim_stat` read at once (its counters are in the first ~60 bytes).
const STAT_BYTES: usize = 64;

fn try_shrink_inactive_raw(ctx: &RawTracePointContext) -> Result<(), ()> {
    if config!(flags) & CFG_PRECISE_PASS != 0 {
        return Ok(());
    }
    let nr_scanned = ctx.arg::<u64>(1);
    let nr_reclaimed = ctx.arg::<u64>(2);
    let stat = ctx.arg::<u64>(3);
    // Words, read in place by the raw helper (which zeroes them if the read faults): a byte
    // array returned by value is copied a byte at a time on BPF (see crate::zero_words).
    // Not zero-initialised here: LLVM turns that into a memset call.
    let mut buf = core::mem::MaybeUninit::<[u64; STAT_BYTES / 8]>::uninit();
    // SAFETY: `stat` points at the caller's reclaim_stat; the helper copies with fault
    // handling into a buffer of exactly STAT_BYTES, and zeroes it when the read fails, so the
    // buffer is initialised either way.
    let words = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            buf.as_mut_ptr().cast(),
            STAT_BYTES as u32,
            stat as *const core::ffi::c_void,
        );
        buf.assume_init()
    };
    // reclaim_stat's counters are `unsigned int`s: 4-byte aligned offsets.
    let get = |off: u32| -> u64 {
        let (w, shift) = ((off / 8) as usize, (off % 8) * 8);
        match words.get(w) {
            Some(v) if off.is_multiple_of(4) => (*v >> shift) as u32 as u64,
            _ => 0,
        }
    };
    let extra = [
        get(config!(btf.stat_nr_dirty)),
        get(config!(btf.stat_nr_writeback)),
        get(config!(btf.stat_nr_activate0)) + get(config!(btf.stat_nr_activate1)),
        get(config!(btf.stat_nr_unmap_fail)),
    ];
    shrink_core(nr_scanned, nr_reclaimed, extra)
}

/// End the pass: `extra` is nr_dirty, nr_writeback, nr_activate (anon + file), nr_unmap_fail.
fn shrink_core(nr_scanned: u64, nr_reclaimed: u64, extra: [u64; 4]) -> Result<(), ()> {
    let (tid, tgid) = current_tid_tgid();
    if is_self(tgid) || stopped() {
        return Ok(());
    }
    let p = ending_pass(tid, tgid)?;
    // SAFETY: map value owned by this task.
    let s = unsafe { &mut *p };
    s.counts.pages_scanned = delta_u32(nr_scanned);
    s.counts.pages_reclaimed = delta_u32(nr_reclaimed);
    s.counts.nr_dirty = delta_u32(extra[0]);
    s.counts.nr_writeback = delta_u32(extra[1]);
    s.counts.nr_activate = delta_u32(extra[2]);
    s.counts.nr_unmap_fail = delta_u32(extra[3]);
    // Tracepoint programs run with preemption off: the per-CPU batch has one writer at a time.
    end_pass(p, true);
    Ok(())
}

// name: mm_vmscan_reclaim_pages (6.18+: MADV_PAGEOUT, DAMON; no start event exists)
// field:int nid;	offset:8;	size:4;	signed:1;
// field:unsigned long nr_scanned;	offset:16;	size:8;	signed:0;
// field:unsigned long nr_reclaimed;	offset:24;	size:8;	signed:0;
#[tracepoint(category = "vmscan", name = "mm_vmscan_reclaim_pages")]
pub fn vmscan_reclaim_pages(ctx: TracePointContext) -> u32 {
    if try_reclaim_pages(&ctx).is_err() {
        count_error(PROG_RECLAIM_PAGES);
    }
    0
}

fn try_reclaim_pages(ctx: &TracePointContext) -> Result<(), ()> {
    if config!(flags) & CFG_PRECISE_PASS != 0 || stopped() {
        return Ok(());
    }
    let (tid, tgid) = current_tid_tgid();
    if is_self(tgid) {
        return Ok(());
    }
    let nr_scanned: u64 = field(ctx, config!(tp.reclaim_pages_nr_scanned))?;
    let nr_reclaimed: u64 = field(ctx, config!(tp.reclaim_pages_nr_reclaimed))?;
    let p = match pass_of(current_key()) {
        Some(p) => p,
        None => start_pass(tid, tgid, CTX_RECLAIM_PAGES, 0, 0).ok_or(())?,
    };
    // SAFETY: map value owned by this task.
    let s = unsafe { &mut *p };
    s.counts.pages_scanned = delta_u32(nr_scanned);
    s.counts.pages_reclaimed = delta_u32(nr_reclaimed);
    end_pass(p, true);
    Ok(())
}

// TP_PROTO(struct folio *folio): one per successful pageout (6.1 … 7.2). A raw tracepoint:
// the kernel skips building the trace record, and this program reads no argument.
#[raw_tracepoint(tracepoint = "mm_vmscan_write_folio")]
pub fn vmscan_write_folio(ctx: RawTracePointContext) -> u32 {
    // TP_PROTO(struct folio *folio)
    if try_write_folio(ctx.arg::<u64>(0)).is_err() {
        count_error(PROG_WRITE_FOLIO);
    }
    0
}

fn try_write_folio(folio: u64) -> Result<(), ()> {
    let flags = config!(flags);
    if flags & CFG_PAGEOUT_PROBE != 0 {
        return Ok(());
    }
    // Where pageout() is inlined (6.18, 7.2) its tracepoint, right after ->writepage(), is
    // the latest point that still tells whether the write began before the flush.
    crate::precise::pageout_entry_core(folio)?;
    let Some(p) = pass_of(current_key()) else {
        count(CNT_PAGEOUTS_OUTSIDE, 1);
        return Ok(());
    };
    // Tracepoint tier: a flush immediately followed by a pageout on the same task was the
    // try_to_unmap_flush_dirty() before pageout() (sequence measured on 6.18: SEND_IPI,
    // csd_queue_cpu, ipi_send_cpu, LOCAL_SHOOTDOWN, write_folio).
    // SAFETY: map value owned by this task.
    let s = unsafe { &mut *p };
    if flags & CFG_PRECISE_FLUSH == 0 {
        let closed = s.episode.on_pageout(&mut s.counts);
        record_closed(s, closed);
    }
    s.counts.pageouts += 1;
    s.await_pageout = 0;
    Ok(())
}

// TP_PROTO(struct page *page, unsigned int order), unchanged 6.1 … 7.2: every page or folio
// freed, from free_pages_prepare(). Fires for every free in the system; the program returns
// after one task-slot lookup unless the task is in a reclaim pass.
#[raw_tracepoint(tracepoint = "mm_page_free")]
pub fn mm_page_free(ctx: RawTracePointContext) -> u32 {
    if config!(flags) & CFG_COUNT_FOLIOS != 0 {
        crate::pass::page_freed(ctx.arg::<u64>(0), ctx.arg::<u64>(1) & 0xffff_ffff);
    }
    0
}

/// Open (`open == true`) or close a reclaim-context window on the current task.
#[inline(always)]
fn window(bit: u32, open: bool) -> u32 {
    let (tid, tgid) = current_tid_tgid();
    if is_self(tgid) {
        return 0;
    }
    let _ = tid;
    match entry_or_insert(current_key()) {
        Some(t) => {
            // SAFETY: map value owned by this task.
            unsafe {
                if open {
                    (*t).windows |= bit;
                } else {
                    (*t).windows &= !bit;
                }
            }
        }
        None => count_error(PROG_RECLAIM_WINDOW),
    }
    0
}

// try_to_free_pages(): global direct reclaim.
#[tracepoint(category = "vmscan", name = "mm_vmscan_direct_reclaim_begin")]
pub fn vmscan_direct_begin(_ctx: TracePointContext) -> u32 {
    window(WIN_DIRECT, true)
}

#[tracepoint(category = "vmscan", name = "mm_vmscan_direct_reclaim_end")]
pub fn vmscan_direct_end(_ctx: TracePointContext) -> u32 {
    window(WIN_DIRECT, false)
}

// try_to_free_mem_cgroup_pages(): limit reclaim in the charging task, memory.high, and
// memory.reclaim (proactive; indistinguishable from limit reclaim with tracepoints alone).
#[tracepoint(category = "vmscan", name = "mm_vmscan_memcg_reclaim_begin")]
pub fn vmscan_memcg_begin(_ctx: TracePointContext) -> u32 {
    window(WIN_MEMCG, true)
}

#[tracepoint(category = "vmscan", name = "mm_vmscan_memcg_reclaim_end")]
pub fn vmscan_memcg_end(_ctx: TracePointContext) -> u32 {
    window(WIN_MEMCG, false)
}

// node_reclaim() (zone_reclaim_mode): direct reclaim on the local node by the allocator.
#[tracepoint(category = "vmscan", name = "mm_vmscan_node_reclaim_begin")]
pub fn vmscan_node_begin(_ctx: TracePointContext) -> u32 {
    window(WIN_DIRECT, true)
}

#[tracepoint(category = "vmscan", name = "mm_vmscan_node_reclaim_end")]
pub fn vmscan_node_end(_ctx: TracePointContext) -> u32 {
    window(WIN_DIRECT, false)
}

// cgroup v1 soft-limit reclaim (mem_cgroup_shrink_node) also targets one memcg.
#[tracepoint(category = "vmscan", name = "mm_vmscan_memcg_softlimit_reclaim_begin")]
pub fn vmscan_softlimit_begin(_ctx: TracePointContext) -> u32 {
    window(WIN_MEMCG, true)
}

#[tracepoint(category = "vmscan", name = "mm_vmscan_memcg_softlimit_reclaim_end")]
pub fn vmscan_softlimit_end(_ctx: TracePointContext) -> u32 {
    window(WIN_MEMCG, false)
}
