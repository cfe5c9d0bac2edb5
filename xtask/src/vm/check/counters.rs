//! The guest kernel's counters read by /init around the run: /proc/vmstat and
//! /proc/interrupts, and their deltas.

use std::collections::BTreeMap;

use reclaim_trace_common::procfs::{function_call_interrupts, key_values, tlb_interrupts};

fn parse_vmstat(text: &str) -> BTreeMap<&str, u64> {
    key_values(text).collect()
}

/// Counter deltas the guest measured around the run.
pub struct KernelDeltas {
    pub pgsteal: u64,
    pub pswpout: u64,
    pub tlb_irqs: Option<u64>,
    /// "Function call interrupts" received (x86 CAL, arm64 IPI1).
    pub call_irqs: Option<u64>,
    /// Large folios swapped out whole and their pages: from the per-size mTHP counters where
    /// the kernel has them (/init appends them to its vmstat copies as `mthp_swpout_<N>kB`),
    /// else `thp_swpout` (PMD size, 512 pages on x86).
    pub large_swpout: u64,
    pub large_swpout_pages: u64,
}

impl KernelDeltas {
    /// Folios written to swap: the large ones plus the base pages of `pswpout` left over.
    pub fn folios_written(&self) -> u64 {
        self.large_swpout + self.pswpout.saturating_sub(self.large_swpout_pages)
    }
}

impl KernelDeltas {
    pub fn from_text(v0: &str, v1: &str, i0: &str, i1: &str) -> KernelDeltas {
        let (a, b) = (parse_vmstat(v0), parse_vmstat(v1));
        let d = |k: &str| {
            b.get(k)
                .copied()
                .unwrap_or(0)
                .saturating_sub(a.get(k).copied().unwrap_or(0))
        };
        let per_size: Vec<(u64, u64)> = b
            .keys()
            .filter_map(|k| {
                let kb = k.strip_prefix("mthp_swpout_")?.strip_suffix("kB")?;
                Some((kb.parse::<u64>().ok()? / 4, d(k)))
            })
            .collect();
        let (large_swpout, large_swpout_pages) = if per_size.is_empty() {
            (d("thp_swpout"), d("thp_swpout") * 512)
        } else {
            per_size
                .iter()
                .fold((0, 0), |(n, p), (pages, c)| (n + c, p + c * pages))
        };
        KernelDeltas {
            pgsteal: d("pgsteal_anon") + d("pgsteal_file"),
            pswpout: d("pswpout"),
            large_swpout,
            large_swpout_pages,
            tlb_irqs: tlb_interrupts(i1)
                .zip(tlb_interrupts(i0))
                .map(|(b, a)| b.saturating_sub(a)),
            call_irqs: function_call_interrupts(i1)
                .zip(function_call_interrupts(i0))
                .map(|(b, a)| b.saturating_sub(a)),
        }
    }
}
