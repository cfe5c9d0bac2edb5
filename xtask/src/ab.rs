//! `cargo xtask ab`: judge a reclaim-flush patch end to end. Builds a baseline kernel and a
//! patched one from Debian's source (ab/kbuild.rs, cached), boots each under the `xtask vm`
//! guest with the same workload, alternating kernels run after run, checks every run against
//! the guest kernel's counters, and prints the A/B table (ab/table.rs) beside the tool's own
//! `compare` of the first runs.

mod kbuild;
mod table;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::{
    util::workspace_root,
    vm::{
        self, GuestRun, RunResult,
        check::{DirtyFlushes, KernelDeltas},
        kernel,
    },
};

#[derive(clap::Args, Debug, Clone)]
pub struct AbArgs {
    /// Debian kernel source to build (`linux-source-VERSION` of the suite `xtask vm` uses for
    /// that kernel).
    #[arg(long, default_value = "6.12", value_name = "VERSION")]
    pub kernel_src: String,
    /// Patch for the B kernel, applied in order with `patch -p1` (repeatable)
    /// [default: kernel-patches/VERSION/*.patch].
    #[arg(long = "patch", value_name = "FILE")]
    pub patches: Vec<PathBuf>,
    /// Name of the B kernel: its results folder and its `uname -r` suffix.
    #[arg(long, default_value = "patched")]
    pub name: String,
    /// Dirty folios per flush that the patch claims (checked against the passes' pageouts);
    /// 0 expects one dirty flush per folio, as on the baseline.
    #[arg(long, default_value_t = 31)]
    pub batch: u64,
    /// The B kernel is a negative control that writes dirty folios out before their TLB
    /// flush (kernel-patches/6.12-unsafe): check that the tool sees pageouts before the flush
    /// instead of checking the batching.
    #[arg(long)]
    pub expect_unsafe: bool,
    #[arg(long, default_value = "anon", value_parser = ["anon", "file"])]
    pub workload: String,
    /// Guest vCPUs (one workload thread each).
    #[arg(long, default_value_t = vm::guest::VCPUS)]
    pub smp: u32,
    /// Runs per kernel, alternating kernels.
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// MGLRU on or off in both guests [default: the kernel's default, on for 6.12].
    #[arg(long, value_parser = ["on", "off"])]
    pub mglru: Option<String>,
    /// Parallel jobs of the kernel builds [default: CPUs + 1].
    #[arg(long)]
    pub jobs: Option<u32>,
    /// Where the results go [default: target/ab].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Build (or find in the cache) both kernels and stop.
    #[arg(long)]
    pub build_only: bool,
    /// Extra arguments of the measured `reclaim-trace summary` in both guests
    /// [default for anon: --memcg-limit 48M --size 120M].
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// The measured summary's workload size when no ARGS are given: small enough that under TCG
/// each thread sweeps its slice within the run on the baseline too (at ~700 pages/s a thread),
/// so the read-back check verifies data on both kernels.
const DEFAULT_SUMMARY_ARGS: &[&str] = &["--memcg-limit", "48M", "--size", "120M"];

/// What `cargo xtask test` runs: the project's patch against the baseline with the classic
/// LRU and with MGLRU (one run per kernel), and the negative control that writes out before
/// the flush (its stale-TLB window check must see it).
pub fn test_runs() -> Vec<AbArgs> {
    let base = AbArgs {
        kernel_src: "6.12".into(),
        patches: vec![],
        name: "patched".into(),
        batch: 31,
        expect_unsafe: false,
        workload: "anon".into(),
        smp: vm::guest::VCPUS,
        runs: 1,
        mglru: Some("off".into()),
        jobs: None,
        out: Some(workspace_root().join("target/ab/mglru-off")),
        build_only: false,
        args: vec![],
    };
    let patches = workspace_root().join("kernel-patches");
    vec![
        base.clone(),
        AbArgs {
            mglru: Some("on".into()),
            out: Some(workspace_root().join("target/ab/mglru-on")),
            ..base.clone()
        },
        AbArgs {
            name: "unsafe".into(),
            expect_unsafe: true,
            patches: vec![
                patches.join("6.12/0001-mm-vmscan-one-TLB-flush-per-batch-of-dirty-folios.patch"),
                patches.join("6.12-unsafe/0001-TEST-ONLY-write-out-before-the-flush.patch"),
            ],
            out: Some(workspace_root().join("target/ab/unsafe")),
            ..base
        },
    ]
}

/// `~/.cache/reclaim-trace/ab` (or `RECLAIM_TRACE_AB_CACHE`).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RECLAIM_TRACE_AB_CACHE") {
        return PathBuf::from(d);
    }
    vm::cache_dir()
        .parent()
        .map_or_else(
            || PathBuf::from("/root/.cache/reclaim-trace"),
            Path::to_path_buf,
        )
        .join("ab")
}

fn default_patches(version: &str) -> Result<Vec<PathBuf>> {
    let dir = workspace_root().join("kernel-patches").join(version);
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("{} has no *.patch: pass --patch FILE", dir.display());
    }
    Ok(v)
}

/// The two kernels, built or found in the cache.
pub struct Kernels {
    pub baseline: kernel::Kernel,
    pub patched: kernel::Kernel,
}

pub fn build_kernels(args: &AbArgs) -> Result<Kernels> {
    let release = kernel::release(&args.kernel_src)
        .filter(|r| r.label != "sid")
        .with_context(|| {
            format!(
                "--kernel-src {}: Debian's linux-source packages are built here for 6.1 and 6.12",
                args.kernel_src
            )
        })?;
    let patches = if args.patches.is_empty() {
        default_patches(release.label)?
    } else {
        // `patch` runs in the kernel tree: the paths must not be relative to here.
        args.patches
            .iter()
            .map(|p| {
                p.canonicalize()
                    .with_context(|| format!("--patch {}: no such file", p.display()))
            })
            .collect::<Result<_>>()?
    };
    let fragment = workspace_root()
        .join("kernel-patches")
        .join(release.label)
        .join("ab.config");
    let cache = cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let src = kbuild::source(&vm::cache_dir(), &cache, release)?;
    let root = kbuild::BuildRoot::new(&cache, &src, &fragment)?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32 + 1));
    let a = root.baseline(&src, jobs)?;
    let b = root.patched(&src, &args.name, &patches, jobs)?;
    for (k, s) in [(&a.kernel, a.build_s), (&b.kernel, b.build_s)] {
        eprintln!(
            "xtask ab: kernel {} {} ({})",
            k.abi,
            if s > 0.0 {
                format!("built in {s:.0} s")
            } else {
                "from the cache".to_string()
            },
            k.vmlinuz.display()
        );
    }
    Ok(Kernels {
        baseline: a.kernel,
        patched: b.kernel,
    })
}

/// `cargo xtask ab`.
pub fn ab(tool: &Path, args: &AbArgs) -> Result<()> {
    let started = Instant::now();
    let kernels = build_kernels(args)?;
    if args.build_only {
        return Ok(());
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/ab"));
    // The guest's files are built from other working directories.
    let out = std::path::absolute(&out).context("--out")?;
    let sides = [
        ("baseline", &kernels.baseline),
        (args.name.as_str(), &kernels.patched),
    ];
    for (name, _) in sides {
        let _ = fs::remove_dir_all(out.join(name));
    }
    let results = run_sides(tool, args, &sides, &out)?;
    let rendered = write_table(args, [sides[0].0, sides[1].0], &results, &out)?;
    let first = |name: &str| out.join(name).join("run-1/summary.json");
    let (fa, fb) = (first(sides[0].0), first(sides[1].0));
    compare(tool, &fa, &fb, &out)?;
    let gates = gates(tool, args, &fa, &fb)?;
    println!(
        "\n{} vs {} ({}, {} vCPUs, MGLRU {}), {} run(s) each:\n\n{rendered}",
        kernels.baseline.abi,
        kernels.patched.abi,
        args.workload,
        args.smp,
        args.mglru.as_deref().unwrap_or("as the kernel defaults"),
        args.runs.max(1),
    );
    let mut failed: Vec<&str> = results
        .iter()
        .filter(|(_, r)| !r.passed())
        .map(|(_, r)| r.name.as_str())
        .collect();
    if gates.iter().any(|g| !g.ok) {
        failed.push("the compare --fail-if gate");
    }
    eprintln!(
        "xtask ab: {} run(s) in {:.0} s; table, compare and every run's files in {}",
        results.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    if !failed.is_empty() {
        bail!("A/B runs failed their checks: {}", failed.join(", "));
    }
    Ok(())
}

/// `--runs` guest runs of each side (0 baseline, 1 patched), alternating kernels; every run
/// checked, its kernel counter deltas written beside its summary.
fn run_sides(
    tool: &Path,
    args: &AbArgs,
    sides: &[(&str, &kernel::Kernel); 2],
    out: &Path,
) -> Result<Vec<(usize, RunResult)>> {
    let lru_gen = vm::lru_gen(args.mglru.as_deref());
    // The file workload has a size of its own in the guest (vm::tool_args).
    let extra: Vec<String> = if args.args.is_empty() && args.workload == "anon" {
        DEFAULT_SUMMARY_ARGS.iter().map(|s| s.to_string()).collect()
    } else {
        args.args.clone()
    };
    let mut results: Vec<(usize, RunResult)> = Vec::new();
    for i in 1..=args.runs.max(1) {
        // Alternate which kernel goes first, so that a drift of the host over time does not
        // always favour the same one.
        let order = if i % 2 == 1 { [0, 1] } else { [1, 0] };
        for side in order {
            let (name, k) = sides[side];
            let dirty_flushes = dirty_flushes_of(args, side);
            let r = vm::run_with_retries(
                tool,
                &GuestRun {
                    kernel: k,
                    name: format!("{name}/run-{i}"),
                    dir: out.join(name).join(format!("run-{i}")),
                    workload: &args.workload,
                    lru_gen,
                    extra: &extra,
                    smp: args.smp,
                    strict_console: true,
                    dirty_flushes,
                },
            )?;
            vm::print_result(&r);
            if let Some(d) = &r.deltas {
                write_deltas(&r.dir, d)?;
            }
            results.push((side, r));
        }
    }
    Ok(results)
}

/// The A/B table of the runs' summaries and counters (sides named `names`), also written to
/// `out`/table.md.
fn write_table(
    args: &AbArgs,
    names: [&str; 2],
    results: &[(usize, RunResult)],
    out: &Path,
) -> Result<String> {
    let side = |i: usize| table::Side {
        name: names[i],
        runs: results
            .iter()
            .filter(|(s, _)| *s == i)
            .filter_map(|(_, r)| r.summary.as_ref().zip(r.deltas.as_ref()))
            .collect(),
    };
    let (a, b) = (side(0), side(1));
    let batch = if args.batch > 0 { args.batch } else { 31 };
    let rows = table::rows(&a, &b, batch);
    let rendered = table::render(&a, &b, &rows);
    fs::write(out.join("table.md"), &rendered)?;
    Ok(rendered)
}

/// For a batching patch, the `compare --fail-if` gate both ways (see `gate`), said on stderr;
/// nothing to gate otherwise.
fn gates(tool: &Path, args: &AbArgs, fa: &Path, fb: &Path) -> Result<Vec<vm::check::Check>> {
    let mut gates = Vec::new();
    if matches!(dirty_flushes_of(args, 1), DirtyFlushes::Batched { .. }) {
        gates.push(gate(tool, fa, fb, true)?);
        gates.push(gate(tool, fb, fa, false)?);
        for g in &gates {
            eprintln!("  {} {}", if g.ok { "ok  " } else { "FAIL" }, g.detail);
        }
    }
    Ok(gates)
}

/// What the checks expect of side `side` (0 baseline, 1 patched).
fn dirty_flushes_of(args: &AbArgs, side: usize) -> DirtyFlushes {
    match (side, args.batch) {
        (1, _) if args.expect_unsafe => DirtyFlushes::WrittenBeforeFlush,
        (1, b) if b > 0 => DirtyFlushes::Batched { batch: b },
        _ => DirtyFlushes::PerFolio,
    }
}

/// The rule a kernel CI would gate a batching patch with: deferred flushes are the ones it
/// batches (immediate ones, where the anon workload has any, it cannot change).
const GATE: &str = "deferred_flushes_per_reclaimed_folio>0.5";

/// `reclaim-trace compare A B --fail-if GATE`: it must pass with A = baseline, B = patched,
/// and fail (exit 1) with the two swapped, or the gate could never catch a regression.
fn gate(tool: &Path, a: &Path, b: &Path, should_pass: bool) -> Result<vm::check::Check> {
    let st = Command::new(tool)
        .arg("compare")
        .arg(a)
        .arg(b)
        .args(["--fail-if", GATE])
        .output()
        .with_context(|| format!("cannot run {}", tool.display()))?
        .status;
    let ok = if should_pass {
        st.success()
    } else {
        st.code() == Some(1)
    };
    Ok(vm::check::Check {
        name: "compare gate".into(),
        ok,
        detail: format!(
            "compare {} {} --fail-if '{GATE}': {st} (should {})",
            a.parent().and_then(Path::parent).map_or(a, |p| p).display(),
            b.parent().and_then(Path::parent).map_or(b, |p| p).display(),
            if should_pass { "pass" } else { "fail with 1" }
        ),
        made: true,
    })
}

/// The guest kernel's counter deltas beside the run's summary.json.
fn write_deltas(dir: &Path, d: &KernelDeltas) -> Result<()> {
    let v: Value = json!({
        "pgsteal": d.pgsteal,
        "pswpout": d.pswpout,
        "tlb_interrupts": d.tlb_irqs,
    });
    fs::write(
        dir.join("kernel-deltas.json"),
        serde_json::to_string_pretty(&v)? + "\n",
    )?;
    Ok(())
}

/// `reclaim-trace compare A B` as text and JSON into `out`.
fn compare(tool: &Path, a: &Path, b: &Path, out: &Path) -> Result<()> {
    for (extra, file) in [(None, "compare.txt"), (Some("--json"), "compare.json")] {
        let mut c = Command::new(tool);
        c.arg("compare").arg(a).arg(b);
        if let Some(x) = extra {
            c.arg(x);
        }
        let o = c
            .output()
            .with_context(|| format!("cannot run {}", tool.display()))?;
        if !o.status.success() {
            bail!(
                "`reclaim-trace compare {} {}` failed: {}",
                a.display(),
                b.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        fs::write(out.join(file), &o.stdout)?;
    }
    Ok(())
}
