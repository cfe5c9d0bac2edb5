//! Which guest runs `cargo xtask vm` makes: the default matrix (amd64 and arm64 rows), the
//! selection its arguments ask for, each run's name and the arguments of its measured
//! `reclaim-trace summary`.

use super::{
    VmArgs,
    kernel::{self, Kernel},
};
use crate::arch::Arch;

/// How long the measured run traces (under TCG a guest second is slow; ≈20 s fits the budget).
const RUN_SECONDS: u32 = 20;
/// The default matrix: every kernel with anon; the file workload where `shrink_folio_list`
/// flushes the free batch every 31 folios (6.12+). sid's anon run is made twice: with its
/// default MGLRU (on), where pageout() keeps a few percent of the folios it was handed after
/// their dirty flush, and with the classic LRU, where every dirty flush is followed by its
/// pageout (6.1 runs the classic LRU by default, 6.12 and 7.2 MGLRU). fentry loads on all
/// three, so the kprobe flavour of the precise tier gets a run of its own on the oldest kernel.
const MATRIX: &[(&str, &str, Option<&str>, &[&str])] = &[
    ("6.1", "anon", None, &[]),
    ("6.12", "anon", None, &[]),
    // MGLRU off: dirty flushes must then match pageouts within 3% (with it on, pageout()
    // keeps some folios after their dirty flush; see vm/check.rs).
    ("6.12", "anon", Some("off"), &[]),
    ("sid", "anon", None, &[]),
    ("sid", "anon", Some("off"), &[]),
    ("6.1", "anon", None, &["--probe-mode", "kprobe"]),
    ("6.12", "file", None, &[]),
    ("sid", "file", None, &[]),
    // Large folios: PMD-size THP everywhere (6.1 has no other size), 64 kB mTHP where the
    // per-size controls exist (6.8+).
    ("6.1", "thp", None, &[]),
    ("6.12", "mthp", None, &[]),
    ("sid", "thp", None, &[]),
];

/// The arm64 rows of the default matrix: dirty anon runs (one flush per folio, each dirty
/// flush before its pageout; with MGLRU on, 6.12's default, pageout() keeps a share of the
/// folios after their flush, with it off every dirty flush has its pageout) and a clean file
/// run (flushes batching 31 folios). The kprobe flavour reads its arguments from arm64's
/// `pt_regs`, a layout of its own: it gets a run too.
const MATRIX_ARM64: &[(&str, &str, Option<&str>, &[&str])] = &[
    ("6.12", "anon", None, &[]),
    ("6.12", "anon", Some("off"), &[]),
    ("6.12", "file", None, &[]),
    ("6.12", "anon", None, &["--probe-mode", "kprobe"]),
];

/// One guest run of the selection.
pub(super) struct RunSpec {
    pub arch: Arch,
    pub kernel: String,
    pub workload: String,
    pub mglru: Option<String>,
    pub extra: Vec<String>,
}

/// The runs `args` ask for.
pub(super) fn selection(args: &VmArgs) -> Vec<RunSpec> {
    let spec = |arch: Arch, k: &str, w: &str, m: Option<String>, extra: Vec<String>| RunSpec {
        arch,
        kernel: k.to_string(),
        workload: w.to_string(),
        mglru: m,
        extra,
    };
    let rows = |arch: Arch, rows: &[(&str, &str, Option<&str>, &[&str])]| -> Vec<RunSpec> {
        rows.iter()
            .map(|(k, w, m, x)| {
                spec(
                    arch,
                    k,
                    w,
                    m.map(String::from),
                    x.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect()
    };
    let w = args.workload.clone().unwrap_or_else(|| "anon".into());
    let default_run = args.workload.is_none() && args.mglru.is_none() && args.args.is_empty();
    match (&args.kernel, args.arch) {
        (None, None) if default_run => {
            let mut all = rows(Arch::Amd64, MATRIX);
            all.extend(rows(Arch::Arm64, MATRIX_ARM64));
            all
        }
        (None, Some(Arch::Arm64)) if default_run => rows(Arch::Arm64, MATRIX_ARM64),
        (None, Some(Arch::Amd64)) if default_run => rows(Arch::Amd64, MATRIX),
        (None, arch) => {
            let arch = arch.unwrap_or_default();
            kernel::RELEASES
                .iter()
                .filter(|r| arch == Arch::Amd64 || r.label != "6.1")
                .map(|r| spec(arch, r.label, &w, args.mglru.clone(), args.args.clone()))
                .collect()
        }
        (Some(k), arch) => vec![spec(
            arch.unwrap_or_default(),
            k,
            &w,
            args.mglru.clone(),
            args.args.clone(),
        )],
    }
}

/// Name and folder name of a run (arm64 runs start with `arm64 `).
pub(super) fn run_name(
    k: &Kernel,
    workload: &str,
    lru_gen: Option<&str>,
    extra: &[String],
) -> (String, String) {
    let mglru = match lru_gen {
        Some("y") => " (MGLRU on)",
        Some(_) => " (MGLRU off)",
        None => "",
    };
    let variant = format!(
        "{mglru}{}",
        if extra.is_empty() {
            String::new()
        } else {
            format!(" ({})", extra.join(" "))
        }
    );
    let label = match k.arch {
        Arch::Amd64 => k.label.clone(),
        arch => format!("{arch} {}", k.label),
    };
    let name = format!("{label}/{workload}{variant}");
    let slug: String = format!("{label}-{workload}{variant}")
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    (name, slug)
}

pub(super) fn tool_args(
    arch: Arch,
    workload: &str,
    smp: u32,
    extra: &[String],
) -> (Vec<String>, bool) {
    if extra.first().is_some_and(|a| !a.starts_with('-')) {
        return (extra.to_vec(), false);
    }
    // mthp is the thp workload on a guest whose THP settings allow 64 kB folios only.
    let tool_workload = if workload == "mthp" { "thp" } else { workload };
    let mut a: Vec<String> = [
        "summary",
        "--duration",
        &format!("{RUN_SECONDS}s"),
        "--workload",
        tool_workload,
        "--threads",
        &smp.to_string(),
        "--json",
        "/tmp/summary.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if workload != "file" {
        a.push("--zram".into());
        if arch == Arch::Arm64 {
            // The arm64 guest's workload touches ~1,500 pages/s (TCG; every reclaim unmap's
            // TLBI stops all vCPUs): in 20 s the default 320 MiB in 128 MiB would barely
            // fill the cgroup. A smaller cgroup reclaims from the third second on.
            a.extend(["--size", "64M", "--memcg-limit", "16M"].map(String::from));
        }
    } else {
        // The data file is written inside the traced window, and under TCG writing the
        // workload's default size (320 MiB) to the virtio disk takes most of the 20 s, leaving
        // nothing to reclaim. A smaller cgroup and file reclaim as much in a fraction of the time.
        a.extend(
            [
                "--file-dir",
                "/mnt",
                "--memcg-limit",
                "32M",
                "--size",
                "96M",
            ]
            .map(String::from),
        );
    }
    a.extend(extra.iter().cloned());
    (a, true)
}
