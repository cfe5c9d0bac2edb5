//! Per-CPU counters (`MAP_COUNTERS`) and the program ids of the per-program error counters.

/// Ring-buffer reservations that failed: records lost (their totals are still in TOTALS).
pub const CNT_RINGBUF_DROPS: u32 = 0;
/// A task could not get a slot for its state (both of its slots held other tasks' live
/// state): its pass was not tracked.
pub const CNT_PASS_MAP_FULL: u32 = 1;
/// A pass end (shrink_inactive / reclaim_pages) without a pass start on that task.
pub const CNT_PASS_END_WITHOUT_START: u32 = 2;
/// Batched TLB flushes outside any reclaim pass (migration, compaction, NUMA balancing).
pub const CNT_OTHER_FLUSHES: u32 = 3;
// 4: unused (remote flush targets are the sum of MAP_REMOTE_SHOOTDOWNS).
/// `tlb_flush` reason 1 (REMOTE_SHOOTDOWN) received, read per CPU. These hardirq events are
/// dropped when the IPI interrupts another BPF program on that CPU (`bpf_prog_active`), so they
/// undercount (by ~10% under heavy reclaim on 6.18.44); [`MAP_REMOTE_SHOOTDOWNS`](crate::MAP_REMOTE_SHOOTDOWNS)
/// is exact where csd exists. The summary calls them `remote_shootdowns_traced`.
pub const CNT_REMOTE_SHOOTDOWNS_TRACED: u32 = 5;
/// `tlb_flush` reason 5 (REMOTE_WRONG_CPU, 6.18+).
pub const CNT_REMOTE_WRONG_CPU: u32 = 6;
/// Pageouts seen outside a reclaim pass.
pub const CNT_PAGEOUTS_OUTSIDE: u32 = 7;
/// Flush IPIs (`ipi_send_*` during a flush) anywhere.
pub const CNT_TLB_IPIS_ALL: u32 = 8;
/// Candidate CPUs of batched flushes outside reclaim (precise tier).
pub const CNT_OTHER_FLUSH_CANDIDATES: u32 = 9;
// 10: unused (events handled come from the kernel's BPF statistics, not a counter).
/// Flush records lost to a full ring buffer (only with CFG_EMIT_FLUSHES).
pub const CNT_FLUSH_RECORD_DROPS: u32 = 11;
/// Folio lists longer than the in-kernel walk limit (folios_in is then a lower bound).
pub const CNT_FOLIO_WALK_TRUNCATED: u32 = 12;
/// Precise tier: dirty flushes after which the pass wrote nothing out before its next flush
/// or its end: `pageout()` kept or re-activated the folio (presumably another task took a
/// reference to it after the unmap), so the flush bought no write. Measured 0-12% of the dirty flushes
/// with MGLRU on (Debian 6.12.118 and 7.2.13 under qemu, 4 threads; more when the host is
/// busy), 0 with the classic LRU (6.1.192, and 7.2.13 with MGLRU switched off).
pub const CNT_DIRTY_FLUSH_WITHOUT_PAGEOUT: u32 = 13;
/// Precise tier: `pageout()` began on a folio whose unmap was deferred into the task's TLB
/// batch while a writable entry was still unflushed (no flush since its unmap and
/// `tlb_ubc.writable` set): a store through a stale TLB entry could reach memory after its
/// I/O started. 0 on a correct kernel.
pub const CNT_PAGEOUTS_BEFORE_FLUSH: u32 = 14;
/// Precise tier: `pageout()` on a folio unmapped with `TTU_BATCH_FLUSH` that found nothing
/// pending in the batch: its unmap flushed at once (a single-threaded mm), no window.
pub const CNT_PAGEOUTS_UNDEFERRED: u32 = 15;
/// Precise tier: pageouts whose covering flush was followed by another before the pageout
/// (a full free batch flushed too): only the last flush's time is kept, so these are counted,
/// not in the window histograms.
pub const CNT_WINDOW_UNKNOWN: u32 = 16;
/// Precise tier with the stale-TLB window: `pageout()` calls inside reclaim passes, written
/// out or not (PAGE_SUCCESS ones are the `pageouts`).
pub const CNT_PAGEOUT_CALLS: u32 = 17;
/// Precise tier: `pageout()` on a folio whose deferred flush had not happened yet, with no
/// writable entry pending (`tlb_ubc.writable` clear): the stale entries are read-only, so
/// `try_to_unmap_flush_dirty()` rightly skipped the flush and no store can race the I/O.
pub const CNT_PAGEOUTS_READONLY_PENDING: u32 = 18;
/// With folio counting (`CFG_COUNT_FOLIOS`): passes whose freed folios' pages differ from the
/// kernel's reclaimed pages (a folio freed by someone else while isolated, a page freed by an
/// interrupt on the reclaiming CPU, a speculative reference that kept a reclaimed folio), or
/// whose frees could not be seen (a pass known only from its end). Their folio count is not
/// exact.
pub const CNT_UNMATCHED_PASSES: u32 = 19;
/// Σ over those passes of |pages freed − pages reclaimed| (all reclaimed pages for a pass
/// whose frees were not seen, where folios are counted as pages).
pub const CNT_UNMATCHED_PAGES: u32 = 20;
/// Precise tier with the stale-TLB window: `pageout()` calls on a folio this pass did not
/// unmap into its batch: an earlier pass unmapped and flushed it and its `pageout()` kept the
/// folio (MGLRU), or its owner dropped the mapping while reclaim held it isolated (e.g.
/// `MADV_DONTNEED`: the write then finds its swap entry freed and does no I/O), or its entry
/// aged out of the map. No window of this pass to measure.
pub const CNT_PAGEOUTS_NOT_UNMAPPED: u32 = 21;
/// `tlb_flush` with a reason this build does not know (above `TLB_REMOTE_WRONG_CPU`): a
/// kernel that added one. Ignored, and an anomaly.
pub const CNT_UNKNOWN_TLB_FLUSH_REASON: u32 = 22;
/// Precise tier: a reclaim pass ended while its `arch_tlbbatch_flush` had begun and not
/// returned (its exit probe missed the return). The flush is counted, its fan-out may be short.
pub const CNT_EPISODE_LEFT_OPEN: u32 = 23;
/// First program-error counter: `CNT_ERR_BASE + PROG_*`.
pub const CNT_ERR_BASE: u32 = 32;
pub const N_COUNTERS: u32 = 64;

/// What the kernel side's state machines did not expect, by kind, as the summary's `anomalies`
/// names them. Each is counted in its counter; the first [`LOG_FIRST_ANOMALIES`] of a kind on
/// each CPU are also logged through aya-log. The kind `failed_read` (a program gave up on an
/// event because a read of kernel memory, of its tracepoint record or of a map failed) is the
/// sum of the per-program error counters.
pub const ANOMALY_COUNTERS: [(&str, u32); 5] = [
    ("pass_end_without_start", CNT_PASS_END_WITHOUT_START),
    ("pass_map_full", CNT_PASS_MAP_FULL),
    ("episode_left_open", CNT_EPISODE_LEFT_OPEN),
    ("folio_walk_truncated", CNT_FOLIO_WALK_TRUNCATED),
    ("unknown_tlb_flush_reason", CNT_UNKNOWN_TLB_FLUSH_REASON),
];
/// The anomaly kind counted by the per-program error counters.
pub const ANOMALY_FAILED_READ: &str = "failed_read";
/// Anomalies of one kind logged per CPU: the first few say what happened; the counter says how
/// often. Beyond them nothing is written, so a kernel that surprises on every event costs a
/// counter increment, not a log record each.
pub const LOG_FIRST_ANOMALIES: u64 = 4;

// Program ids for the per-program error counters.
pub const PROG_LRU_ISOLATE: u32 = 0;
pub const PROG_SHRINK_INACTIVE: u32 = 1;
pub const PROG_WRITE_FOLIO: u32 = 2;
pub const PROG_RECLAIM_WINDOW: u32 = 3;
pub const PROG_TLB_FLUSH: u32 = 4;
pub const PROG_IPI: u32 = 5;
pub const PROG_CSD: u32 = 6;
pub const PROG_RECLAIM_PAGES: u32 = 7;
pub const PROG_SHRINK_FOLIO_LIST: u32 = 8;
pub const PROG_TRY_TO_UNMAP: u32 = 9;
pub const PROG_FLUSH_DIRTY: u32 = 10;
pub const PROG_ARCH_TLBBATCH_FLUSH: u32 = 11;
pub const PROG_PAGEOUT: u32 = 12;
pub const PROG_PAGEOUT_ENTRY: u32 = 13;
/// `try_to_unmap_flush` entry (arm64's flush boundary).
pub const PROG_RMAP_FLUSH: u32 = 14;
pub const N_PROGS: u32 = 15;
