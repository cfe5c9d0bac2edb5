//! The wire contract between reclaim-trace's eBPF programs and its userspace.
//!
//! Everything that crosses the kernel/user boundary is defined here, once: map and global names,
//! the `#[repr(C)]` records in the ring buffer, the per-CPU counter and histogram layouts, and the
//! configuration block userspace fills in before loading (tracepoint field offsets from tracefs,
//! struct offsets from BTF, symbol addresses from kallsyms). Only integers, fixed arrays and
//! structs of them cross the wire: no enums, `bool`, `Option` or `usize`.
//!
//! The layout is pinned by compile-time size/offset asserts at the bottom of this file; the eBPF
//! side and userspace both compile them.
#![no_std]

#[cfg(feature = "user")]
pub mod decode;

// ---------------------------------------------------------------------------------------------
// Names (the same strings appear as symbol names in the eBPF object)
// ---------------------------------------------------------------------------------------------

/// Ring buffer carrying [`PassBatch`]es of per-pass records (and [`FlushRecord`]s on request).
pub const MAP_EVENTS: &str = "EVENTS";
/// Per-CPU [`PassBatch`] being filled: pass records wait here until the batch is full, or the
/// session generation ([`MAP_CONTROL`]) moved on, and then go to [`MAP_EVENTS`] in one copy.
pub const MAP_STAGING: &str = "STAGING";
/// `u64` control words written by userspace while the programs run ([`CONTROL_GENERATION`],
/// [`CONTROL_STOPPED`]).
pub const MAP_CONTROL: &str = "CONTROL";
/// Bumped by userspace at every snapshot: a CPU's batch goes out at its next pass end after
/// that, so pass records lag a busy CPU by at most one snapshot interval.
pub const CONTROL_GENERATION: u32 = 0;
/// Non-zero once the session is ending: passes ending after that are not counted anywhere,
/// so that userspace can read the staged records and the totals as one consistent set.
pub const CONTROL_STOPPED: u32 = 1;
pub const N_CONTROL: u32 = 2;
/// Per-task state (an array of slots tagged by task_struct address): the open reclaim pass,
/// reclaim-context windows, cached identity (memcg, kswapd). Internal to the kernel side.
pub const MAP_TASKS: &str = "TASKS";
/// Per-CPU `u64` counters indexed by the `CNT_*` constants.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Per-CPU [`PassCounts`] per reclaim context (`CTX_*`): totals that survive ring-buffer drops.
pub const MAP_TOTALS: &str = "TOTALS";
/// Per-CPU histograms: `[u64; HIST_BUCKETS]` at [`hist_index`]`(metric, ctx)`.
pub const MAP_HISTS: &str = "HISTS";
/// Remote TLB flushes received per target CPU (`csd_queue_cpu` with `flush_tlb_func`): a
/// per-CPU array indexed by target CPU id, counted by the initiators; sum the copies.
pub const MAP_VICTIMS: &str = "VICTIMS";
/// Entries of [`MAP_VICTIMS`] (CPU ids up to NR_CPUS with MAXSMP).
pub const MAX_VICTIM_CPUS: u32 = 8192;
/// The [`Config`] global, set with `EbpfLoader::override_global` before load.
pub const GLOBAL_CONFIG: &str = "CONFIG";

/// Default ring-buffer size in bytes (power of two, multiple of the page size). At the
/// ~10,000 passes/s that memcg reclaim of two threads produces on this class of machine, 1 MiB
/// holds ~8,000 records, i.e. ~0.8 s of backlog if userspace stalls.
pub const EVENTS_BYTES: u32 = 1 << 20;
/// Producers wake the reader only once this much is waiting; below it the reader drains on its
/// own timer ([`READER_POLL_MS`]). A wakeup per record costs a self-IPI (an irq_work) inside
/// the program: measured at ~23 µs per pass record on 6.18.44 in a VM, against ~2 µs without.
pub const WAKEUP_BYTES: u64 = (EVENTS_BYTES / 4) as u64;
/// How often the reader drains the ring buffer without being woken.
pub const READER_POLL_MS: u64 = 100;
/// Task slots in the kernel (a power of two; 256 bytes each). A task lands in one of two
/// slots picked from its task_struct address; with both taken it is not tracked (counted in
/// `CNT_PASS_MAP_FULL`).
pub const MAX_TASKS: u32 = 4096;

// ---------------------------------------------------------------------------------------------
// Reclaim contexts
// ---------------------------------------------------------------------------------------------

pub const CTX_KSWAPD: u32 = 0;
pub const CTX_DIRECT: u32 = 1;
pub const CTX_MEMCG: u32 = 2;
pub const CTX_PROACTIVE: u32 = 3;
/// `reclaim_pages()`: MADV_PAGEOUT and DAMON's pageout action. Not LRU scanning, so the
/// kernel does not count these in `pgsteal_*` (verified on 6.18.44).
pub const CTX_RECLAIM_PAGES: u32 = 4;
/// A pass outside every known window (e.g. `reclaim_clean_pages_from_list` for CMA, or
/// `reclaim_pages` seen by the precise tier, which cannot tell them apart).
pub const CTX_OTHER: u32 = 5;
/// Number of reclaim contexts (rows in [`MAP_TOTALS`]).
pub const N_CTX: u32 = 6;
/// Histogram column for flushes outside any reclaim pass (migration, compaction, NUMA).
pub const CTX_OUTSIDE: u32 = 6;
/// Number of histogram context columns.
pub const N_HIST_CTX: u32 = 7;

// ---------------------------------------------------------------------------------------------
// Histograms: exact buckets 0..=64, then log2 buckets (<=128, <=256, ... <=16384)
// ---------------------------------------------------------------------------------------------

pub const HIST_BATCH_FILL: u32 = 0;
pub const HIST_FANOUT_CANDIDATES: u32 = 1;
pub const HIST_FANOUT_TARGETS: u32 = 2;
pub const HIST_IPIS: u32 = 3;
/// Stale-TLB window, per written-out folio (precise tier): from its `try_to_unmap` to the end
/// of the flush that covered it. Recorded as [`log2_ns`] of the time: bucket k holds windows
/// shorter than 2^k ns.
pub const HIST_UNFLUSHED_WINDOW: u32 = 4;
/// From that flush's end to the folio's `pageout()`, as [`log2_ns`].
pub const HIST_FLUSH_TO_PAGEOUT: u32 = 5;
pub const N_HIST_METRICS: u32 = 6;
/// Largest value with a bucket of its own.
pub const HIST_EXACT_MAX: u64 = 64;
/// 65 exact buckets, log2 buckets up to 2^13 (NR_CPUS is at most 8192 with MAXSMP), and one
/// open-ended bucket above.
pub const HIST_BUCKETS: usize = 65 + 8;
pub const N_HISTS: u32 = N_HIST_METRICS * N_HIST_CTX;

pub type HistBuckets = [u64; HIST_BUCKETS];

/// Index of the histogram for `metric` (`HIST_*`) in context `ctx` (`CTX_*`).
#[inline(always)]
pub const fn hist_index(metric: u32, ctx: u32) -> u32 {
    metric * N_HIST_CTX + ctx
}

/// The value a time goes into the window histograms as: k with 2^(k-1) <= ns < 2^k (0 for 0),
/// so bucket k holds times below 2^k ns (at most 64, an exact bucket).
#[inline(always)]
pub const fn log2_ns(ns: u64) -> u64 {
    64 - ns.leading_zeros() as u64
}

/// The bucket a value falls in. Never returns an index `>= HIST_BUCKETS`.
#[inline(always)]
pub const fn bucket_of(value: u64) -> usize {
    if value <= HIST_EXACT_MAX {
        return value as usize;
    }
    // ceil(log2(value)) for value > 64 is >= 7; bucket 65 holds 65..=128.
    let log2_ceil = 64 - (value - 1).leading_zeros() as usize;
    let idx = 65 + (log2_ceil - 7);
    if idx >= HIST_BUCKETS {
        HIST_BUCKETS - 1
    } else {
        idx
    }
}

/// Inclusive upper bound (`le`) of bucket `idx`; the last bucket is open-ended (`u64::MAX`).
pub const fn bucket_upper_bound(idx: usize) -> u64 {
    if idx as u64 <= HIST_EXACT_MAX {
        idx as u64
    } else if idx + 1 >= HIST_BUCKETS {
        u64::MAX
    } else {
        1u64 << (idx - 65 + 7)
    }
}

// ---------------------------------------------------------------------------------------------
// Per-CPU counters (MAP_COUNTERS)
// ---------------------------------------------------------------------------------------------

/// Ring-buffer reservations that failed: records lost (their totals are still in TOTALS).
pub const CNT_RINGBUF_DROPS: u32 = 0;
/// A task could not get a slot for its state (both of its slots held other tasks' live
/// state): its pass was not tracked.
pub const CNT_PASS_MAP_FULL: u32 = 1;
/// A pass end (shrink_inactive / reclaim_pages) without a pass start on that task.
pub const CNT_PASS_END_WITHOUT_START: u32 = 2;
/// Batched TLB flushes outside any reclaim pass (migration, compaction, NUMA balancing).
pub const CNT_OTHER_FLUSHES: u32 = 3;
// 4: unused (remote flush targets are the sum of MAP_VICTIMS).
/// `tlb_flush` reason 1 (REMOTE_SHOOTDOWN) received, read per CPU. These hardirq events are
/// dropped when the IPI interrupts another BPF program on that CPU (`bpf_prog_active`), so they
/// undercount (by ~10% under heavy reclaim on 6.18.44); MAP_VICTIMS is exact where csd exists.
pub const CNT_REMOTE_SHOOTDOWNS: u32 = 5;
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
/// First program-error counter: `CNT_ERR_BASE + PROG_*`.
pub const CNT_ERR_BASE: u32 = 32;
pub const N_COUNTERS: u32 = 64;

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
pub const N_PROGS: u32 = 14;

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

pub const RECORD_PASS: u32 = 1;
pub const RECORD_FLUSH: u32 = 2;
pub const RECORD_PASS_BATCH: u32 = 3;

/// Pass records per [`PassBatch`]. One ring-buffer record per pass cost ~450 ns of reserve and
/// commit on 6.18.44 (2 vCPUs, SRSO mitigations), a third of a pass's program time; batching
/// pays that once per 16 passes.
pub const PASS_BATCH_LEN: usize = 16;

/// The pass began at a pass-start probe (not reconstructed from its end alone).
pub const PASS_F_HAS_START: u32 = 1 << 0;
/// Counted by `shrink_folio_list` entry/exit probes (precise tier).
pub const PASS_F_PRECISE: u32 = 1 << 1;
/// `batched_unmaps`/batch fill were observed (`try_to_unmap`), not estimated.
pub const PASS_F_FILL_EXACT: u32 = 1 << 2;
/// Flushes were delimited by `arch_tlbbatch_flush` (dirty/batch split exact).
pub const PASS_F_FLUSH_EXACT: u32 = 1 << 3;
/// `folios_in` is a lower bound (list longer than the walk limit).
pub const PASS_F_FOLIOS_IN_TRUNCATED: u32 = 1 << 4;

/// Counts of one reclaim pass; also the per-context running totals in [`MAP_TOTALS`].
/// Every field is a count (base pages where the name says pages, nanoseconds for `duration_ns`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct PassCounts {
    pub passes: u64,
    /// Folios handed to shrink_folio_list (tracepoint tier: pages isolated, `nr_taken`).
    pub folios_in: u64,
    /// Folios reclaimed: the folios the pass freed (`kmem:mm_page_free` on the reclaiming task
    /// while its pass is open, each with its order), where `CFG_COUNT_FOLIOS` is set. Without
    /// it the kernel only reports base pages, and this equals `pages_reclaimed`.
    pub folios_reclaimed: u64,
    pub pages_reclaimed: u64,
    pub pages_scanned: u64,
    /// Folios written out by pageout() (`mm_vmscan_write_folio` or a `pageout` probe).
    pub pageouts: u64,
    /// Flushes forced before pageout() (`try_to_unmap_flush_dirty` with `tlb_ubc.writable`).
    pub dirty_flushes: u64,
    /// Flushes of the free batch or at the end of the pass.
    pub batch_flushes: u64,
    /// Immediate (not deferred) flushes inside the pass: `flush_tlb_mm_range` from
    /// `try_to_unmap_one` when `should_defer_flush()` said no (the mm was on no other CPU, e.g.
    /// a single-threaded process reclaiming its own memory). Local: no IPI. Called
    /// `unbatched_flushes` in files of schema v1.
    #[cfg_attr(feature = "user", serde(alias = "unbatched_flushes"))]
    pub immediate_flushes: u64,
    /// Σ over flushes of CPUs in the batch cpumask other than the flushing CPU (precise tier).
    pub fanout_candidates: u64,
    /// Σ over flushes of CPUs actually sent the flush (`csd_queue_cpu`, lazy CPUs filtered).
    pub fanout_targets: u64,
    /// Σ over flushes of IPIs sent (`ipi_send_*`; a queued csd may not need a new IPI).
    pub ipis: u64,
    /// Flushes that reached no other CPU (local-only, or broadcast INVLPGB / hypercall).
    pub flushes_without_ipi: u64,
    /// `try_to_unmap(.., TTU_BATCH_FLUSH)` calls: folios deferred into a batch (precise tier).
    pub batched_unmaps: u64,
    pub duration_ns: u64,
    pub nr_dirty: u64,
    pub nr_writeback: u64,
    pub nr_activate: u64,
    pub nr_unmap_fail: u64,
    /// Calls of `try_to_unmap_flush_dirty`, including those that had nothing to flush.
    pub dirty_flush_calls: u64,
}

/// Number of `u64` fields in [`PassCounts`].
pub const PASS_COUNTS_FIELDS: usize = 20;

impl PassCounts {
    /// The counts as an array, in declaration order.
    pub fn to_array(&self) -> [u64; PASS_COUNTS_FIELDS] {
        // SAFETY: PassCounts is #[repr(C)] with exactly PASS_COUNTS_FIELDS u64 fields and no
        // padding (size asserted below), the same layout as the array.
        unsafe { core::mem::transmute_copy(self) }
    }

    /// Counts from an array in declaration order.
    pub fn from_array(a: [u64; PASS_COUNTS_FIELDS]) -> Self {
        // SAFETY: see to_array.
        unsafe { core::mem::transmute(a) }
    }

    /// Field-wise wrapping sum.
    pub fn wrapping_add(&self, other: &Self) -> Self {
        let (a, b) = (self.to_array(), other.to_array());
        Self::from_array(core::array::from_fn(|i| a[i].wrapping_add(b[i])))
    }

    /// Field-wise wrapping difference (`self - earlier`).
    pub fn wrapping_sub(&self, earlier: &Self) -> Self {
        let (a, b) = (self.to_array(), earlier.to_array());
        Self::from_array(core::array::from_fn(|i| a[i].wrapping_sub(b[i])))
    }
}

/// The counts of one reclaim pass as the kernel keeps and sends them: [`PassCounts`] without
/// `passes` (always 1) and `duration_ns` (in the record), in `u32` (one pass is at most a few
/// thousand folios). Half the size of the `u64` totals: less to zero at every pass start and
/// to copy into every record.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassDelta {
    pub folios_in: u32,
    pub folios_reclaimed: u32,
    pub pages_reclaimed: u32,
    pub pages_scanned: u32,
    pub pageouts: u32,
    pub dirty_flushes: u32,
    pub batch_flushes: u32,
    pub immediate_flushes: u32,
    pub fanout_candidates: u32,
    pub fanout_targets: u32,
    pub ipis: u32,
    pub flushes_without_ipi: u32,
    pub batched_unmaps: u32,
    pub nr_dirty: u32,
    pub nr_writeback: u32,
    pub nr_activate: u32,
    pub nr_unmap_fail: u32,
    pub dirty_flush_calls: u32,
}

/// Calls `$m!` with the names of [`PassDelta`]'s fields: the one list that widening
/// ([`PassDelta::widen`]) and the kernel's per-pass add to the totals are written from, so a
/// field cannot be added to one and forgotten in the other. Both struct literals below name
/// every field, so the list must match both structs or this crate does not compile.
#[macro_export]
macro_rules! pass_delta_fields {
    ($m:ident) => {
        $m!(
            folios_in,
            folios_reclaimed,
            pages_reclaimed,
            pages_scanned,
            pageouts,
            dirty_flushes,
            batch_flushes,
            immediate_flushes,
            fanout_candidates,
            fanout_targets,
            ipis,
            flushes_without_ipi,
            batched_unmaps,
            nr_dirty,
            nr_writeback,
            nr_activate,
            nr_unmap_fail,
            dirty_flush_calls
        )
    };
}

impl PassDelta {
    /// One pass's counts as totals (`passes` = 1, `duration_ns` given).
    #[inline(always)]
    pub fn widen(&self, duration_ns: u64) -> PassCounts {
        macro_rules! widen {
            ($($f:ident),*) => {
                PassCounts { passes: 1, duration_ns, $($f: self.$f as u64),* }
            };
        }
        pass_delta_fields!(widen)
    }
}

// The field list names every PassDelta field (a struct literal must be complete).
const _: PassDelta = {
    macro_rules! all_zero {
        ($($f:ident),*) => {
            PassDelta { $($f: 0),* }
        };
    }
    pass_delta_fields!(all_zero)
};

/// A kernel count stored in a [`PassDelta`] field (saturating; never reached by one pass).
#[inline(always)]
pub const fn delta_u32(v: u64) -> u32 {
    if v > u32::MAX as u64 {
        u32::MAX
    } else {
        v as u32
    }
}

/// One reclaim pass on the wire (`RECORD_PASS`, alone or in a [`PassBatch`]): 128 bytes, two
/// cache lines (224 with `u64` counts). Decoded into a [`PassRecord`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassWire {
    pub kind: u32,
    /// `CTX_*`.
    pub context: u8,
    /// `PASS_F_*`.
    pub flags: u8,
    pub cpu: u16,
    pub tid: u32,
    pub tgid: u32,
    pub cgroup_id: u64,
    pub start_ns: u64,
    /// Saturates at `u32::MAX` (4.29 s; passes take micro- to milliseconds).
    pub duration_ns: u32,
    pub _pad: u32,
    /// 8-byte aligned: the kernel copies it a word at a time.
    pub counts: PassDelta,
    pub comm: [u8; 16],
}

/// One reclaim pass as userspace uses it (decoded from a [`PassWire`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassRecord {
    pub kind: u32,
    pub flags: u32,
    pub tid: u32,
    pub tgid: u32,
    /// `CTX_*`.
    pub context: u32,
    pub cpu: u32,
    /// kernfs id of the memory cgroup charged (its directory's inode number in cgroupfs).
    pub cgroup_id: u64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub comm: [u8; 16],
    pub counts: PassCounts,
}

impl From<&PassWire> for PassRecord {
    fn from(w: &PassWire) -> Self {
        PassRecord {
            kind: w.kind,
            flags: w.flags as u32,
            tid: w.tid,
            tgid: w.tgid,
            context: w.context as u32,
            cpu: w.cpu as u32,
            cgroup_id: w.cgroup_id,
            start_ns: w.start_ns,
            end_ns: w.start_ns.wrapping_add(w.duration_ns as u64),
            comm: w.comm,
            counts: w.counts.widen(w.duration_ns as u64),
        }
    }
}

/// Up to [`PASS_BATCH_LEN`] pass records of one CPU (`RECORD_PASS_BATCH`). Only the first
/// `n` records are sent: a batch item in the ring buffer is `PASS_BATCH_HEADER + n * size_of::<PassWire>()`
/// bytes long.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassBatch {
    pub kind: u32,
    /// Records filled.
    pub n: u32,
    /// The [`CONTROL_GENERATION`] when the batch was last sent.
    pub generation: u64,
    pub _pad: [u64; 2],
    pub recs: [PassWire; PASS_BATCH_LEN],
}

/// Bytes of [`PassBatch`] before its records.
pub const PASS_BATCH_HEADER: usize = 32;

/// `FlushRecord::class` values.
pub const FLUSH_DIRTY: u32 = 0;
pub const FLUSH_BATCH: u32 = 1;
pub const FLUSH_OTHER: u32 = 2;

/// One batched TLB flush (`RECORD_FLUSH`), only with [`CFG_EMIT_FLUSHES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushRecord {
    pub kind: u32,
    pub class: u32,
    pub tid: u32,
    pub context: u32,
    pub cpu: u32,
    pub _pad: u32,
    pub ts_ns: u64,
    /// Folios deferred into this batch (precise tier; `u64::MAX` when unknown).
    pub fill: u64,
    /// CPUs in the batch cpumask other than the flushing one (`u64::MAX` when unknown).
    pub candidates: u64,
    pub targets: u64,
    pub ipis: u64,
}

// ---------------------------------------------------------------------------------------------
// Configuration block (a read-only global: the verifier sees its values as constants)
// ---------------------------------------------------------------------------------------------

/// Emit a [`FlushRecord`] per batched flush.
pub const CFG_EMIT_FLUSHES: u32 = 1 << 0;
/// `shrink_folio_list` entry/exit probes own pass boundaries; vmscan tracepoints add nothing.
pub const CFG_PRECISE_PASS: u32 = 1 << 1;
/// `arch_tlbbatch_flush` entry/exit probes delimit flushes; `tlb_flush` only counts victims.
pub const CFG_PRECISE_FLUSH: u32 = 1 << 2;
/// `try_to_unmap` is probed: batch fill is exact.
pub const CFG_PRECISE_UNMAP: u32 = 1 << 3;
/// `shrink_folio_list` is `void` and reports reclaimed pages in `stat->nr_reclaimed`.
pub const CFG_STAT_NR_RECLAIMED: u32 = 1 << 4;
/// A `pageout` probe counts pageouts (else `mm_vmscan_write_folio`).
pub const CFG_PAGEOUT_PROBE: u32 = 1 << 5;
/// Measure the stale-TLB window per folio: `try_to_unmap`, `arch_tlbbatch_flush` and
/// `pageout` entry are all probed (precise tier).
pub const CFG_STALE_WINDOW: u32 = 1 << 6;
/// `kmem:mm_page_free` counts the folios each pass frees (`PassCounts::folios_reclaimed`).
pub const CFG_COUNT_FOLIOS: u32 = 1 << 7;

/// Marks an offset that is not known on this kernel; programs skip the read.
pub const OFF_NONE: u32 = u32::MAX;

/// Byte offsets of tracepoint record fields, from `events/<sys>/<event>/format` (the vmscan
/// events read by name; the hot events are raw tracepoints whose arguments are positional).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpOffsets {
    pub isolate_nr_taken: u32,
    pub isolate_lru: u32,
    pub shrink_nr_scanned: u32,
    pub shrink_nr_reclaimed: u32,
    pub shrink_nr_dirty: u32,
    pub shrink_nr_writeback: u32,
    pub shrink_nr_activate0: u32,
    pub shrink_nr_activate1: u32,
    pub shrink_nr_unmap_fail: u32,
    pub reclaim_pages_nr_scanned: u32,
    pub reclaim_pages_nr_reclaimed: u32,
}

/// Byte offsets (and one bit mask) of kernel struct members, from `/sys/kernel/btf/vmlinux`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtfOffsets {
    /// `task_struct.flags` (PF_KSWAPD).
    pub task_flags: u32,
    /// `task_struct.tlb_ubc` + `tlbflush_unmap_batch.writable`.
    pub task_tlb_ubc_writable: u32,
    /// `task_struct.tlb_ubc` + `tlbflush_unmap_batch.flush_required`.
    pub task_tlb_ubc_flush_required: u32,
    /// `task_struct.cgroups` (struct css_set *).
    pub task_cgroups: u32,
    /// `css_set.subsys[memory_cgrp_id]` (struct cgroup_subsys_state *).
    pub css_set_memory_subsys: u32,
    /// `cgroup_subsys_state.cgroup`.
    pub css_cgroup: u32,
    /// `cgroup.kn`.
    pub cgroup_kn: u32,
    /// `kernfs_node.id`.
    pub kernfs_node_id: u32,
    /// `mem_cgroup.css`.
    pub memcg_css: u32,
    /// `scan_control.target_mem_cgroup`.
    pub sc_target_mem_cgroup: u32,
    /// `scan_control.nr_scanned`.
    pub sc_nr_scanned: u32,
    /// Byte holding the `scan_control.proactive` bitfield, and its mask.
    pub sc_proactive_byte: u32,
    pub sc_proactive_mask: u32,
    /// `reclaim_stat` members.
    pub stat_nr_reclaimed: u32,
    pub stat_nr_dirty: u32,
    pub stat_nr_writeback: u32,
    pub stat_nr_pageout: u32,
    pub stat_nr_activate0: u32,
    pub stat_nr_activate1: u32,
    pub stat_nr_unmap_fail: u32,
    /// `arch_tlbflush_unmap_batch.cpumask`.
    pub batch_cpumask: u32,
    /// `list_head.next` (always 0 in practice; kept for completeness).
    pub list_next: u32,
    /// `task_struct.comm` (the pass record's command name; without it the programs call
    /// `bpf_get_current_comm`, measured ~200 ns a call on 6.18.44).
    pub task_comm: u32,
    /// Bit number of `PG_uptodate` in `page.flags` (`enum pageflags`: 2 on 6.1, 3 on 6.12 …
    /// 7.2). A freed page without it held no data (a page table, a slab or zsmalloc page):
    /// not a reclaimed folio. `OFF_NONE`: every free in a pass counts.
    pub pg_uptodate_bit: u32,
}

/// Everything the programs need to know about this kernel and this run.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The tracer's own process: its events are ignored.
    pub self_tgid: u32,
    /// `CFG_*` flags.
    pub flags: u32,
    /// Address of `flush_tlb_func` (csd callback of remote TLB flushes).
    pub flush_tlb_func: u64,
    /// Address of the IPI callback used by `smp_call_function_many_cond`
    /// (`generic_smp_call_function_single_interrupt`).
    pub ipi_callback: u64,
    /// Number of 64-bit words of a cpumask that can hold set bits (`ceil(nr_cpu_ids / 64)`).
    pub cpumask_words: u32,
    /// Maximum folios walked in shrink_folio_list's list to count `folios_in`.
    pub folio_walk_limit: u32,
    pub tp: TpOffsets,
    pub btf: BtfOffsets,
    /// Explicit tail padding (the struct is 8-byte aligned), zero.
    pub _pad: u32,
}

/// Upper bound on `Config::cpumask_words` (8192 CPUs).
pub const MAX_CPUMASK_WORDS: u32 = 128;

impl TpOffsets {
    pub const NONE: TpOffsets = TpOffsets {
        isolate_nr_taken: OFF_NONE,
        isolate_lru: OFF_NONE,
        shrink_nr_scanned: OFF_NONE,
        shrink_nr_reclaimed: OFF_NONE,
        shrink_nr_dirty: OFF_NONE,
        shrink_nr_writeback: OFF_NONE,
        shrink_nr_activate0: OFF_NONE,
        shrink_nr_activate1: OFF_NONE,
        shrink_nr_unmap_fail: OFF_NONE,
        reclaim_pages_nr_scanned: OFF_NONE,
        reclaim_pages_nr_reclaimed: OFF_NONE,
    };
}

impl BtfOffsets {
    pub const NONE: BtfOffsets = BtfOffsets {
        task_flags: OFF_NONE,
        task_tlb_ubc_writable: OFF_NONE,
        task_tlb_ubc_flush_required: OFF_NONE,
        task_cgroups: OFF_NONE,
        css_set_memory_subsys: OFF_NONE,
        css_cgroup: OFF_NONE,
        cgroup_kn: OFF_NONE,
        kernfs_node_id: OFF_NONE,
        memcg_css: OFF_NONE,
        sc_target_mem_cgroup: OFF_NONE,
        sc_nr_scanned: OFF_NONE,
        sc_proactive_byte: OFF_NONE,
        sc_proactive_mask: 0,
        stat_nr_reclaimed: OFF_NONE,
        stat_nr_dirty: OFF_NONE,
        stat_nr_writeback: OFF_NONE,
        stat_nr_pageout: OFF_NONE,
        stat_nr_activate0: OFF_NONE,
        stat_nr_activate1: OFF_NONE,
        stat_nr_unmap_fail: OFF_NONE,
        batch_cpumask: OFF_NONE,
        list_next: 0,
        task_comm: OFF_NONE,
        pg_uptodate_bit: OFF_NONE,
    };
}

impl Config {
    /// The value compiled into the object: nothing known, nothing enabled.
    pub const EMPTY: Config = Config {
        self_tgid: 0,
        flags: 0,
        flush_tlb_func: 0,
        ipi_callback: 0,
        cpumask_words: 1,
        folio_walk_limit: 0,
        tp: TpOffsets::NONE,
        btf: BtfOffsets::NONE,
        _pad: 0,
    };
}

/// `PF_KSWAPD` in `task_struct.flags` (include/linux/sched.h; unchanged 6.1 … 7.2).
pub const PF_KSWAPD: u32 = 0x0002_0000;
/// `TTU_BATCH_FLUSH` in `enum ttu_flags` (include/linux/rmap.h; 0x40 in 6.1 … 7.2).
pub const TTU_BATCH_FLUSH: u64 = 0x40;
/// `tlb_flush` reasons (include/linux/mm_types.h `enum tlb_flush_reason`).
pub const TLB_FLUSH_ON_TASK_SWITCH: u32 = 0;
pub const TLB_REMOTE_SHOOTDOWN: u32 = 1;
pub const TLB_LOCAL_SHOOTDOWN: u32 = 2;
pub const TLB_LOCAL_MM_SHOOTDOWN: u32 = 3;
pub const TLB_REMOTE_SEND_IPI: u32 = 4;
pub const TLB_REMOTE_WRONG_CPU: u32 = 5;
/// `TLB_FLUSH_ALL` as the `pages` field of `tlb_flush` (prints as -1).
pub const TLB_FLUSH_ALL: u64 = u64::MAX;

// ---------------------------------------------------------------------------------------------
// Layout pins (both sides compile these)
// ---------------------------------------------------------------------------------------------

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<PassCounts>() == PASS_COUNTS_FIELDS * 8);
    assert!(size_of::<PassDelta>() == (PASS_COUNTS_FIELDS - 2) * 4);
    assert!(size_of::<PassWire>() == 128);
    assert!(offset_of!(PassWire, cgroup_id) == 16);
    assert!(offset_of!(PassWire, duration_ns) == 32);
    assert!(offset_of!(PassWire, counts) == 40);
    assert!(offset_of!(PassWire, comm) == 112);
    assert!(PASS_F_FOLIOS_IN_TRUNCATED <= u8::MAX as u32);
    assert!(N_HIST_CTX <= u8::MAX as u32);
    assert!(MAX_VICTIM_CPUS <= u16::MAX as u32 + 1);
    assert!(size_of::<FlushRecord>() == 64);
    assert!(offset_of!(PassBatch, recs) == PASS_BATCH_HEADER);
    assert!(size_of::<PassBatch>() == PASS_BATCH_HEADER + PASS_BATCH_LEN * size_of::<PassWire>());
    assert!(offset_of!(FlushRecord, ts_ns) == 24);
    assert!(size_of::<TpOffsets>() == 11 * 4);
    assert!(size_of::<BtfOffsets>() == 24 * 4);
    assert!(offset_of!(Config, tp) == 32);
    assert!(size_of::<Config>() == 32 + 44 + 96 + 4);
    assert!(bucket_of(64) == 64);
    assert!(bucket_of(65) == 65);
    assert!(bucket_of(128) == 65);
    assert!(bucket_of(129) == 66);
    assert!(bucket_of(u64::MAX) == HIST_BUCKETS - 1);
    assert!(bucket_upper_bound(65) == 128);
    assert!(bucket_upper_bound(HIST_BUCKETS - 2) == 8192);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)] structs of integers and integer arrays with no
    // padding holes that could carry uninitialised bytes (checked by the size asserts above:
    // every size is the sum of its fields).
    unsafe impl aya::Pod for super::PassCounts {}
    unsafe impl aya::Pod for super::PassDelta {}
    unsafe impl aya::Pod for super::PassWire {}
    unsafe impl aya::Pod for super::PassBatch {}
    unsafe impl aya::Pod for super::FlushRecord {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::TpOffsets {}
    unsafe impl aya::Pod for super::BtfOffsets {}
}
