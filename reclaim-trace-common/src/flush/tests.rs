//! The flush state machine replayed on the event sequences the kernels produce.
//!
//! The tracepoint-tier sequences are the reclaiming task's events as tracefs shows them on
//! 6.18.44 (`tlb:tlb_flush` without reasons 0 and 1, `csd:csd_queue_cpu`, `ipi:ipi_send_cpu`,
//! `vmscan:mm_vmscan_write_folio`, under `reclaim-trace workload --kind anon|thp`, 2 threads).
//! The precise-tier ones put the same legs between the `arch_tlbbatch_flush` entry and exit
//! probes, where arch/x86/mm/tlb.c issues them (6.1 … 7.2).

extern crate std;
use std::vec::Vec;

use super::*;

/// What a task in a reclaim pass does, in the order the probes see it.
#[derive(Clone, Copy, Debug)]
enum Ev {
    /// `tlb:tlb_flush` (reason, pages).
    Tlb(u32, u64),
    /// `csd:csd_queue_cpu` with `flush_tlb_func` (6.5+; none on 6.1).
    Csd,
    /// `ipi:ipi_send_cpu` / `ipi_send_cpumask` with the flush callback, n CPUs (6.4+).
    Ipi(u32),
    /// A folio written out (`mm_vmscan_write_folio` or the `pageout` probe).
    Pageout,
    /// Precise tier: `arch_tlbbatch_flush` entry, dirty or not, candidates, folios unmapped.
    BatchEntry(bool, u64, u64),
    /// Precise tier: `arch_tlbbatch_flush` exit.
    BatchExit,
    /// arm64: `try_to_unmap_flush{,_dirty}` entry (dirty, batch pending, folios unmapped).
    RmapEntry(bool, bool, u64),
    /// arm64: `try_to_unmap_flush{,_dirty}` exit.
    RmapExit,
}
use Ev::*;

const ALL: u64 = TLB_FLUSH_ALL;
const SEND_IPI: u32 = TLB_REMOTE_SEND_IPI;
const LOCAL: u32 = TLB_LOCAL_SHOOTDOWN;
const LOCAL_MM: u32 = TLB_LOCAL_MM_SHOOTDOWN;

#[derive(Default)]
struct Replay {
    counts: PassDelta,
    closed: Vec<Closed>,
    runs: Vec<FanoutRun>,
}

/// Feed `events` to one pass the way the eBPF programs do (tracepoint tier unless `precise`),
/// then end the pass.
fn replay(precise: bool, events: &[Ev]) -> Replay {
    let mut ep = FlushEpisode::IDLE;
    let mut r = Replay::default();
    for &e in events {
        let closed = match e {
            Tlb(reason, _) if precise => {
                ep.on_tlb_flush_precise(&mut r.counts, reason);
                None
            }
            Tlb(reason, pages) => ep.on_tlb_flush(&mut r.counts, reason, pages),
            Csd if ep.is_open() => {
                ep.targets += 1;
                None
            }
            Ipi(n) if ep.is_open() => {
                ep.ipis += n;
                None
            }
            Csd | Ipi(_) => None,
            Pageout if precise => None,
            Pageout => ep.on_pageout(&mut r.counts),
            BatchEntry(dirty, cands, fill) => ep.open(&mut r.counts, dirty, cands, fill),
            BatchExit if ep.is_open() => ep.close(&mut r.counts, false),
            BatchExit => None,
            RmapEntry(dirty, pending, fill) if ep.rmap_flush_opens(pending) => {
                ep.open(&mut r.counts, dirty, u64::MAX, fill)
            }
            RmapEntry(..) => None,
            RmapExit if ep.is_open() => ep.close(&mut r.counts, false),
            RmapExit => None,
        };
        r.note(closed);
    }
    let closed = ep.close(&mut r.counts, false);
    r.note(closed);
    r.runs.extend(ep.take_run());
    r
}

impl Replay {
    fn note(&mut self, c: Option<Closed>) {
        if let Some(c) = c {
            self.runs.extend(c.ended_run);
            self.closed.push(c);
        }
    }
    fn flushes(&self) -> (u32, u32, u32) {
        let c = &self.counts;
        (c.dirty_flushes, c.batch_flushes, c.immediate_flushes)
    }
}

/// 6.18.44, dirty anon folio, mm on two CPUs: the flush before `pageout()` (the local leg's
/// pages read 0 or -1).
const DIRTY_TWO_CPUS: [Ev; 5] = [Tlb(SEND_IPI, ALL), Csd, Ipi(1), Tlb(LOCAL, 0), Pageout];

#[test]
fn dirty_flush_before_pageout_is_dirty() {
    let r = replay(false, &DIRTY_TWO_CPUS);
    assert_eq!(r.flushes(), (1, 0, 0));
    assert_eq!((r.counts.fanout_targets, r.counts.ipis), (1, 1));
    assert_eq!(r.counts.flushes_without_ipi, 0);
    assert_eq!(r.closed.len(), 1);
    assert!(r.closed[0].dirty);
    assert_eq!(
        r.closed[0].candidates,
        u64::MAX,
        "not observable on this tier"
    );
}

#[test]
fn flush_not_followed_by_pageout_is_a_batch_flush() {
    // Clean file folios: the free batch flush at the end of shrink_folio_list.
    let r = replay(false, &[Tlb(SEND_IPI, ALL), Csd, Ipi(1), Tlb(LOCAL, 0)]);
    assert_eq!(r.flushes(), (0, 1, 0));
    // A pageout after an unrelated event does not turn it dirty.
    let r = replay(
        false,
        &[
            Tlb(SEND_IPI, ALL),
            Tlb(LOCAL, 0),
            Tlb(SEND_IPI, ALL),
            Tlb(LOCAL, 0),
            Pageout,
        ],
    );
    assert_eq!(r.flushes(), (1, 1, 0));
}

#[test]
fn local_only_batched_flush() {
    // The batch held only this CPU (the other thread's CPU was idle or lazy): reason 2 alone.
    let r = replay(false, &[Tlb(LOCAL, 0), Pageout]);
    assert_eq!(r.flushes(), (1, 0, 0));
    assert_eq!(r.counts.flushes_without_ipi, 1);
}

#[test]
fn immediate_flushes_are_not_batched() {
    // should_defer_flush() said no: flush_tlb_mm_range, ranged remote leg then local leg.
    let r = replay(false, &[Tlb(SEND_IPI, 1), Csd, Ipi(1), Tlb(LOCAL_MM, 1)]);
    assert_eq!(r.flushes(), (0, 0, 1));
    assert_eq!(
        r.counts.fanout_targets, 0,
        "an immediate flush's targets are not a batch's"
    );
    // An mm on this CPU only (6.18.44: the anon workload's last thread, `pages:1 reason:local
    // MM shootdown` right before its write_folio).
    assert_eq!(replay(false, &[Tlb(LOCAL_MM, 1)]).flushes(), (0, 0, 1));
    // A full mm flush (pages = ALL) whose local leg says mm: taken back from the batch count.
    let r = replay(false, &[Tlb(SEND_IPI, ALL), Csd, Tlb(LOCAL_MM, ALL)]);
    assert_eq!(r.flushes(), (0, 0, 1));
    assert!(r.closed.is_empty());
}

#[test]
fn an_immediate_flush_closes_a_batch_left_open() {
    let r = replay(
        false,
        &[
            Tlb(SEND_IPI, ALL),
            Tlb(LOCAL, 0),
            Tlb(SEND_IPI, 1),
            Tlb(LOCAL_MM, 1),
            Pageout,
        ],
    );
    assert_eq!(
        r.flushes(),
        (0, 1, 1),
        "the pageout came after the immediate flush"
    );
}

#[test]
fn tracepoint_tier_thp_swapout_on_6_18() {
    // A dirty PMD THP in a pass of 512 pages: a full mm flush (its local leg is reason 3, with
    // pages -1: flush_tlb_mm_range over the huge range), then the batched flush before the
    // THP's pageout (local leg reason 2).
    let seq = [
        Tlb(SEND_IPI, ALL),
        Csd,
        Ipi(1),
        Tlb(LOCAL_MM, ALL),
        Tlb(SEND_IPI, ALL),
        Csd,
        Ipi(1),
        Tlb(LOCAL, ALL),
        Pageout,
    ];
    let r = replay(false, &seq);
    assert_eq!(r.flushes(), (1, 0, 1));
    assert_eq!(
        (r.counts.fanout_targets, r.counts.ipis),
        (1, 1),
        "only the batch's"
    );
}

#[test]
fn precise_tier_uses_batch_boundaries() {
    // 6.12.118 precise tier: arch_tlbbatch_flush entry/exit around the legs; the legs and the
    // pageout change nothing, the entry says dirty and how many folios the batch covered.
    let seq = [
        BatchEntry(true, 3, 1),
        Tlb(SEND_IPI, ALL),
        Csd,
        Csd,
        Ipi(2),
        Tlb(LOCAL, 0),
        BatchExit,
        Pageout,
        BatchEntry(false, 3, 31),
        Tlb(SEND_IPI, ALL),
        Csd,
        Ipi(1),
        Tlb(LOCAL, 0),
        BatchExit,
    ];
    let r = replay(true, &seq);
    assert_eq!(r.flushes(), (1, 1, 0));
    assert_eq!(r.counts.fanout_candidates, 6);
    assert_eq!(r.counts.fanout_targets, 3);
    assert_eq!(r.counts.ipis, 3);
    let fills: Vec<u32> = r.closed.iter().map(|c| c.batch_fill).collect();
    assert_eq!(fills, [1, 31]);
}

#[test]
fn precise_tier_counts_immediate_flushes_outside_the_batch() {
    let seq = [
        Tlb(SEND_IPI, 1),
        Tlb(LOCAL_MM, 1), // remote + local leg: one flush
        Tlb(LOCAL_MM, 1), // an mm on this CPU only
        BatchEntry(false, 1, 4),
        Tlb(SEND_IPI, ALL),
        Tlb(LOCAL_MM, 1), // inside arch_tlbbatch_flush: not immediate
        BatchExit,
    ];
    let r = replay(true, &seq);
    assert_eq!(r.flushes(), (0, 1, 2));
}

#[test]
fn equal_fanouts_are_one_run() {
    let one = [Tlb(SEND_IPI, ALL), Csd, Ipi(1), Tlb(LOCAL, 0)];
    let two = [Tlb(SEND_IPI, ALL), Csd, Csd, Ipi(2), Tlb(LOCAL, 0)];
    let mut seq = Vec::new();
    for _ in 0..3 {
        seq.extend_from_slice(&one);
    }
    seq.extend_from_slice(&two);
    seq.extend_from_slice(&one);
    let r = replay(false, &seq);
    let runs: Vec<(u32, u32, u32)> = r.runs.iter().map(|x| (x.targets, x.ipis, x.n)).collect();
    assert_eq!(runs, [(1, 1, 3), (2, 2, 1), (1, 1, 1)]);
    let n: u32 = r.runs.iter().map(|x| x.n).sum();
    assert_eq!(
        n, r.counts.batch_flushes,
        "every flush lands in the histograms once"
    );
}

#[test]
fn flushes_outside_a_pass() {
    let run = |events: &[(u32, u64)]| {
        let mut open = EPISODE_NONE;
        events
            .iter()
            .map(|&(r, p)| outside_pass_flush(&mut open, r, p))
            .sum::<u64>()
    };
    // Migration's batched flush: counted once, when its local leg closes it.
    assert_eq!(run(&[(SEND_IPI, ALL), (LOCAL, 0)]), 1);
    assert_eq!(run(&[(SEND_IPI, ALL)]), 0, "not decided yet");
    // Without a local leg (the flushing CPU not in the batch): decided by the next event.
    assert_eq!(run(&[(SEND_IPI, ALL), (SEND_IPI, 8), (LOCAL_MM, 8)]), 1);
    // A local-only batched flush.
    assert_eq!(run(&[(LOCAL, 0)]), 1);
    // A full mm flush (6.18.44, at the workload's exit: reason 4 pages -1, csd, ipi, reason 3
    // pages -1): never counted, so the counter never goes down.
    assert_eq!(run(&[(SEND_IPI, ALL), (LOCAL_MM, ALL)]), 0);
    // Ranged mm flushes are never counted.
    assert_eq!(run(&[(SEND_IPI, 8), (LOCAL_MM, 8), (LOCAL_MM, 1)]), 0);
}

#[test]
fn estimated_fill_shares_the_folios() {
    let mut c = PassDelta {
        dirty_flushes: 3,
        batch_flushes: 2,
        folios_reclaimed: 10,
        ..Default::default()
    };
    let f = estimated_batch_fill(&c);
    assert_eq!(f, [(1, 3), (3, 1), (4, 1)]);
    let observations: u64 = f.iter().map(|x| x.1).sum();
    let folios: u64 = f.iter().map(|x| x.0 * x.1).sum();
    assert_eq!(observations, 5, "one per flush");
    assert_eq!(folios, 10, "every reclaimed folio in one batch");
    c.batch_flushes = 0;
    assert_eq!(estimated_batch_fill(&c), [(1, 3), (0, 0), (0, 0)]);
    c.dirty_flushes = 12;
    c.batch_flushes = 1;
    assert_eq!(
        estimated_batch_fill(&c)[1],
        (0, 1),
        "more dirty flushes than folios"
    );
}

#[test]
fn unmatched_pages_of_a_pass() {
    assert_eq!(unmatched_pages(512, 512, true), 0);
    assert_eq!(unmatched_pages(512, 513, true), 1, "an extra order-0 free");
    assert_eq!(unmatched_pages(31, 0, false), 31, "known only from its end");
}

/// arm64 (Debian 6.12.118): `try_to_unmap_flush` inlined into `try_to_unmap_flush_dirty`, a
/// dirty folio's flush before its pageout, then the end-of-list flush of the clean rest.
#[test]
fn arm64_inlined_dirty_flush_then_batch_flush() {
    let r = replay(
        true,
        &[
            RmapEntry(true, true, 1),
            RmapExit,
            Pageout,
            RmapEntry(false, true, 30),
            RmapExit,
        ],
    );
    assert_eq!(r.flushes(), (1, 1, 0));
    assert_eq!(r.counts.flushes_without_ipi, 2, "a broadcast sends no IPI");
    assert_eq!(r.closed[1].batch_fill, 30);
    assert_eq!(r.closed[0].candidates, u64::MAX);
}

/// Where `try_to_unmap_flush` is a call of `try_to_unmap_flush_dirty`, its entry and exit nest
/// inside the dirty flush's: one dirty flush, not a second one opened inside it.
#[test]
fn arm64_nested_try_to_unmap_flush_is_its_callers_flush() {
    let r = replay(
        true,
        &[
            RmapEntry(true, true, 1),
            RmapEntry(false, true, 0),
            RmapExit,
            RmapExit,
        ],
    );
    assert_eq!(r.flushes(), (1, 0, 0));
    assert_eq!(r.closed.len(), 1);
    assert!(r.closed[0].dirty);
    assert_eq!(r.closed[0].batch_fill, 1);
}

/// Nothing pending (a clean batch for the dirty check, an empty one at the end of the list):
/// no flush.
#[test]
fn arm64_nothing_pending_is_no_flush() {
    let r = replay(
        true,
        &[
            RmapEntry(true, false, 0),
            RmapExit,
            RmapEntry(false, false, 0),
            RmapExit,
        ],
    );
    assert_eq!(r.flushes(), (0, 0, 0));
}
