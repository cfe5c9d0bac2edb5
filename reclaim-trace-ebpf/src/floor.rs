//! The benchmark floor (`cargo xtask bench`): programs that return at once, attached to exactly
//! the attach points the tool uses, so that the cost of attaching at all can be told apart from
//! the cost of the tool's own work. One program per attach type, attached many times.

use aya_ebpf::{
    macros::{kprobe, kretprobe, raw_tracepoint, tracepoint},
    programs::{ProbeContext, RawTracePointContext, RetProbeContext, TracePointContext},
};

#[tracepoint]
pub fn floor_tp(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint]
pub fn floor_rtp(_ctx: RawTracePointContext) -> u32 {
    0
}

#[kprobe]
pub fn floor_kp(_ctx: ProbeContext) -> u32 {
    0
}

#[kretprobe]
pub fn floor_kr(_ctx: RetProbeContext) -> u32 {
    0
}
