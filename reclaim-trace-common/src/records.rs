//! What the kernel side counts per pass and sends through the ring buffer.
//!
//! One reclaim pass has several shapes, each for a reason:
//! - `PassState` (eBPF crate): the live per-task state while the pass runs, with the flush
//!   episode and bookkeeping that never leaves the kernel;
//! - [`PassDelta`]: its counts in `u32`, half the size, so the kernel zeroes and copies less;
//! - [`PassWire`]: a finished pass on the wire (128 bytes), counts as a `PassDelta`, and
//!   [`PassBatch`]: up to 16 of them sent in one ring-buffer copy;
//! - [`PassCounts`]: counts in `u64`, for the per-context totals that survive drops and for
//!   userspace sums;
//! - [`PassRecord`]: a decoded pass as userspace uses it (`PassWire` widened to `PassCounts`,
//!   with its end time).

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

/// Counts of one reclaim pass; also the per-context running totals in [`MAP_TOTALS`](crate::MAP_TOTALS).
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
    /// The [`CONTROL_GENERATION`](crate::CONTROL_GENERATION) when the batch was last sent.
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

/// One batched TLB flush (`RECORD_FLUSH`), only with [`CFG_EMIT_FLUSHES`](crate::CFG_EMIT_FLUSHES).
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
    pub batch_fill: u64,
    /// CPUs in the batch cpumask other than the flushing one (`u64::MAX` when unknown).
    pub candidates: u64,
    pub targets: u64,
    pub ipis: u64,
}
