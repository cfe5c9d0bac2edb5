//! Histograms: exact buckets 0..=64, then log2 buckets (<=128, <=256, ... <=16384), one per
//! (metric, context) in `MAP_HISTS`.

use crate::N_HIST_CTX;

pub const HIST_BATCH_FILL: u32 = 0;
pub const HIST_FANOUT_CANDIDATES: u32 = 1;
pub const HIST_FANOUT_TARGETS: u32 = 2;
pub const HIST_IPIS: u32 = 3;
/// Stale-TLB window, per written-out folio (precise tier): from its `try_to_unmap` to the end
/// of the flush that covered it. Recorded as [`log2_ns`](crate::log2_ns) of the time: bucket k holds windows
/// shorter than 2^k ns.
pub const HIST_UNFLUSHED_WINDOW: u32 = 4;
/// From that flush's end to the folio's `pageout()`, as [`log2_ns`](crate::log2_ns).
pub const HIST_FLUSH_TO_PAGEOUT: u32 = 5;
pub const N_HIST_METRICS: u32 = 6;
/// Largest value with a bucket of its own.
pub const HIST_EXACT_MAX: u64 = 64;
/// 65 exact buckets, log2 buckets up to 2^13 (NR_CPUS is at most 8192 with MAXSMP), and one
/// open-ended bucket above.
pub const HIST_BUCKETS: usize = 65 + 8;
pub const N_HISTS: u32 = N_HIST_METRICS * N_HIST_CTX;

pub type HistBuckets = [u64; HIST_BUCKETS];

/// Index of the histogram for `metric` (`HIST_*`) in context `ctx` (`CTX_*`).
#[inline(always)]
pub const fn hist_index(metric: u32, ctx: u32) -> u32 {
    metric * N_HIST_CTX + ctx
}

/// The value a time goes into the window histograms as: k with 2^(k-1) <= ns < 2^k (0 for 0),
/// so bucket k holds times below 2^k ns (at most 64, an exact bucket).
#[inline(always)]
pub const fn log2_ns(ns: u64) -> u64 {
    64 - ns.leading_zeros() as u64
}

/// The bucket a value falls in. Never returns an index `>= HIST_BUCKETS`.
#[inline(always)]
pub const fn bucket_of(value: u64) -> usize {
    if value <= HIST_EXACT_MAX {
        return value as usize;
    }
    // ceil(log2(value)) for value > 64 is >= 7; bucket 65 holds 65..=128.
    let log2_ceil = 64 - (value - 1).leading_zeros() as usize;
    let idx = 65 + (log2_ceil - 7);
    if idx >= HIST_BUCKETS {
        HIST_BUCKETS - 1
    } else {
        idx
    }
}

/// Inclusive upper bound (`le`) of bucket `idx`; the last bucket is open-ended (`u64::MAX`).
pub const fn bucket_upper_bound(idx: usize) -> u64 {
    if idx as u64 <= HIST_EXACT_MAX {
        idx as u64
    } else if idx + 1 >= HIST_BUCKETS {
        u64::MAX
    } else {
        1u64 << (idx - 65 + 7)
    }
}
