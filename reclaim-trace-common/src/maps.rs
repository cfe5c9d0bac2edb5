//! Map and global names, sizes, and the reclaim contexts that index the per-context maps.
//! The same strings appear as symbol names in the eBPF object.

/// Ring buffer carrying [`PassBatch`](crate::PassBatch)es of per-pass records (and [`FlushRecord`](crate::FlushRecord)s on request).
pub const MAP_EVENTS: &str = "EVENTS";
/// Per-CPU [`PassBatch`](crate::PassBatch) being filled: pass records wait here until the batch is full, or the
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
/// Per-CPU [`PassCounts`](crate::PassCounts) per reclaim context (`CTX_*`): totals that survive ring-buffer drops.
pub const MAP_TOTALS: &str = "TOTALS";
/// Per-CPU histograms: `[u64; HIST_BUCKETS]` at [`hist_index`](crate::hist_index)`(metric, ctx)`.
pub const MAP_HISTS: &str = "HISTS";
/// Remote TLB flushes received per target CPU (`csd_queue_cpu` with `flush_tlb_func`): a
/// per-CPU array indexed by target CPU id, counted by the initiators; sum the copies.
pub const MAP_REMOTE_SHOOTDOWNS: &str = "SHOOTDOWNS";
/// Entries of [`MAP_REMOTE_SHOOTDOWNS`] (CPU ids up to NR_CPUS with MAXSMP).
pub const MAX_SHOOTDOWN_CPUS: u32 = 8192;
/// The [`Config`](crate::Config) global, set with `EbpfLoader::override_global` before load.
pub const GLOBAL_CONFIG: &str = "CONFIG";

/// Default ring-buffer size in bytes (power of two, multiple of the page size). At the
/// ~10,000 passes/s that memcg reclaim of two threads produces on this class of machine, 1 MiB
/// holds ~8,000 records, i.e. ~0.8 s of backlog if userspace stalls.
pub const EVENTS_BYTES: u32 = 1 << 20;
/// Producers wake the reader only once this much is waiting; below it the reader drains on its
/// own timer ([`READER_POLL_MS`]). A wakeup per record costs a self-IPI (an irq_work) inside
/// the program: measured at ~23 µs per pass record on 6.18.44 in a VM, against ~2 µs without.
pub const DEFAULT_WAKEUP_BYTES: u32 = EVENTS_BYTES / 4;
/// How often the reader drains the ring buffer without being woken.
pub const READER_POLL_MS: u64 = 100;
/// Task slots in the kernel (a power of two; 256 bytes each). A task lands in one of two
/// slots picked from its task_struct address; with both taken it is not tracked (counted in
/// `CNT_PASS_MAP_FULL`).
pub const MAX_TASKS: u32 = 4096;

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
