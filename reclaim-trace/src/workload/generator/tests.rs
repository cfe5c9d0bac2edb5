//! The sweeps on a real mapping: what is verified, what a lost write looks like.

use super::*;

const PAGES: usize = 16;
const WRITE: Touch = Touch {
    write: true,
    discard: false,
    chunk: 0,
};
const READ: Touch = Touch {
    write: false,
    ..WRITE
};

fn region() -> (Region, std::ops::Range<usize>) {
    let len = PAGES * page_size();
    (map_anon(len, 0).expect("mmap"), 0..len)
}

#[test]
fn a_clean_run_verifies_every_page_after_the_first_sweep() {
    let (r, range) = region();
    let out = touch_loop(&r, range, WRITE, 7, Some(3), &|| false);
    assert_eq!(out.pages_touched, 3 * PAGES as u64);
    assert_eq!(out.pages_verified, 2 * PAGES as u64);
    assert_eq!(out.corrupt_pages, 0);
    assert!(out.first_corruption.is_none());
}

#[test]
fn a_word_changed_between_sweeps_is_reported_with_its_offset() {
    let (r, range) = region();
    let stop = || false;
    let mut s = Sweeper::new(7);
    assert!(s.sweep(&r, range.clone(), WRITE, &stop));
    // What a write lost by reclaim looks like: the page holds something else.
    let off = 5 * page_size();
    // SAFETY: inside the live mapping.
    unsafe { *r.base.add(off).cast::<u64>() ^= 1 };
    assert!(s.sweep(&r, range.clone(), WRITE, &stop));
    assert!(s.sweep(&r, range, WRITE, &stop));
    assert_eq!(s.out.pages_verified, 2 * PAGES as u64);
    assert_eq!(s.out.corrupt_pages, 1);
    let first = s.out.first_corruption.expect("reported");
    assert!(first.contains(&format!("{off:#x}")), "{first}");
}

#[test]
fn chunks_dropped_and_rewritten_are_checked_before_they_go() {
    let (r, range) = region();
    let stop = || false;
    let thp = Touch {
        discard: true,
        chunk: 4 * page_size(),
        ..WRITE
    };
    let mut s = Sweeper::new(7);
    assert!(s.sweep(&r, range.clone(), thp, &stop));
    let off = 9 * page_size();
    // SAFETY: inside the live mapping.
    unsafe { *r.base.add(off).cast::<u64>() ^= 1 };
    assert!(s.sweep(&r, range.clone(), thp, &stop));
    assert!(s.sweep(&r, range, thp, &stop));
    assert_eq!(s.out.pages_touched, 3 * PAGES as u64);
    assert_eq!(s.out.pages_verified, 2 * PAGES as u64);
    assert_eq!(s.out.corrupt_pages, 1, "{:?}", s.out.first_corruption);
    assert!(
        s.out
            .first_corruption
            .unwrap()
            .contains(&format!("{off:#x}"))
    );
}

#[test]
fn readers_verify_nothing_and_totals_split_by_role() {
    let (r, range) = region();
    let reader = touch_loop(&r, range, READ, 7, Some(2), &|| false);
    assert_eq!(reader.pages_verified, 0);
    let writer = ThreadOutcome {
        pages_touched: 10,
        pages_verified: 4,
        corrupt_pages: 1,
        first_corruption: Some("x".into()),
    };
    let t = WorkloadResult::from_threads(2.0, &[(true, writer), (false, reader)]);
    assert_eq!((t.pages_written, t.pages_read), (10, 2 * PAGES as u64));
    assert_eq!(t.pages_per_s_by_thread, vec![5.0, PAGES as f64]);
    assert!(t.corruption().is_some_and(|e| e.contains("1 of 4")));
}
