//! Flush episodes: how a reclaim pass's `tlb:tlb_flush` events (and, in the precise tier, the
//! `arch_tlbbatch_flush` boundaries) become counted flushes.
//!
//! This is the kernel side's state machine, written as plain functions on plain structs so
//! that the host can test it: the eBPF programs keep a [`FlushEpisode`] per task, call these
//! functions from their probes, and do what the returned [`Closed`] says (histogram updates,
//! a flush record). Nothing here touches a map or a helper.
//!
//! `tlb_flush` reasons (include/linux/mm_types.h): 1 remote shootdown (received, counted per
//! CPU elsewhere), 2 local shootdown (`flush_tlb_func` with mm == NULL: the local leg of
//! `arch_tlbbatch_flush`), 3 local mm shootdown (`flush_tlb_mm_range`: not batched), 4 remote
//! send IPI (pages == `TLB_FLUSH_ALL` for the full flush of a batch, a range otherwise).
//! A batched flush on x86 shows as reason 4 with `TLB_FLUSH_ALL` (when another CPU is in the
//! batch) followed by reason 2; an immediate one as reason 4 with a range and reason 3.

use crate::{
    PassDelta, TLB_FLUSH_ALL, TLB_LOCAL_MM_SHOOTDOWN, TLB_LOCAL_SHOOTDOWN, TLB_REMOTE_SEND_IPI,
    delta_u32,
};

/// No flush in progress.
pub const EPISODE_NONE: u32 = 0;
/// A batched (full) flush has started (`tlb_flush` reason 4 with `TLB_FLUSH_ALL`, or
/// `arch_tlbbatch_flush` entry); its targets and IPIs are being counted.
pub const EPISODE_OPEN: u32 = 1;
/// The batched flush's local leg was seen (reason 2): it is over, but whether it was the dirty
/// flush before a pageout is known only from the next event (tracepoint tier).
pub const EPISODE_LOCAL_DONE: u32 = 2;
/// An immediate (not deferred) flush is in progress: its remote leg was seen, its local leg
/// (reason 3) will end it. Already counted.
pub const EPISODE_IMMEDIATE: u32 = 3;

/// The flush in progress on a task in a reclaim pass, and the run of closed flushes with equal
/// fan-out not yet added to the histograms.
///
/// 40 bytes, in the first cache line of the task's slot with the rest of what hot events
/// touch (`reclaim-trace-ebpf` `PassState`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushEpisode {
    /// `EPISODE_*`.
    pub state: u32,
    /// CPUs sent the flush (`csd_queue_cpu`).
    pub targets: u32,
    /// IPIs sent for it (`ipi_send_cpu`, `ipi_send_cpumask`).
    pub ipis: u32,
    /// Opened as a dirty flush (`try_to_unmap_flush_dirty` found `writable`: precise tier).
    pub dirty: u32,
    /// Folios the batch covered (precise tier with unmaps observable).
    pub batch_fill: u32,
    /// A run of `run_n` closed flushes with the same `run_targets` and `run_ipis`: a flush
    /// touches no histogram, the run is added when the value changes and at the pass end.
    pub run_targets: u32,
    pub run_ipis: u32,
    pub run_n: u32,
    /// CPUs in the batch cpumask other than the flushing one; `u64::MAX` when not observable
    /// (tracepoint tier).
    pub candidates: u64,
}

/// Observations of one fan-out value (`targets`, `ipis`), `n` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanoutRun {
    pub targets: u32,
    pub ipis: u32,
    pub n: u32,
}

/// A flush that just closed, for the caller's histograms and flush record. Its counts are
/// already in the pass's [`PassDelta`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed {
    /// Dirty (before a pageout) rather than a batch flush.
    pub dirty: bool,
    pub targets: u32,
    pub ipis: u32,
    /// `u64::MAX` when not observable.
    pub candidates: u64,
    pub batch_fill: u32,
    /// The run of equal fan-outs this flush ended, to add to the histograms now.
    pub ended_run: Option<FanoutRun>,
}

impl FlushEpisode {
    /// Nothing open, nothing pending.
    pub const IDLE: FlushEpisode = FlushEpisode {
        state: EPISODE_NONE,
        targets: 0,
        ipis: 0,
        dirty: 0,
        batch_fill: 0,
        run_targets: 0,
        run_ipis: 0,
        run_n: 0,
        candidates: u64::MAX,
    };

    /// A batched flush is open (its targets and IPIs count toward it).
    #[inline(always)]
    pub fn is_open(&self) -> bool {
        self.state == EPISODE_OPEN
    }

    /// arm64: `try_to_unmap_flush` (`dirty` false) or `try_to_unmap_flush_dirty` (true) was
    /// entered with its batch pending (`tlb_ubc.flush_required` / `.writable`): it opens the
    /// flush unless one is open. One is open when `try_to_unmap_flush_dirty` called a
    /// not-inlined `try_to_unmap_flush`, and the flush is its caller's. The first exit ends
    /// it: the inner one, right after the DSB, where the flush is complete.
    #[inline(always)]
    pub fn rmap_flush_opens(&self, pending: bool) -> bool {
        pending && !self.is_open()
    }

    /// A batched flush began: close one still open first (returned), then open this one.
    #[inline(always)]
    pub fn open(
        &mut self,
        counts: &mut PassDelta,
        dirty: bool,
        candidates: u64,
        batch_fill: u64,
    ) -> Option<Closed> {
        let closed = self.close(counts, false);
        self.state = EPISODE_OPEN;
        self.dirty = dirty as u32;
        self.targets = 0;
        self.ipis = 0;
        self.candidates = candidates;
        self.batch_fill = delta_u32(batch_fill);
        closed
    }

    /// Close the batched flush in progress, if any, and count it. It is a dirty flush if it
    /// was opened as one or if `by_pageout` (a pageout followed it at once: the tracepoint
    /// tier's rule, as `try_to_unmap_flush_dirty()` runs right before `pageout()`).
    #[inline(always)]
    pub fn close(&mut self, counts: &mut PassDelta, by_pageout: bool) -> Option<Closed> {
        let state = self.state;
        self.state = EPISODE_NONE;
        if state != EPISODE_OPEN && state != EPISODE_LOCAL_DONE {
            return None;
        }
        let dirty = self.dirty != 0 || by_pageout;
        if dirty {
            counts.dirty_flushes += 1;
        } else {
            counts.batch_flushes += 1;
        }
        counts.fanout_targets += self.targets;
        counts.ipis += self.ipis;
        if self.targets == 0 {
            counts.flushes_without_ipi += 1;
        }
        if self.candidates != u64::MAX {
            counts.fanout_candidates += delta_u32(self.candidates);
        }
        let ended_run = if self.run_targets != self.targets || self.run_ipis != self.ipis {
            self.take_run()
        } else {
            None
        };
        self.run_targets = self.targets;
        self.run_ipis = self.ipis;
        self.run_n += 1;
        Some(Closed {
            dirty,
            targets: self.targets,
            ipis: self.ipis,
            candidates: self.candidates,
            batch_fill: self.batch_fill,
            ended_run,
        })
    }

    /// The run of equal fan-outs not yet in the histograms (at the pass end, or when the
    /// fan-out changes), emptied.
    #[inline(always)]
    pub fn take_run(&mut self) -> Option<FanoutRun> {
        if self.run_n == 0 {
            return None;
        }
        let run = FanoutRun {
            targets: self.run_targets,
            ipis: self.run_ipis,
            n: self.run_n,
        };
        self.run_n = 0;
        Some(run)
    }

    /// Tracepoint tier: a `tlb_flush` (`reason`, `pages`) by the task inside its pass.
    #[inline(always)]
    pub fn on_tlb_flush(
        &mut self,
        counts: &mut PassDelta,
        reason: u32,
        pages: u64,
    ) -> Option<Closed> {
        let state = self.state;
        match reason {
            TLB_REMOTE_SEND_IPI if pages == TLB_FLUSH_ALL => self.open(counts, false, u64::MAX, 0),
            TLB_REMOTE_SEND_IPI => {
                // A ranged flush from flush_tlb_mm_range: try_to_unmap_one could not defer.
                let closed = self.close(counts, false);
                self.state = EPISODE_IMMEDIATE;
                counts.immediate_flushes += 1;
                closed
            }
            TLB_LOCAL_SHOOTDOWN => {
                let closed = if state != EPISODE_OPEN {
                    // A local-only batched flush: no other CPU was in the batch.
                    self.open(counts, false, u64::MAX, 0)
                } else {
                    None
                };
                self.state = EPISODE_LOCAL_DONE;
                closed
            }
            TLB_LOCAL_MM_SHOOTDOWN => {
                // The local leg of an mm flush, never of a batch.
                if state == EPISODE_OPEN {
                    // The full flush that opened the episode was flush_tlb_mm_range's.
                    self.state = EPISODE_NONE;
                    counts.immediate_flushes += 1;
                    None
                } else if state == EPISODE_IMMEDIATE {
                    self.state = EPISODE_NONE;
                    None
                } else {
                    let closed = self.close(counts, false);
                    counts.immediate_flushes += 1;
                    closed
                }
            }
            _ => None,
        }
    }

    /// Precise tier: a `tlb_flush` inside a pass. `arch_tlbbatch_flush` delimits the batched
    /// flushes, so while one is open its legs are ignored; outside it a flush is an immediate
    /// one (`flush_tlb_mm_range` from `try_to_unmap_one` when `should_defer_flush()` said no,
    /// or a PMD split's flush): its remote leg (reason 4) comes before its local one (reason
    /// 3), and an mm on this CPU only has the local leg.
    #[inline(always)]
    pub fn on_tlb_flush_precise(&mut self, counts: &mut PassDelta, reason: u32) {
        if self.state == EPISODE_OPEN {
            return;
        }
        match reason {
            TLB_REMOTE_SEND_IPI => {
                self.state = EPISODE_IMMEDIATE;
                counts.immediate_flushes += 1;
            }
            TLB_LOCAL_MM_SHOOTDOWN => {
                if self.state == EPISODE_IMMEDIATE {
                    self.state = EPISODE_NONE;
                } else {
                    counts.immediate_flushes += 1;
                }
            }
            _ => {}
        }
    }

    /// Tracepoint tier: a pageout by the task. An episode that is open or just done was the
    /// dirty flush before it: close it as dirty.
    #[inline(always)]
    pub fn on_pageout(&mut self, counts: &mut PassDelta) -> Option<Closed> {
        if self.state == EPISODE_OPEN || self.state == EPISODE_LOCAL_DONE {
            self.close(counts, true)
        } else {
            None
        }
    }
}

/// A batched flush outside any reclaim pass (migration, compaction, NUMA balancing): how the
/// count of such flushes changes on `tlb_flush` (`reason`, `pages`), given `open`, the task's
/// state for them (`EPISODE_NONE` or `EPISODE_OPEN`). A full remote flush opens; the task's
/// next flush event decides it: an mm flush's local leg (reason 3) means it was not batched,
/// anything else (its local leg, reason 2, as a rule) counts it (+1). A local shootdown with
/// nothing open is a local-only batched flush (+1). Never negative: the counter is exported as
/// a Prometheus counter, and a count taken back after a scrape would go down.
#[inline(always)]
pub fn outside_pass_flush(open: &mut u32, reason: u32, pages: u64) -> u64 {
    let was_open = core::mem::replace(open, EPISODE_NONE) == EPISODE_OPEN;
    let decided = (was_open && reason != TLB_LOCAL_MM_SHOOTDOWN) as u64;
    decided
        + match reason {
            TLB_REMOTE_SEND_IPI if pages == TLB_FLUSH_ALL => {
                *open = EPISODE_OPEN;
                0
            }
            TLB_LOCAL_SHOOTDOWN if !was_open => 1,
            _ => 0,
        }
}

/// Batch fill estimated for a pass whose unmaps were not observed (tracepoint tier): each
/// dirty flush covered the one folio written next, and the batch flushes share the rest of the
/// reclaimed folios evenly (`q` or `q + 1` each). Returns (value, observations) pairs for the
/// batch-fill histogram; userspace marks that histogram as estimated.
#[inline(always)]
pub fn estimated_batch_fill(counts: &PassDelta) -> [(u64, u64); 3] {
    let dirty = counts.dirty_flushes as u64;
    let batch = counts.batch_flushes as u64;
    if batch == 0 {
        return [(1, dirty), (0, 0), (0, 0)];
    }
    let rest = (counts.folios_reclaimed as u64).saturating_sub(dirty);
    let (q, r) = (rest / batch, rest % batch);
    [(1, dirty), (q, batch - r), (q + 1, r)]
}

/// How far a pass's freed folios are from the kernel's reclaimed pages: |pages reclaimed −
/// pages freed| when the pass was seen from its start, else all its pages (its frees happened
/// while no pass was open). 0 means the folio count is exact.
#[inline(always)]
pub fn unmatched_pages(pages_reclaimed: u32, pages_freed: u32, seen_from_start: bool) -> u32 {
    if seen_from_start {
        pages_reclaimed.abs_diff(pages_freed)
    } else {
        pages_reclaimed
    }
}

#[cfg(test)]
mod tests;
