//! `csd:csd_queue_cpu` (6.5+) and `ipi:ipi_send_*` (6.4+): who a flush really reached. Absent
//! on Debian's 6.1.192: the plan then reports the batch cpumask (precise tier) as fan-out.
//!
//! `smp_call_function_many_cond` queues one csd per target CPU that is not lazy
//! (`should_flush_tlb`), then sends an IPI only to targets whose queue was empty. So csd targets
//! are the real fan-out, IPIs the interrupts it cost. Both are attributed to the flush episode
//! open on the current task.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use reclaim_trace_common::{MAX_CPUMASK_WORDS, PROG_CSD, PROG_IPI};

use crate::{
    config, count_error, current_tid_tgid,
    pass::{EP_OPEN, pass_of},
    vmscan::{Record, at, field},
};

/// The flush episode open on the current task, if any.
#[inline(always)]
fn open_episode_of_current() -> Option<*mut crate::PassState> {
    let (tid, _) = current_tid_tgid();
    let p = pass_of(tid)?;
    // SAFETY: map value owned by this task.
    if unsafe { (*p).ep } == EP_OPEN {
        Some(p)
    } else {
        None
    }
}

// name: csd_queue_cpu (6.18)
// field:unsigned int cpu;	offset:8;	size:4;	signed:0;
// field:void * callsite;	offset:16;	size:8;	signed:0;
// field:void * func;	offset:24;	size:8;	signed:0;
// field:void * csd;	offset:32;	size:8;	signed:0;
#[tracepoint(category = "csd", name = "csd_queue_cpu")]
pub fn csd_queue_cpu(ctx: TracePointContext) -> u32 {
    if try_csd_queue_cpu(&ctx).is_err() {
        count_error(PROG_CSD);
    }
    0
}

fn try_csd_queue_cpu(ctx: &TracePointContext) -> Result<(), ()> {
    // Usual layout (6.5 … 7.2): cpu at 8, func at 24.
    let usual = config!(tp.csd_func) == 24 && config!(tp.csd_cpu) == 8;
    let r = if usual {
        None
    } else {
        Some(Record::<32>::read(ctx)?)
    };
    let func: u64 = match &r {
        None => at::<24, u64>(ctx),
        Some(r) => r.get(ctx, config!(tp.csd_func))?,
    };
    if func != config!(flush_tlb_func) {
        return Ok(());
    }
    // The victim side, counted by the initiator in task context: unlike the victim's own
    // hardirq tlb_flush event, this is never skipped for BPF recursion.
    let cpu: u32 = match &r {
        None => at::<8, u32>(ctx),
        Some(r) => r.get(ctx, config!(tp.csd_cpu))?,
    };
    if let Some(v) = crate::VICTIMS.get_ptr_mut(cpu) {
        // SAFETY: valid map value pointer; several CPUs add to one slot, hence atomic.
        // (The bpfel target has no compare-and-swap, so core's AtomicU64::fetch_add is missing;
        // the intrinsic with an unused result is a plain BPF atomic add.)
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                v, 1,
            )
        };
    }
    if let Some(p) = open_episode_of_current() {
        // SAFETY: map value owned by this task.
        unsafe { (*p).ep_targets += 1 };
    }
    Ok(())
}

// name: ipi_send_cpu (6.18)
// field:unsigned int cpu;	offset:8;	size:4;	signed:0;
// field:void * callsite;	offset:16;	size:8;	signed:0;
// field:void * callback;	offset:24;	size:8;	signed:0;
#[tracepoint(category = "ipi", name = "ipi_send_cpu")]
pub fn ipi_send_cpu(ctx: TracePointContext) -> u32 {
    if try_ipi_send_cpu(&ctx).is_err() {
        count_error(PROG_IPI);
    }
    0
}

fn try_ipi_send_cpu(ctx: &TracePointContext) -> Result<(), ()> {
    // Reschedule IPIs (callback 0) and other cross-calls are filtered out first.
    let off = config!(tp.ipi_cpu_callback);
    let callback: u64 = if off == 24 {
        at::<24, u64>(ctx)
    } else {
        field(ctx, off)?
    };
    if callback != config!(ipi_callback) {
        return Ok(());
    }
    if let Some(p) = open_episode_of_current() {
        // SAFETY: map value owned by this task.
        unsafe { (*p).ep_ipis += 1 };
    }
    Ok(())
}

// name: ipi_send_cpumask (6.18)
// field:__data_loc cpumask_t cpumask;	offset:8;	size:4;	signed:0;
// field:void * callsite;	offset:16;	size:8;	signed:0;
// field:void * callback;	offset:24;	size:8;	signed:0;
#[tracepoint(category = "ipi", name = "ipi_send_cpumask")]
pub fn ipi_send_cpumask(ctx: TracePointContext) -> u32 {
    if try_ipi_send_cpumask(&ctx).is_err() {
        count_error(PROG_IPI);
    }
    0
}

fn try_ipi_send_cpumask(ctx: &TracePointContext) -> Result<(), ()> {
    let callback: u64 = field(ctx, config!(tp.ipi_mask_callback))?;
    if callback != config!(ipi_callback) {
        return Ok(());
    }
    let Some(p) = open_episode_of_current() else {
        return Ok(());
    };
    // __data_loc: low 16 bits offset of the bitmap in the record, high 16 bits its length.
    let loc: u32 = field(ctx, config!(tp.ipi_mask_cpumask))?;
    let off = loc & 0xffff;
    let words = (loc >> 16) / 8;
    let limit = config!(cpumask_words);
    let mut n = 0u64;
    for i in 0..MAX_CPUMASK_WORDS {
        if i >= words || i >= limit {
            break;
        }
        let w: u64 = field(ctx, off + i * 8)?;
        n += w.count_ones() as u64;
    }
    // SAFETY: map value owned by this task.
    unsafe { (*p).ep_ipis += n };
    Ok(())
}
