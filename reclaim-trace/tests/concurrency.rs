//! Two reclaim-trace runs on one machine at once: neither uses, nor removes, what the other
//! created, and both trace the whole machine.

mod common;

use std::{thread, time::Duration};

use common::*;
use serde_json::Value;

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn two_workload_runs_at_once_each_create_and_remove_their_own_swap_and_cgroup() {
    let Some(_lock) = live() else { return };
    let before = traces();
    let v0 = vmstat();
    let start = |secs: &str| spawn_anon_summary(secs, &["--json", "-"]);
    // The second starts while the first's zram swap is active, and ends first.
    let first = start("12s");
    thread::sleep(Duration::from_secs(3));
    let second = start("5s");
    let outs = [first, second].map(|c| c.wait_with_output().unwrap());
    let v1 = vmstat();
    let pgsteal = ["pgsteal_anon", "pgsteal_file"]
        .iter()
        .map(|k| v1[*k] - v0[*k])
        .sum::<u64>();
    let mut swaps = Vec::new();
    for (name, o) in ["first", "second"].iter().zip(&outs) {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {e}");
        let s: Value = serde_json::from_slice(&o.stdout).unwrap();
        let swap = s["workload"]["swap"].as_str().unwrap_or("").to_string();
        let pages = s["totals"]["pages_reclaimed"].as_u64().unwrap();
        eprintln!("{name}: swap {swap}; pages reclaimed {pages} (machine, both runs: {pgsteal})");
        assert!(
            swap.contains("created for this run"),
            "{name} used another's swap: {swap}"
        );
        // Both trace the whole machine: each sees its own workload's reclaim and, while
        // they overlap, the other's; never more than the kernel counted.
        assert!(
            pages > 10_000 && pages <= pgsteal,
            "{name}: {pages} of {pgsteal}"
        );
        swaps.push(swap.split_whitespace().next().unwrap_or("").to_string());
    }
    assert_ne!(swaps[0], swaps[1], "one zram device for both runs");
    assert_eq!(traces(), before, "left behind");
}
