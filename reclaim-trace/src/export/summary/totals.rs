//! Totals over a window and the figures derived from them alone: flushes per reclaimed folio,
//! means per deferred flush, rates. `build`, `merge` and `upgrade` all derive these figures,
//! and every view reads them, so each has one definition here.

use reclaim_trace_common::PassCounts;
use serde::{Deserialize, Serialize};

use super::IpiFanout;

/// Totals over a window. `flushes` are all reclaim flushes: deferred (dirty + batch: they
/// send the IPIs, and batching patches change them) plus immediate (local, no IPI);
/// `other_flushes` happened outside reclaim and are in no ratio.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub passes: u64,
    pub folios_in: u64,
    /// Folios the passes freed (see `Summary::folios_exact`).
    pub folios_reclaimed: u64,
    pub pages_reclaimed: u64,
    pub pages_scanned: u64,
    pub pageouts: u64,
    /// Deferred + immediate.
    pub flushes: u64,
    /// Dirty + batch: flushes of the task's deferred-flush batch (`tlb_ubc`). Absent from v1
    /// files (`upgrade` fills it in).
    #[serde(default)]
    pub deferred_flushes: u64,
    pub dirty_flushes: u64,
    pub batch_flushes: u64,
    pub other_flushes: u64,
    /// Flushes `try_to_unmap_one` could not defer (`unbatched_flushes` in schema v1).
    #[serde(alias = "unbatched_flushes", default)]
    pub immediate_flushes: u64,
    pub ipis: u64,
    pub fanout_targets: u64,
    pub fanout_candidates: u64,
    pub flushes_without_ipi: u64,
    pub batched_unmaps: u64,
    pub dirty_flush_calls: u64,
    /// Remote TLB flushes received by any CPU (all flushes, reclaim or not).
    pub remote_shootdowns: u64,
    /// The same seen as `tlb_flush` reason 1/5 on the victim (undercounts under BPF nesting).
    pub remote_shootdowns_traced: u64,
    pub pageouts_outside_reclaim: u64,
    pub passes_without_start: u64,
    /// Dirty flushes not followed by a pageout in their pass (precise tier): pageout() kept
    /// or re-activated the folio. Counted for all contexts together (0 in `by_context`);
    /// 0 where a file lacks it.
    #[serde(default)]
    pub dirty_flushes_without_pageout: u64,
    /// Stale-TLB window (precise tier): pageouts that began while a writable entry of their
    /// folio's deferred flush was still unflushed. 0 on a correct kernel.
    #[serde(default)]
    pub pageouts_before_flush: u64,
    /// Pageouts of folios whose unmap flushed at once (nothing deferred: no window).
    #[serde(default)]
    pub pageouts_undeferred: u64,
    /// Pageouts that began with their deferred flush still pending but no writable entry in
    /// it: read-only stale entries, which cannot race the write.
    #[serde(default)]
    pub pageouts_readonly_pending: u64,
    /// Pageouts of folios the pass did not unmap into its batch (an earlier pass did and its
    /// pageout() kept the folio, or their owner dropped the mapping while reclaim held them):
    /// no window of this pass to measure.
    #[serde(default)]
    pub pageouts_not_unmapped: u64,
    /// Pageouts whose covering flush was followed by another before them (its time is not
    /// kept): not in the window histograms.
    #[serde(default)]
    pub window_unknown: u64,
    /// `pageout()` calls in reclaim passes, written out or not (precise tier with the
    /// stale-TLB window; 0 elsewhere): `pageout_calls - pageouts` folios were handed to
    /// pageout() after their dirty flush and kept.
    #[serde(default)]
    pub pageout_calls: u64,
    /// Passes whose freed folios' pages did not add up to the kernel's reclaimed pages, and
    /// those pages (see `Summary::folios_exact`). All contexts together (0 in `by_context`).
    #[serde(default)]
    pub unmatched_passes: u64,
    #[serde(default)]
    pub unmatched_pages: u64,
}

impl Totals {
    /// Totals of passes (the kernel's per-context sums); the out-of-pass counters stay 0.
    pub fn of_passes(c: &PassCounts) -> Totals {
        Totals {
            passes: c.passes,
            folios_in: c.folios_in,
            folios_reclaimed: c.folios_reclaimed,
            pages_reclaimed: c.pages_reclaimed,
            pages_scanned: c.pages_scanned,
            pageouts: c.pageouts,
            flushes: c.dirty_flushes + c.batch_flushes + c.immediate_flushes,
            deferred_flushes: c.dirty_flushes + c.batch_flushes,
            dirty_flushes: c.dirty_flushes,
            batch_flushes: c.batch_flushes,
            immediate_flushes: c.immediate_flushes,
            ipis: c.ipis,
            fanout_targets: c.fanout_targets,
            fanout_candidates: c.fanout_candidates,
            flushes_without_ipi: c.flushes_without_ipi,
            batched_unmaps: c.batched_unmaps,
            dirty_flush_calls: c.dirty_flush_calls,
            ..Totals::default()
        }
    }

    /// `other`'s counts added to these: the totals of two consecutive windows. Every field is
    /// named (no `..`), so a count added to `Totals` cannot be left out of the sum. Saturating:
    /// counts read from a file can be anything.
    pub fn add(&mut self, other: &Totals) {
        let Totals {
            passes,
            folios_in,
            folios_reclaimed,
            pages_reclaimed,
            pages_scanned,
            pageouts,
            flushes,
            deferred_flushes,
            dirty_flushes,
            batch_flushes,
            other_flushes,
            immediate_flushes,
            ipis,
            fanout_targets,
            fanout_candidates,
            flushes_without_ipi,
            batched_unmaps,
            dirty_flush_calls,
            remote_shootdowns,
            remote_shootdowns_traced,
            pageouts_outside_reclaim,
            passes_without_start,
            dirty_flushes_without_pageout,
            pageouts_before_flush,
            pageouts_undeferred,
            pageouts_readonly_pending,
            pageouts_not_unmapped,
            window_unknown,
            pageout_calls,
            unmatched_passes,
            unmatched_pages,
        } = other;
        let add = |sum: &mut u64, v: &u64| *sum = sum.saturating_add(*v);
        add(&mut self.passes, passes);
        add(&mut self.folios_in, folios_in);
        add(&mut self.folios_reclaimed, folios_reclaimed);
        add(&mut self.pages_reclaimed, pages_reclaimed);
        add(&mut self.pages_scanned, pages_scanned);
        add(&mut self.pageouts, pageouts);
        add(&mut self.flushes, flushes);
        add(&mut self.deferred_flushes, deferred_flushes);
        add(&mut self.dirty_flushes, dirty_flushes);
        add(&mut self.batch_flushes, batch_flushes);
        add(&mut self.other_flushes, other_flushes);
        add(&mut self.immediate_flushes, immediate_flushes);
        add(&mut self.ipis, ipis);
        add(&mut self.fanout_targets, fanout_targets);
        add(&mut self.fanout_candidates, fanout_candidates);
        add(&mut self.flushes_without_ipi, flushes_without_ipi);
        add(&mut self.batched_unmaps, batched_unmaps);
        add(&mut self.dirty_flush_calls, dirty_flush_calls);
        add(&mut self.remote_shootdowns, remote_shootdowns);
        add(&mut self.remote_shootdowns_traced, remote_shootdowns_traced);
        add(&mut self.pageouts_outside_reclaim, pageouts_outside_reclaim);
        add(&mut self.passes_without_start, passes_without_start);
        add(
            &mut self.dirty_flushes_without_pageout,
            dirty_flushes_without_pageout,
        );
        add(&mut self.pageouts_before_flush, pageouts_before_flush);
        add(&mut self.pageouts_undeferred, pageouts_undeferred);
        add(
            &mut self.pageouts_readonly_pending,
            pageouts_readonly_pending,
        );
        add(&mut self.pageouts_not_unmapped, pageouts_not_unmapped);
        add(&mut self.window_unknown, window_unknown);
        add(&mut self.pageout_calls, pageout_calls);
        add(&mut self.unmatched_passes, unmatched_passes);
        add(&mut self.unmatched_pages, unmatched_pages);
    }

    /// All reclaim flushes per reclaimed folio, and its two parts.
    pub fn per_folio(&self) -> PerFolio {
        PerFolio {
            flushes_per_reclaimed_folio: self.flushes_per_reclaimed_folio(),
            deferred_flushes_per_reclaimed_folio: ratio(
                self.deferred_flushes,
                self.folios_reclaimed,
            ),
            immediate_flushes_per_reclaimed_folio: ratio(
                self.immediate_flushes,
                self.folios_reclaimed,
            ),
        }
    }

    pub fn flushes_per_reclaimed_folio(&self) -> Option<f64> {
        ratio(self.flushes, self.folios_reclaimed)
    }

    pub fn ipis_per_reclaimed_folio(&self) -> Option<f64> {
        ratio(self.ipis, self.folios_reclaimed)
    }

    /// `v` per deferred flush. Fan-out and batch fill describe the deferred flushes only:
    /// immediate ones have no batch and send no IPI.
    fn per_deferred_flush(&self, v: u64) -> Option<f64> {
        ratio(v, self.deferred_flushes)
    }

    /// Mean folios per flush: batched unmaps per deferred flush where the unmaps were
    /// observed (`exact`); `None` where the histogram is an estimate and there is no count.
    pub fn batch_fill_mean(&self, exact: bool) -> Option<f64> {
        if exact {
            self.per_deferred_flush(self.batched_unmaps)
        } else {
            None
        }
    }

    /// Mean of the fan-out histogram that `source` (an [`IpiFanout`] source) names.
    pub fn fanout_mean(&self, source: &str) -> Option<f64> {
        match source {
            IpiFanout::TARGETS => self.per_deferred_flush(self.fanout_targets),
            IpiFanout::CANDIDATES => self.fanout_candidates_mean(),
            _ => None,
        }
    }

    /// Mean CPUs in the flushed batches' cpumasks other than the flushing one.
    pub fn fanout_candidates_mean(&self) -> Option<f64> {
        self.per_deferred_flush(self.fanout_candidates)
    }

    /// Mean IPIs sent per deferred flush.
    pub fn ipis_per_flush_mean(&self) -> Option<f64> {
        self.per_deferred_flush(self.ipis)
    }
}

/// Flushes per reclaimed folio: all of them, and the deferred and immediate parts (which add
/// up to the first). Flattened into the summary, each context and each cgroup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PerFolio {
    pub flushes_per_reclaimed_folio: Option<f64>,
    #[serde(default)]
    pub deferred_flushes_per_reclaimed_folio: Option<f64>,
    #[serde(default)]
    pub immediate_flushes_per_reclaimed_folio: Option<f64>,
}

/// Which flush counts a run could see: a plan without flush probes sees none (arm64's
/// tracepoint tier), and arm64 has no event for an immediate flush at all (it defers every
/// unmap of reclaim; only a THP split's range flush is immediate there). Ratios of counts not
/// seen are `None`, never a 0 that looks measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushesSeen {
    pub flushes: bool,
    pub immediate: bool,
}

impl FlushesSeen {
    pub const ALL: FlushesSeen = FlushesSeen {
        flushes: true,
        immediate: true,
    };
}

impl PerFolio {
    /// These ratios with the unseen ones taken out.
    pub fn seen(mut self, seen: FlushesSeen) -> PerFolio {
        if !seen.flushes {
            self = PerFolio::default();
        } else if !seen.immediate {
            self.immediate_flushes_per_reclaimed_folio = None;
        }
        self
    }
}

pub fn ratio(num: u64, den: u64) -> Option<f64> {
    (den != 0).then(|| num as f64 / den as f64)
}

/// `v` per second over `duration_s`; 0 for a window of no length.
pub fn per_s(v: u64, duration_s: f64) -> f64 {
    if duration_s > 0.0 {
        v as f64 / duration_s
    } else {
        0.0
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub folios_reclaimed_per_s: f64,
    pub flushes_per_s: f64,
    pub ipis_per_s: f64,
    pub passes_per_s: f64,
}

impl Rates {
    /// The rates of `t` over a window `duration_s` long.
    pub fn of(t: &Totals, duration_s: f64) -> Rates {
        Rates {
            folios_reclaimed_per_s: per_s(t.folios_reclaimed, duration_s),
            flushes_per_s: per_s(t.flushes, duration_s),
            ipis_per_s: per_s(t.ipis, duration_s),
            passes_per_s: per_s(t.passes, duration_s),
        }
    }
}

/// One reclaim context: the same totals, and its own ratio.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextSummary {
    #[serde(flatten)]
    pub totals: Totals,
    #[serde(flatten)]
    pub per_folio: PerFolio,
}

impl ContextSummary {
    /// `totals` with the ratios derived from them.
    pub fn of(totals: Totals, seen: FlushesSeen) -> ContextSummary {
        ContextSummary {
            per_folio: totals.per_folio().seen(seen),
            totals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every count is summed: totals of 1 in every field, added to themselves, are 2 in every
    /// field of the JSON.
    #[test]
    fn add_sums_every_field() {
        let fields = serde_json::to_value(Totals::default()).unwrap();
        let ones = fields
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.clone(), serde_json::Value::from(1)))
            .collect();
        let ones: Totals = serde_json::from_value(serde_json::Value::Object(ones)).unwrap();
        let mut sum = ones.clone();
        sum.add(&ones);
        let json = serde_json::to_value(&sum).unwrap();
        for (k, v) in json.as_object().unwrap() {
            assert_eq!(v, 2, "{k}");
        }
    }

    /// Counts from a file summed past `u64::MAX` stay there (no overflow panic, no wrap).
    #[test]
    fn add_saturates() {
        let mut max = Totals {
            passes: u64::MAX,
            unmatched_pages: u64::MAX - 1,
            ..Totals::default()
        };
        max.add(&Totals {
            passes: 1,
            unmatched_pages: 5,
            flushes: 3,
            ..Totals::default()
        });
        assert_eq!(
            (max.passes, max.unmatched_pages, max.flushes),
            (u64::MAX, u64::MAX, 3)
        );
    }
}
