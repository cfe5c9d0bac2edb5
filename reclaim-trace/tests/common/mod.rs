//! Helpers for the live-kernel tests: run the real binary, read independent kernel counters
//! around it, and check that nothing is left behind.
#![allow(dead_code)]

pub mod schema;
pub mod serve;

use std::{
    collections::BTreeMap,
    fs,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_reclaim-trace");

/// Whether live tests run: `RECLAIM_TRACE_LIVE=require` (cargo xtask test) makes missing
/// privileges a failure; `skip` skips; unset runs them when root and says so loudly otherwise.
pub fn live() -> Option<LiveLock> {
    live_allowed().then(LiveLock::acquire)
}

/// Live tests compare the tool with system-wide counters: two at once (from parallel test
/// binaries, or other checkouts on the same machine) would pollute each other's deltas.
/// Holding this lock serialises them machine-wide.
pub struct LiveLock {
    _file: fs::File,
}

impl LiveLock {
    fn acquire() -> LiveLock {
        use std::os::fd::AsRawFd as _;
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open("/run/reclaim-trace-live.lock")
            .expect("open /run/reclaim-trace-live.lock");
        // SAFETY: flock on an open fd; blocks until the other live test finishes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock /run/reclaim-trace-live.lock");
        LiveLock { _file: file }
    }
}

fn live_allowed() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let mode = std::env::var("RECLAIM_TRACE_LIVE").unwrap_or_default();
    match (mode.as_str(), root) {
        ("skip", _) => {
            eprintln!("SKIPPED live-kernel test: RECLAIM_TRACE_LIVE=skip");
            false
        }
        ("require", false) => panic!("live-kernel tests need root (RECLAIM_TRACE_LIVE=require)"),
        (_, true) => true,
        (_, false) => {
            eprintln!(
                "SKIPPED live-kernel test on {}: not root (eBPF programs cannot be loaded)",
                kernel_release()
            );
            false
        }
    }
}

/// Say that a test skipped itself and why: on stderr, and appended to the file named by
/// `RECLAIM_TRACE_SKIP_LOG`, which `cargo xtask test` lists at the end of its run (a skip
/// never passes silently there).
pub fn skipped(why: &str) {
    eprintln!("SKIPPED: {why}");
    if let Ok(path) = std::env::var("RECLAIM_TRACE_SKIP_LOG") {
        use std::io::Write as _;
        let test = std::thread::current().name().unwrap_or("?").to_string();
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub fn vmstat() -> BTreeMap<String, u64> {
    parse_kv(&fs::read_to_string("/proc/vmstat").unwrap())
}

/// `key value` lines (/proc/vmstat, memory.stat), the tool's own parser.
pub use reclaim_trace::workload::cgroup::parse_kv;

/// Σ over CPUs of the `TLB` row of /proc/interrupts (remote flushes received).
pub fn tlb_interrupts() -> u64 {
    let text = fs::read_to_string("/proc/interrupts").unwrap();
    reclaim_trace_common::procfs::tlb_interrupts(&text).unwrap_or(0)
}

pub fn delta(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>, k: &str) -> u64 {
    b.get(k).copied().unwrap_or(0) - a.get(k).copied().unwrap_or(0)
}

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run reclaim-trace")
}

/// `summary --workload anon --zram --duration DURATION EXTRA...` started in the background,
/// its output piped (read it with `wait_with_output`).
pub fn spawn_anon_summary(duration: &str, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args([
            "summary",
            "--workload",
            "anon",
            "--zram",
            "--duration",
            duration,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start reclaim-trace summary")
}

/// One `summary --json` run with the workload (`args` after `summary`), /proc/vmstat read just
/// before and after it: the summary, the two vmstat readings and the text output.
pub struct Measured {
    pub s: serde_json::Value,
    pub v0: BTreeMap<String, u64>,
    pub v1: BTreeMap<String, u64>,
    pub text: String,
}

pub fn measure(name: &str, args: &[&str]) -> Measured {
    let out = tmp(name);
    let mut all = vec!["summary"];
    all.extend_from_slice(args);
    all.extend(["--json", out.to_str().unwrap()]);
    let v0 = vmstat();
    let o = run(&all);
    let v1 = vmstat();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    eprintln!("{text}");
    Measured {
        s: json(&out),
        v0,
        v1,
        text,
    }
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("reclaim-trace-test-{}", std::process::id()));
    fs::create_dir_all(&d).unwrap();
    d.join(name)
}

pub fn json(path: &PathBuf) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

pub fn u(v: &serde_json::Value, ptr: &str) -> u64 {
    v.pointer(ptr)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("{ptr} missing or not an integer"))
}

pub fn f(v: &serde_json::Value, ptr: &str) -> f64 {
    v.pointer(ptr)
        .and_then(|x| x.as_f64())
        .unwrap_or_else(|| panic!("{ptr} missing or not a number"))
}

/// Pages reclaimed, less the passes that `pgsteal_*` does not count: reclaim_pages() (DAMON's
/// pageout action, which is active on the CI machines, and MADV_PAGEOUT) and window-less
/// passes.
pub fn lru_pages_reclaimed(s: &serde_json::Value) -> u64 {
    u(s, "/totals/pages_reclaimed")
        - u(s, "/by_context/reclaim_pages/pages_reclaimed")
        - u(s, "/by_context/other/pages_reclaimed")
}

/// Assert |got - want| <= tol * want.
pub fn within(what: &str, got: u64, want: u64, tol: f64) {
    let diff = got.abs_diff(want) as f64;
    assert!(
        want > 0 && diff <= tol * want as f64,
        "{what}: tool {got} vs kernel {want} (off by {:.2}%, allowed {:.1}%)",
        100.0 * diff / want.max(1) as f64,
        tol * 100.0
    );
    eprintln!(
        "{what}: tool {got} vs kernel {want} ({:.3}% apart)",
        100.0 * diff / want as f64
    );
}

/// What reclaim-trace may leave behind: its cgroups, its swap devices, its BPF programs.
#[derive(Debug, PartialEq, Eq)]
pub struct Traces {
    pub cgroups: Vec<String>,
    pub swaps: Vec<String>,
    pub programs: usize,
}

pub fn traces() -> Traces {
    let mut cgroups = Vec::new();
    for root in [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
    ] {
        if let Ok(rd) = fs::read_dir(root) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("reclaim-trace-") {
                    cgroups.push(format!("{root}/{n}"));
                }
            }
        }
    }
    let swaps = fs::read_to_string("/proc/swaps")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    // Our programs, every one of them (the kernel keeps the first 15 bytes of a name).
    let names: Vec<&str> = reclaim_trace::programs::PROGRAMS
        .iter()
        .map(|p| &p.name[..p.name.len().min(15)])
        .collect();
    let ours = || {
        aya::programs::loaded_programs()
            .flatten()
            .filter(|p| p.name_as_str().is_some_and(|n| names.contains(&n)))
            .count()
    };
    // The kernel frees a program after its last fd and link are gone and an RCU grace period
    // has passed: right after the tool exits, its programs may still be listed for a moment
    // (seen on 6.18.44 with raw tracepoint links). A leak stays; give the kernel 5 s.
    let mut programs = ours();
    for _ in 0..50 {
        if programs == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        programs = ours();
    }
    Traces {
        cgroups,
        swaps,
        programs,
    }
}

/// The row of `metric` in `compare --json` output, after checking the output against its
/// schema.
pub fn compare_row(c: &serde_json::Value, metric: &str) -> serde_json::Value {
    schema::validate("compare-v1.schema.json", c);
    c["rows"]
        .as_array()
        .expect("compare JSON has rows")
        .iter()
        .find(|r| r["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} row in {c}"))
        .clone()
}
