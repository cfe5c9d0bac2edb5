//! Records to userspace: pass records through this CPU's staging batch, flush records
//! directly, and when to wake the reader.

use aya_ebpf::helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns};
use reclaim_trace_common::{
    CNT_FLUSH_RECORD_DROPS, CNT_RINGBUF_DROPS, CONTROL_GENERATION, FlushRecord, PASS_BATCH_HEADER,
    PASS_BATCH_LEN, PassBatch, PassWire, RECORD_FLUSH, RECORD_PASS, RECORD_PASS_BATCH, delta_u32,
};

use crate::{CONTROL, EVENTS, STAGING, config, copy_words, count, pass::PassState};

/// Submit flags: wake the reader only when a quarter of the buffer is waiting (it also drains
/// on a timer), so that the common case costs no irq_work.
#[inline(always)]
pub fn submit_flags() -> u64 {
    const BPF_RB_AVAIL_DATA: u64 = 0;
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= config!(wakeup_bytes) as u64 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
pub fn emit_flush(class: u32, ctx: u32, batch_fill: u64, candidates: u64, targets: u64, ipis: u64) {
    let Some(mut entry) = EVENTS.reserve::<FlushRecord>(0) else {
        count(CNT_FLUSH_RECORD_DROPS, 1);
        return;
    };
    let r = entry.as_mut_ptr();
    let (tid, _) = crate::current_tid_tgid(); // rare: only with CFG_EMIT_FLUSHES
    // SAFETY: `r` points at a reserved, writable ring-buffer slot of the right size.
    unsafe {
        (*r).kind = RECORD_FLUSH;
        (*r).class = class;
        (*r).tid = tid;
        (*r).context = ctx;
        (*r).cpu = bpf_get_smp_processor_id();
        (*r)._pad = 0;
        (*r).ts_ns = bpf_ktime_get_ns();
        (*r).batch_fill = batch_fill;
        (*r).candidates = candidates;
        (*r).targets = targets;
        (*r).ipis = ipis;
    }
    entry.submit(submit_flags());
}

/// Write the record of the pass `s` (lasting `duration_ns`) at `r`.
#[inline(always)]
pub fn write_record(r: *mut PassWire, s: &PassState, ctx: u32, duration_ns: u64, comm: [u64; 2]) {
    // SAFETY: `r` points at writable memory of size_of::<PassWire>() (a ring-buffer
    // reservation or a slot of this CPU's batch), 8-byte aligned.
    unsafe {
        (*r).kind = RECORD_PASS;
        (*r).context = ctx as u8;
        (*r).flags = s.flags as u8;
        (*r).cpu = bpf_get_smp_processor_id() as u16;
        (*r).tid = s.tid;
        (*r).tgid = s.tgid;
        (*r).cgroup_id = s.cgroup_id;
        (*r).start_ns = s.start_ns;
        (*r).duration_ns = delta_u32(duration_ns);
        (*r)._pad = 0;
        copy_words(&raw mut (*r).counts, &raw const s.counts);
        let c = (&raw mut (*r).comm).cast::<u64>();
        core::ptr::write_volatile(c, comm[0]);
        core::ptr::write_volatile(c.add(1), comm[1]);
    }
}

/// Add the record to this CPU's batch, and send the batch when it is full or userspace has
/// taken a snapshot since it was last sent. `false` when there is no batch to use.
#[inline(always)]
pub fn stage(s: &PassState, ctx: u32, duration_ns: u64, comm: [u64; 2]) -> bool {
    let Some(b) = STAGING.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's batch; its callers run with preemption off, so nothing else on this
    // CPU writes it meanwhile.
    let b = unsafe { &mut *b };
    let i = b.n as usize;
    let Some(r) = b.recs.get_mut(i) else {
        b.n = 0; // unreachable: a full batch is sent at once
        return false;
    };
    write_record(r, s, ctx, duration_ns, comm);
    let n = i + 1;
    b.n = n as u32;
    let generation = CONTROL.get(CONTROL_GENERATION).copied().unwrap_or(0);
    if n >= PASS_BATCH_LEN || b.generation != generation {
        b.kind = RECORD_PASS_BATCH;
        b.generation = generation;
        // Opaque, and one plain upper-bound compare: LLVM otherwise folds the check into
        // arithmetic on another register, and the verifier cannot bound the size (rejected on
        // 6.18.44 without the black_box; on 6.1.192 with a two-sided check).
        let len = core::hint::black_box(PASS_BATCH_HEADER + n * core::mem::size_of::<PassWire>());
        if len <= core::mem::size_of::<PassBatch>() {
            // SAFETY: the first `len` bytes of this CPU's batch (bounded just above).
            let bytes =
                unsafe { core::slice::from_raw_parts((b as *const PassBatch).cast::<u8>(), len) };
            if EVENTS.output::<[u8]>(bytes, submit_flags()).is_err() {
                count(CNT_RINGBUF_DROPS, n as u64);
            }
        }
        b.n = 0;
    }
    true
}
