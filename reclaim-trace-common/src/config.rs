//! The configuration block (a read-only global: the verifier sees its values as constants)
//! and the kernel ABI constants the programs compare against.

/// Emit a [`FlushRecord`](crate::FlushRecord) per batched flush.
pub const CFG_EMIT_FLUSHES: u32 = 1 << 0;
/// `shrink_folio_list` entry/exit probes own pass boundaries; vmscan tracepoints add nothing.
pub const CFG_PRECISE_PASS: u32 = 1 << 1;
/// `arch_tlbbatch_flush` entry/exit probes delimit flushes; `tlb_flush` only counts
/// remote shootdowns received and immediate flushes.
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
/// A batched flush is `try_to_unmap_flush{,_dirty}` from entry to return, the flush found
/// pending (arm64, where `arch_tlbbatch_flush` is inline); else `arch_tlbbatch_flush`.
pub const CFG_FLUSH_RMAP: u32 = 1 << 8;

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
    /// Producers wake the reader once this many bytes wait in the ring buffer (a quarter of
    /// its size); below it the reader drains on its own timer.
    pub wakeup_bytes: u32,
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
        wakeup_bytes: crate::DEFAULT_WAKEUP_BYTES,
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
