//! SIGKILL at any moment, then a new run: nothing stays attached, no output file looks
//! complete when it is not, and the next run removes (and reports) the cgroup and zram device
//! the killed one left.

mod common;

use std::{fs, thread, time::Duration};

use common::*;

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn sigkill_in_every_phase_then_a_rerun_cleans_up() {
    let Some(_lock) = live() else { return };
    let before = traces();
    let out = tmp("killed.json");
    // Loading and attaching (the first ~0.3 s), tracing with the workload running, and around
    // the end of the run, where the JSON is written.
    for after_ms in [
        50, 150, 400, 2_500, 4_100, 4_600, 5_000, 5_150, 5_250, 5_400,
    ] {
        let _ = fs::remove_file(&out);
        let mut child = spawn_anon_summary("4s", &["--json", out.to_str().unwrap()]);
        thread::sleep(Duration::from_millis(after_ms));
        let _ = child.kill();
        let _ = child.wait();
        // The kernel detaches a dead process's programs with its last file descriptor.
        assert_eq!(
            traces().programs,
            0,
            "programs still attached after a kill at {after_ms} ms"
        );
        // The output is complete or absent: never a truncated file under its name.
        if let Ok(text) = fs::read_to_string(&out) {
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| {
                panic!(
                    "killed at {after_ms} ms, {} is not complete JSON: {e}",
                    out.display()
                )
            });
        }
        // The next run reports and removes what the killed one left.
        let left = traces();
        let o = run(&[
            "summary",
            "--workload",
            "anon",
            "--zram",
            "--duration",
            "1s",
        ]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success(),
            "rerun after a kill at {after_ms} ms: {e}"
        );
        if !left.cgroups.is_empty() {
            assert!(
                e.contains("left behind by reclaim-trace pid"),
                "not reported: {e}"
            );
        }
        assert_eq!(
            traces(),
            before,
            "left behind after a kill at {after_ms} ms and a rerun"
        );
        eprintln!(
            "killed at {after_ms} ms: left {} cgroups, {} swaps; json {}",
            left.cgroups.len(),
            left.swaps.len().saturating_sub(before.swaps.len()),
            if out.exists() { "complete" } else { "absent" }
        );
    }
}
