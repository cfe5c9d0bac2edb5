//! reclaim-trace's eBPF programs.
//!
//! One reclaim pass is tracked per task (in a slot of the TASKS array chosen by the address of
//! its task_struct: reclaim calls `cond_resched()` and may migrate between CPUs). Hot events
//! (`tlb_flush`, `csd_queue_cpu`, `ipi_send_*`) only update that per-task state; when the pass
//! ends its counts are added to the per-CPU per-context totals and histograms, and its record
//! joins this CPU's batch for the ring buffer.
//!
//! Cost rules learnt on 6.18.44 (2 vCPUs, KVM): no struct assignment, `write_bytes` or array
//! returned by value bigger than a few words on a hot path (they become byte-at-a-time
//! `memset`/`memcpy` loops: use `zero_words`/`copy_words` and the raw helpers);
//! `bpf_ktime_get_ns` costs the pass start and end ~100-140 ns each (measured by leaving it out;
//! clocksource tsc, where `rdtsc` alone takes ~12 ns from userspace), so a pass reads the clock
//! twice and hot events never; every helper call returns through the SRSO thunk on this VM
//! (`bpf_get_current_task` is not inlined: ~10-15 ns of a hot event); a task_struct line the
//! reclaim path does not touch (`comm`) is a cache miss, so it is cached per task.
//!
//! Files by subsystem: `vmscan` (pass boundaries, pageouts, reclaim context windows), `tlb`
//! (`tlb:tlb_flush`), `smp` (`csd:*` and `ipi:*` fan-out), `precise` (kprobe/fentry programs on
//! mm/rmap.c and mm/vmscan.c functions), `batch_flush` (where a batched flush begins and ends:
//! x86's arch_tlbbatch_flush, arm64's try_to_unmap_flush*), `pass` (per-task state), `records`
//! (what goes to the ring buffer), `floor` (the benchmark's empty programs). The flush state
//! machine is plain code in `reclaim_trace_common::flush`, tested on the host.
#![no_std]
#![no_main]

mod batch_flush;
mod floor;
mod pass;
mod precise;
mod records;
mod smp;
mod tlb;
mod vmscan;

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};
use reclaim_trace_common::{
    CNT_ERR_BASE, Config, EVENTS_BYTES, HIST_BUCKETS, HistBuckets, LOG_FIRST_ANOMALIES,
    MAX_SHOOTDOWN_CPUS, MAX_TASKS, N_CONTROL, N_COUNTERS, N_CTX, N_HISTS, OFF_NONE, PassBatch,
    PassCounts, bucket_of, hist_index,
};

pub use pass::{PassState, TaskEntry};

/// Filled in by userspace before load (read-only data: the verifier treats it as constant).
#[unsafe(no_mangle)]
static CONFIG: Config = Config::EMPTY;

/// Read one field of [`CONFIG`]. Volatile, so the compiler does not fold the compiled-in
/// default into the code.
macro_rules! config {
    ($($field:tt)+) => {
        {
            // SAFETY: CONFIG is a plain static; reading a field through a raw pointer is sound.
            #[allow(unused_unsafe)]
            let v = unsafe { core::ptr::read_volatile(&raw const $crate::CONFIG.$($field)+) };
            v
        }
    };
}
pub(crate) use config;

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// This CPU's batch of pass records waiting for the ring buffer (see pass::end_pass).
#[map(name = "STAGING")]
static STAGING: PerCpuArray<PassBatch> = PerCpuArray::with_max_entries(1, 0);

/// Written by userspace while the programs run (`CONTROL_*`).
#[map(name = "CONTROL")]
static CONTROL: Array<u64> = Array::with_max_entries(N_CONTROL, 0);

/// Task slots (see pass::TaskEntry); a power of two.
pub(crate) const TASK_SLOTS: u32 = MAX_TASKS;

#[map(name = "TASKS")]
static TASKS: Array<TaskEntry> = Array::with_max_entries(TASK_SLOTS, BPF_F_MMAPABLE);

/// Not for mmap: the kernel page-aligns the values of mmapable arrays, so with 256-byte slots
/// every slot starts on a cache line and its hot first line is one line (pass::PassState).
const BPF_F_MMAPABLE: u32 = 1 << 10;

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(N_COUNTERS, 0);

#[map(name = "TOTALS")]
static TOTALS: PerCpuArray<PassCounts> = PerCpuArray::with_max_entries(N_CTX, 0);

#[map(name = "HISTS")]
static HISTS: PerCpuArray<HistBuckets> = PerCpuArray::with_max_entries(N_HISTS, 0);

/// Per-CPU: each initiating CPU counts into its own copy (no atomics, no shared cache line);
/// userspace sums the copies. Sized to the possible CPUs at load.
#[map(name = "SHOOTDOWNS")]
static REMOTE_SHOOTDOWNS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_SHOOTDOWN_CPUS, 0);

/// Add `n` to per-CPU counter `idx` (`CNT_*`).
#[inline(always)]
pub(crate) fn count(idx: u32, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot; BPF tracing programs do not nest on one CPU (bpf_prog_active).
        unsafe { *p += n };
    }
}

/// Add one to per-CPU counter `idx`; true while it was below `LOG_FIRST_ANOMALIES` (the
/// anomaly should also be logged).
#[inline(always)]
pub(crate) fn count_first(idx: u32) -> bool {
    match COUNTERS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot, as in `count`.
        Some(p) => unsafe {
            let before = *p;
            *p = before + 1;
            before < LOG_FIRST_ANOMALIES
        },
        None => false,
    }
}

/// An anomaly: what a state machine did not expect. Counted in `CNT_*` counter `$idx`; the
/// first few per CPU are logged (aya-log, info level: `-v` shows them) with the format and
/// arguments given. Only on cold paths: the log record is written only when userspace asked for
/// info-level logs (`AYA_LOG_LEVEL`), and never past the first few.
macro_rules! anomaly {
    ($idx:expr, $($fmt:tt)+) => {{
        if $crate::count_first($idx) {
            #[cfg(feature = "log")]
            aya_log_ebpf::info!(&(), target: "reclaim_trace::kernel", $($fmt)+);
        }
    }};
}
pub(crate) use anomaly;

/// Count a failed program run (`PROG_*`): an anomaly of kind `failed_read`.
#[inline(always)]
pub(crate) fn count_error(prog: u32) {
    anomaly!(
        CNT_ERR_BASE + prog,
        "failed_read: program {} gave up on an event (a read of kernel memory, its tracepoint \
         record or a map failed; program_errors names it)",
        prog
    );
}

/// Add `n` observations of `value` to histogram (`metric`, `ctx`).
#[inline(always)]
pub(crate) fn hist_add(metric: u32, ctx: u32, value: u64, n: u64) {
    if n == 0 {
        return;
    }
    // Opaque to LLVM: bucket_of never returns an index out of range, and without this the
    // check below is folded away and the verifier (which cannot follow bucket_of's
    // arithmetic) rejects the indexed store.
    let b = core::hint::black_box(bucket_of(value));
    if b >= HIST_BUCKETS {
        return;
    }
    if let Some(p) = HISTS.get_ptr_mut(hist_index(metric, ctx)) {
        // SAFETY: per-CPU slot, index bounds-checked above.
        unsafe { (*p)[b] += n };
    }
}

/// Zero `*p` eight bytes at a time. Assigning or `write_bytes`-ing a struct this size compiles
/// to a call of compiler_builtins' `memset`, which on BPF is a loop storing one byte per trip
/// (five instructions a byte); the same goes for struct copies and `memcpy`/`memmove`. Measured
/// on 6.18.44: zeroing the 280-byte pass state that way took ~200 ns, copying the 160-byte
/// counts into the pass record most of the ~550 ns the record cost. Volatile stores are never
/// merged back into a `memset` call.
///
/// # Safety
/// `p` must be valid for writes of `T`, 8-byte aligned, and all-zero must be a valid `T`.
#[inline(always)]
pub(crate) unsafe fn zero_words<T>(p: *mut T) {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8) && core::mem::align_of::<T>() >= 8) };
    let w = p.cast::<u64>();
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: in bounds of `*p` (size is a multiple of 8), aligned (asserted above).
        unsafe { core::ptr::write_volatile(w.add(i), 0) };
    }
}

/// Copy `*src` to `*dst` eight bytes at a time (see [`zero_words`]).
///
/// # Safety
/// `src` valid for reads and `dst` for writes of `T`, both 8-byte aligned, not overlapping.
#[inline(always)]
pub(crate) unsafe fn copy_words<T: Copy>(dst: *mut T, src: *const T) {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8) && core::mem::align_of::<T>() >= 8) };
    let (d, s) = (dst.cast::<u64>(), src.cast::<u64>());
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: in bounds of both, aligned (asserted above).
        unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i))) };
    }
}

/// Read a `T` at `base + off` in kernel memory; `None` when the offset is unknown on this
/// kernel, the base is NULL, or the read faults.
#[inline(always)]
pub(crate) fn kread<T>(base: u64, off: u32) -> Option<T> {
    if off == OFF_NONE || base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel copies with fault handling; any address is safe to try.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

#[inline(always)]
pub(crate) fn current_tid_tgid() -> (u32, u32) {
    let id = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    (id as u32, (id >> 32) as u32)
}

/// The tracer's own events are never counted.
#[inline(always)]
pub(crate) fn is_self(tgid: u32) -> bool {
    tgid == config!(self_tgid)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
