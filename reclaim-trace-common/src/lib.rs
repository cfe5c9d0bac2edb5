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

mod config;
mod counters;
pub mod flush;
mod hist;
mod maps;
pub mod procfs;
mod records;

pub use config::*;
pub use counters::*;
pub use hist::*;
pub use maps::*;
pub use records::*;

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
    assert!(MAX_SHOOTDOWN_CPUS <= u16::MAX as u32 + 1);
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
