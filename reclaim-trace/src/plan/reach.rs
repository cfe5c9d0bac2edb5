//! Where each flush went: the CPUs it was sent to (csd targets), the IPIs it cost and the
//! remote shootdowns each CPU received, or (arm64) the hardware broadcast that reaches them all.

use super::*;

/// Where each flush went: csd targets, IPIs, and the remote shootdowns each CPU received.
pub(super) fn fanout(p: &mut Planner<'_>) {
    let facts = p.facts;
    if FlushReach::of(facts) == FlushReach::Broadcast {
        return fanout_broadcast(p);
    }
    let csd = p.raw_tp("csd", "csd_queue_cpu");
    let have_flush_func = facts.kallsyms.addr("flush_tlb_func").is_some();
    match (csd, have_flush_func) {
        (Ok(()), true) => {
            p.add_raw(
                "csd_queue_cpu",
                "csd",
                "csd_queue_cpu",
                Signal::FanoutTargets,
            );
            p.row(
                Signal::FanoutTargets,
                Tier::Tracepoint,
                "raw_tracepoint:csd:csd_queue_cpu (func == flush_tlb_func)".into(),
                None,
            );
        }
        (csd, _) => {
            let why = match csd {
                Err(w) => format!("{w} (added in 6.5)"),
                Ok(()) => "flush_tlb_func address not readable from /proc/kallsyms".into(),
            };
            p.row(
                Signal::FanoutTargets,
                Tier::None,
                "none".into(),
                Some(format!(
                    "{why}; only candidates (precise tier) and per-CPU remote shootdowns remain"
                )),
            );
        }
    }
    ipis(p);
    if p.signal_tier(Signal::FanoutTargets) == Tier::Tracepoint {
        p.row(
            Signal::RemoteShootdowns,
            Tier::Tracepoint,
            "raw_tracepoint:csd:csd_queue_cpu target CPU (flush_tlb_func)".into(),
            None,
        );
    } else if p.tp("tlb", "tlb_flush") {
        p.row(
            Signal::RemoteShootdowns,
            Tier::Tracepoint,
            "raw_tracepoint:tlb:tlb_flush reason 1, per CPU".into(),
            Some(
                "hardirq events are dropped when they interrupt another BPF program: an \
                 undercount"
                    .into(),
            ),
        );
    } else {
        p.row(
            Signal::RemoteShootdowns,
            Tier::None,
            "none".into(),
            Some("tracepoint tlb:tlb_flush not present".into()),
        );
    }
}

/// arm64: a batched flush reaches every CPU by the hardware broadcast of its TLBIs, issued at
/// unmap time; no CPU is sent anything, so there are no targets or shootdowns to count. IPIs
/// sent during a flush are still counted where the ipi tracepoints exist: 0 on 6.12.118 arm64
/// with fentry, 1 in 12,933 flushes with kprobes (an interrupt's wakeup while the flush was
/// open).
fn fanout_broadcast(p: &mut Planner<'_>) {
    let reach = "broadcast: TLBI ...IS reaches every CPU of the inner-shareable domain; no \
                 IPIs, no per-CPU targets";
    p.row(Signal::FanoutTargets, Tier::None, reach.into(), None);
    p.row(Signal::RemoteShootdowns, Tier::None, reach.into(), None);
    ipis(p);
}

/// IPIs sent by a task while its flush is open (smp_call_function's IPIs only).
fn ipis(p: &mut Planner<'_>) {
    let facts = p.facts;
    let ipi_cb = facts
        .kallsyms
        .addr("generic_smp_call_function_single_interrupt")
        .is_some();
    let ipi_cpu = p.raw_tp("ipi", "ipi_send_cpu");
    let ipi_mask = p.raw_tp("ipi", "ipi_send_cpumask");
    match (ipi_cpu, ipi_cb) {
        (Ok(()), true) => {
            p.add_raw("ipi_send_cpu", "ipi", "ipi_send_cpu", Signal::Ipis);
            if ipi_mask.is_ok() {
                p.add_raw("ipi_send_cpumask", "ipi", "ipi_send_cpumask", Signal::Ipis);
            }
            p.row(
                Signal::Ipis,
                Tier::Tracepoint,
                "raw_tracepoint:ipi:ipi_send_cpu/ipi_send_cpumask during a flush".into(),
                None,
            );
        }
        (r, _) => {
            let why = match r {
                Err(w) => format!("{w} (added in 6.4)"),
                Ok(()) => "IPI callback address not readable from /proc/kallsyms".into(),
            };
            p.row(Signal::Ipis, Tier::None, "none".into(), Some(why));
        }
    }
}
