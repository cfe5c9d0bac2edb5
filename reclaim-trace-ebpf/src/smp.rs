//! `csd:csd_queue_cpu` (6.5+) and `ipi:ipi_send_*` (6.4+): who a flush really reached. Absent
//! on Debian's 6.1.192: the plan then reports the batch cpumask (precise tier) as fan-out.
//!
//! `smp_call_function_many_cond` queues one csd per target CPU that is not lazy
//! (`should_flush_tlb`), then sends an IPI only to targets whose queue was empty. So csd targets
//! are the real fan-out, IPIs the interrupts it cost. Both are attributed to the flush episode
//! open on the current task.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel, macros::raw_tracepoint, programs::RawTracePointContext,
};
use reclaim_trace_common::{MAX_CPUMASK_WORDS, PROG_IPI};

use crate::{
    config, count_error,
    pass::{current_key, pass_of},
};

/// The flush episode open on the current task, if any.
#[inline(always)]
fn open_episode_of_current() -> Option<*mut crate::PassState> {
    let p = pass_of(current_key())?;
    // SAFETY: map value owned by this task.
    if unsafe { (*p).episode.is_open() } {
        Some(p)
    } else {
        None
    }
}

// TP_PROTO(const unsigned int cpu, unsigned long callsite, smp_call_func_t func,
//          call_single_data_t *csd)                                    (6.5 … 7.2)
#[raw_tracepoint(tracepoint = "csd_queue_cpu")]
pub fn csd_queue_cpu(ctx: RawTracePointContext) -> u32 {
    let func = ctx.arg::<u64>(2);
    if func != config!(flush_tlb_func) {
        return 0;
    }
    // The victim side, counted by the initiator in task context: unlike the victim's own
    // hardirq tlb_flush event, this is never skipped for BPF recursion.
    let cpu = ctx.arg::<u64>(0) as u32;
    if let Some(v) = crate::REMOTE_SHOOTDOWNS.get_ptr_mut(cpu) {
        // SAFETY: this CPU's copy of the slot.
        unsafe { *v += 1 };
    }
    if let Some(p) = open_episode_of_current() {
        // SAFETY: map value owned by this task.
        unsafe { (*p).episode.targets += 1 };
    }
    0
}

// TP_PROTO(const unsigned int cpu, unsigned long callsite, void *callback)   (6.4 … 7.2)
#[raw_tracepoint(tracepoint = "ipi_send_cpu")]
pub fn ipi_send_cpu(ctx: RawTracePointContext) -> u32 {
    // Reschedule IPIs (callback 0) and other cross-calls are filtered out first.
    if ctx.arg::<u64>(2) != config!(ipi_callback) {
        return 0;
    }
    if let Some(p) = open_episode_of_current() {
        // SAFETY: map value owned by this task.
        unsafe { (*p).episode.ipis += 1 };
    }
    0
}

// TP_PROTO(const struct cpumask *cpumask, unsigned long callsite, void *callback)
#[raw_tracepoint(tracepoint = "ipi_send_cpumask")]
pub fn ipi_send_cpumask(ctx: RawTracePointContext) -> u32 {
    if try_ipi_send_cpumask(&ctx).is_err() {
        count_error(PROG_IPI);
    }
    0
}

fn try_ipi_send_cpumask(ctx: &RawTracePointContext) -> Result<(), ()> {
    if ctx.arg::<u64>(2) != config!(ipi_callback) {
        return Ok(());
    }
    let Some(p) = open_episode_of_current() else {
        return Ok(());
    };
    let mask = ctx.arg::<u64>(0);
    let limit = config!(cpumask_words);
    let mut n = 0u64;
    for i in 0..MAX_CPUMASK_WORDS {
        if i >= limit {
            break;
        }
        // SAFETY: reading kernel memory with fault handling.
        let w: u64 = unsafe { bpf_probe_read_kernel((mask + 8 * i as u64) as *const u64) }
            .map_err(|_| ())?;
        n += w.count_ones() as u64;
    }
    // SAFETY: map value owned by this task.
    unsafe { (*p).episode.ipis += n as u32 };
    Ok(())
}
