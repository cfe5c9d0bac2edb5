//! The workload dies under the run: OOM-killed by its memory cgroup with swap full, killed
//! from outside, or its cgroup removed from outside. Each run still prints its summary, then
//! one line that says which it was, exits 2, and leaves nothing behind.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;

/// The one error line of a failed run (the text summary is on stdout).
fn error_line(o: &Output) -> String {
    let e = String::from_utf8_lossy(&o.stderr);
    let errors: Vec<&str> = e.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "not one error line: {e}");
    errors[0].to_string()
}

/// The memory cgroup (v2, or this machine's v1 memory hierarchy) a running reclaim-trace
/// `pid` made for its workload, once its workload is in it.
fn workload_cgroup(pid: u32) -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/memory"]
        .iter()
        .map(|root| PathBuf::from(format!("{root}/reclaim-trace-{pid}")))
        .find(|p| {
            !fs::read_to_string(p.join("cgroup.procs"))
                .unwrap_or_default()
                .is_empty()
        })
}

/// SIGKILL everything in `cg` (`cgroup.kill` where v2 has it).
fn kill_all(cg: &Path) {
    if fs::write(cg.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines() {
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
    }
}

/// The memory controller is on cgroup v2 (which counts failed swap allocations per group).
fn memory_on_v2() -> bool {
    fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
}

/// A zram swap of `mib` MiB, removed on drop.
struct SmallSwap(String);

impl SmallSwap {
    fn new(mib: u32) -> SmallSwap {
        let n = fs::read_to_string("/sys/class/zram-control/hot_add")
            .expect("zram-control")
            .trim()
            .to_string();
        fs::write(format!("/sys/block/zram{n}/disksize"), format!("{mib}M")).unwrap();
        let dev = format!("/dev/zram{n}");
        for cmd in [["mkswap", dev.as_str()], ["swapon", dev.as_str()]] {
            let st = Command::new(cmd[0])
                .arg(cmd[1])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "{cmd:?}");
        }
        SmallSwap(n)
    }
}

impl Drop for SmallSwap {
    fn drop(&mut self) {
        let _ = Command::new("swapoff")
            .arg(format!("/dev/zram{}", self.0))
            .status();
        let _ = fs::write("/sys/class/zram-control/hot_remove", &self.0);
    }
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn oom_with_swap_full_is_named() {
    let Some(_lock) = live() else { return };
    if !fs::read_to_string("/proc/swaps")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .all(|l| l.trim().is_empty())
    {
        skipped("oom_with_swap_full_is_named: swap already active (it needs a small one alone)");
        return;
    }
    let before = traces();
    // 16 MiB of swap for 256 MiB in a 32 MiB group: the group's OOM killer ends it.
    let swap = SmallSwap::new(16);
    let o = run(&[
        "summary",
        "--workload",
        "anon",
        "--memcg-limit",
        "32M",
        "--size",
        "256M",
        "--duration",
        "20s",
    ]);
    drop(swap);
    assert_eq!(o.status.code(), Some(2));
    let line = error_line(&o);
    assert!(
        line.contains(
            "the workload ended before the end of the run: OOM-killed by its memory cgroup"
        ) && line.contains("give it more swap"),
        "{line}"
    );
    // Failed swap allocations are counted per group on v2 only (memory.swap.events).
    if memory_on_v2() {
        assert!(
            line.contains("swap allocations failed: swap is full"),
            "{line}"
        );
    }
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("flushes per reclaimed folio"),
        "the summary is still printed"
    );
    assert_eq!(traces(), before, "left behind");
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn workload_killed_or_cgroup_removed_from_outside_is_named() {
    let Some(_lock) = live() else { return };
    let before = traces();
    for remove in [false, true] {
        let child = spawn_anon_summary("20s", &[]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let cg = loop {
            if let Some(cg) = workload_cgroup(child.id()) {
                break cg;
            }
            assert!(Instant::now() < deadline, "no workload cgroup");
            thread::sleep(Duration::from_millis(50));
        };
        thread::sleep(Duration::from_secs(2));
        kill_all(&cg);
        if remove {
            // As an operator would: kill everything in it, then remove it.
            while fs::remove_dir(&cg).is_err() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
        }
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(2));
        let line = error_line(&o);
        eprintln!("remove {remove}: {line}");
        let killed = "killed by SIGKILL from outside (not the OOM killer of its memory cgroup";
        let gone = "killed by SIGKILL, and its memory cgroup";
        // Removed: the run may have noticed the kill before the removal.
        assert!(
            line.contains(killed) || (remove && line.contains(gone)),
            "{line}"
        );
    }
    assert_eq!(traces(), before, "left behind");
}
