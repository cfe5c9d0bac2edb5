//! Records lost to a full ring buffer are counted and shown, and lose nothing of the totals,
//! which the kernel counts itself.

mod common;

use common::*;
use reclaim_trace::export::text::thousands;

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn a_tiny_ring_buffer_drops_records_but_not_totals() {
    let Some(_lock) = live() else { return };
    let before = traces();
    // One page: less than one batch of 16 pass records waits before the reader's next drain.
    let m = measure(
        "tiny-ring.json",
        &[
            "--workload",
            "anon",
            "--zram",
            "--duration",
            "5s",
            "--ring-buffer-size",
            "4K",
        ],
    );
    let drops = u(&m.s, "/drops/ringbuf");
    let passes = u(&m.s, "/totals/passes");
    eprintln!("{drops} of {passes} pass records dropped");
    assert!(
        drops > passes / 2,
        "a 4 KiB ring buffer should drop most records: {drops}"
    );
    assert!(
        m.text
            .contains(&format!("drops: ring buffer {}", thousands(drops))),
        "{}",
        m.text
    );
    let pgsteal = delta(&m.v0, &m.v1, "pgsteal_anon") + delta(&m.v0, &m.v1, "pgsteal_file");
    within(
        "pages reclaimed vs pgsteal, with drops",
        u(&m.s, "/totals/pages_reclaimed"),
        pgsteal,
        0.01,
    );
    assert_eq!(traces(), before, "left behind");
}
