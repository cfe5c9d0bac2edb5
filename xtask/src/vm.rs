//! `cargo xtask vm`: the real-kernel matrix. Boots Debian cloud kernels (bookworm 6.1, trixie
//! 6.12, the newest in sid) under qemu software emulation with the static tool of `cargo xtask
//! dist`, busybox and the needed modules in an initramfs; runs the built-in workload (4
//! threads, zram swap, a memory cgroup) under `reclaim-trace summary`; checks the tool's
//! figures against the guest kernel's own counters read around the run (/proc/vmstat,
//! /proc/interrupts).

pub(crate) mod apt;
pub(crate) mod check;
pub(crate) mod guest;
mod initramfs;
pub(crate) mod kernel;
mod modules;
mod selection;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use self::{
    check::{Check, KernelDeltas},
    kernel::Kernel,
    selection::{RunSpec, run_name, selection, tool_args},
};
use crate::{arch::Arch, setup, util::workspace_root};

#[derive(clap::Args, Debug, Clone)]
pub struct VmArgs {
    /// `6.1` (bookworm), `6.12` (trixie), `sid` (the newest), or a folder with a kernel's .deb
    /// files. Without --kernel and --workload: the whole matrix (three kernels with anon and
    /// THP, file on 6.12 and sid, 64 kB mTHP on 6.12).
    #[arg(long, value_name = "6.1|6.12|sid|PATH")]
    pub kernel: Option<String>,
    /// Boot the Debian kernel of this architecture. arm64 guests run under `qemu-system-aarch64
    /// -M virt -cpu max` (6.12 and sid: arm64 batches reclaim flushes from 6.5 on). Without
    /// --arch and --kernel: the amd64 matrix, then arm64's anon and file rows on 6.12.
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Workload of the measured run [default: anon]. `mthp` is the thp workload with the
    /// guest's THP settings allowing 64 kB folios only (kernels with per-size controls, 6.8+).
    #[arg(long, value_parser = ["anon", "thp", "mthp", "file"])]
    pub workload: Option<String>,
    /// Switch MGLRU (`/sys/kernel/mm/lru_gen/enabled`) on or off in the guest before the run
    /// [default: the kernel's default: on in sid's 7.x, off in 6.1 and 6.12].
    #[arg(long, value_parser = ["on", "off"])]
    pub mglru: Option<String>,
    /// Extra arguments for `reclaim-trace summary` in the guest (e.g. `--probe-mode kprobe`);
    /// arguments starting with a subcommand (e.g. `doctor`) replace the measured command, and
    /// then no checks are made.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// Upper bound of one boot, workload included (normal: 33–45 s: /init after 5–8 s, doctor, the
/// 20 s run, the counters). A boot that never reaches /init is given up on much sooner
/// (`guest::INIT_DEADLINE`).
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

impl VmArgs {
    /// The whole matrix, default arguments.
    pub fn matrix() -> VmArgs {
        VmArgs {
            arch: None,
            kernel: None,
            workload: None,
            mglru: None,
            args: vec![],
        }
    }
}

pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RECLAIM_TRACE_VM_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/reclaim-trace/vm")
}

/// One finished guest run.
pub struct RunResult {
    pub name: String,
    pub checks: Vec<Check>,
    pub row: Option<String>,
    /// The measured run's summary JSON and the guest kernel's counter deltas around it.
    pub summary: Option<Value>,
    pub deltas: Option<KernelDeltas>,
    pub wall_s: f64,
    pub dir: PathBuf,
    /// The workload was SIGKILLed (the guest's memcg OOM killer) before the run's end.
    pub workload_oom_killed: bool,
    /// Why the run was booted again before this result (`run_with_retries`).
    pub retries: Vec<String>,
}

impl RunResult {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The matrix table's last column: the boots retried and the checks not made, or `-`.
    pub fn caveats(&self) -> String {
        let not_made = self
            .checks
            .iter()
            .filter(|c| !c.made)
            .map(|c| format!("not checked: {} ({})", c.name, c.detail));
        let all: Vec<String> = self.retries.iter().cloned().chain(not_made).collect();
        if all.is_empty() {
            "-".into()
        } else {
            all.join("; ")
        }
    }
}

/// The kernel a run boots: a Debian release's, or one from a local folder.
fn get_kernel(cache: &Path, label: &str, arch: Arch) -> Result<Kernel> {
    let k = match kernel::release_for(label, arch)? {
        Some(r) => kernel::fetch(cache, r, arch),
        None if Path::new(label).is_dir() => kernel::local(cache, Path::new(label), arch),
        None => bail!(
            "--kernel {label}: expected 6.1, 6.12, sid, or a folder with a kernel's .deb files"
        ),
    }
    .with_context(|| format!("cannot get the {label} kernel ({arch})"))?;
    eprintln!(
        "xtask vm: kernel {label} ({arch}): {} ({})",
        k.abi,
        if k.packages.is_empty() {
            "local".to_string()
        } else {
            k.packages.join(", ")
        }
    );
    Ok(k)
}

/// `cargo xtask vm`: build the static tool for each architecture the runs need, fetch, boot,
/// check; print a table; fail if any check failed.
pub fn vm(env: &setup::Env, args: &VmArgs) -> Result<()> {
    let started = Instant::now();
    let cache = cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let runs = selection(args);
    let mut kernels: Vec<(String, Arch, Kernel)> = Vec::new();
    let mut tools: Vec<(Arch, PathBuf)> = Vec::new();
    // Fetch every kernel and build every tool first: one that cannot be had is a loud
    // failure, before any boot.
    for RunSpec {
        kernel: label,
        arch,
        ..
    } in &runs
    {
        if !tools.iter().any(|(a, _)| a == arch) {
            tools.push((*arch, crate::dist::dist(env, *arch)?));
        }
        if kernels.iter().any(|(l, a, _)| l == label && a == arch) {
            continue;
        }
        kernels.push((label.clone(), *arch, get_kernel(&cache, label, *arch)?));
    }
    let mut results = Vec::new();
    for run in &runs {
        let Some((_, _, k)) = kernels
            .iter()
            .find(|(l, a, _)| *l == run.kernel && *a == run.arch)
        else {
            continue;
        };
        let Some((_, tool)) = tools.iter().find(|(a, _)| *a == run.arch) else {
            continue;
        };
        let lru_gen = lru_gen(run.mglru.as_deref());
        let (name, slug) = run_name(k, &run.workload, lru_gen, &run.extra);
        let r = run_with_retries(
            tool,
            &GuestRun {
                kernel: k,
                name,
                dir: out_root().join(slug),
                workload: &run.workload,
                lru_gen,
                extra: &run.extra,
                smp: guest::VCPUS,
                strict_console: false,
                dirty_flushes: check::DirtyFlushes::PerFolio,
            },
        )?;
        print_result(&r);
        results.push(r);
    }
    report_matrix(&results, started)
}

/// The matrix table on stdout, the count on stderr; an error naming the runs that failed.
fn report_matrix(results: &[RunResult], started: Instant) -> Result<()> {
    let rows: Vec<String> = results
        .iter()
        .filter_map(|r| Some(format!("{} {} |", r.row.as_ref()?, r.caveats())))
        .collect();
    if !rows.is_empty() {
        println!("\n{}", check::TABLE_HEADER);
        for r in rows {
            println!("{r}");
        }
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.name.as_str())
        .collect();
    eprintln!(
        "\nxtask vm: {} run(s) in {:.0} s; reports in {}",
        results.len(),
        started.elapsed().as_secs_f64(),
        out_root().display()
    );
    if !failed.is_empty() {
        bail!(
            "kernel matrix failed: {} (console logs and reports in {})",
            failed.join(", "),
            out_root().display()
        );
    }
    Ok(())
}

/// A run's verdict and its checks, on stderr.
pub fn print_result(r: &RunResult) {
    eprintln!(
        "xtask vm: {} {} in {:.0} s (report in {})",
        r.name,
        if r.passed() { "PASS" } else { "FAIL" },
        r.wall_s,
        r.dir.display()
    );
    for c in &r.checks {
        eprintln!(
            "  {} {:<52} {}",
            match (c.made, c.ok) {
                (false, _) => "skip",
                (true, true) => "ok  ",
                (true, false) => "FAIL",
            },
            c.name,
            c.detail
        );
    }
}

/// The value for /sys/kernel/mm/lru_gen/enabled that `--mglru on|off` asks for.
pub fn lru_gen(mglru: Option<&str>) -> Option<&'static str> {
    match mglru {
        Some("on") => Some("y"),
        Some("off") => Some("n"),
        _ => None,
    }
}

fn out_root() -> PathBuf {
    workspace_root().join("target/vm")
}

/// One guest boot: which kernel, what runs in it, where its files go.
pub struct GuestRun<'a> {
    pub kernel: &'a Kernel,
    /// What reports call it, e.g. `6.12/anon (MGLRU off)`.
    pub name: String,
    pub dir: PathBuf,
    pub workload: &'a str,
    /// Value for /sys/kernel/mm/lru_gen/enabled, if any.
    pub lru_gen: Option<&'static str>,
    /// Extra arguments of the measured `summary` (see `VmArgs::args`).
    pub extra: &'a [String],
    /// vCPUs; the workload runs one thread per vCPU.
    pub smp: u32,
    /// Fail the run on any kernel warning, BUG or oops in the guest's console (for kernels
    /// under judgement; Debian's own kernels are not what the matrix tests).
    pub strict_console: bool,
    /// What the checks expect of dirty-folio flushes.
    pub dirty_flushes: check::DirtyFlushes,
}

/// `run_one`, booted again when the guest kernel dies or hangs before /init, or when its
/// memcg OOM-kills the workload.
pub fn run_with_retries(tool: &Path, r: &GuestRun<'_>) -> Result<RunResult> {
    // Under TCG (QEMU 7.2.22) 7.2.13 can oops with "Oops: int3" early in boot, while PID 1 is
    // still the kernel, at code the kernel has just patched: most likely its text patching
    // racing multi-threaded TCG (docs/internals.md, "xtask notes"). Boots can also hang
    // silently (see guest::INIT_DEADLINE). Both happen before /init, so before the tool or its
    // programs exist: boot again, said loudly, keeping each failed console; a third failure
    // fails the run. The same int3 race at a tracepoint site the tool is enabling
    // (guest::is_patch_trap) is retried the same way.
    let mut attempt = 0;
    let mut retries = Vec::new();
    let mut res = loop {
        match run_one(tool, r) {
            Err(e) if attempt < BOOT_CRASH_RETRIES => {
                // Any other error is the run's own: it ends the caller's runs.
                let failure = e.downcast::<guest::EarlyBootFailure>()?;
                attempt += 1;
                let kept = failure.keep(attempt);
                eprintln!("xtask vm: {}: {kept}\nxtask vm: booting once more", r.name);
                retries.push(format!("boot {attempt} failed early, booted again"));
            }
            res => break res?,
        }
    };
    if res.workload_oom_killed {
        // 6.12.118 (MGLRU, 4 threads, TCG) can memcg-OOM-kill the workload seconds into the
        // run: the guest kernel gives up reclaiming, the tool does nothing wrong. One more
        // boot, said loudly, and the second result counts.
        let first = res.dir.join("console-oom-killed.log");
        let _ = fs::rename(res.dir.join("console.log"), &first);
        eprintln!(
            "xtask vm: {}: the guest kernel OOM-killed the workload (see {}); booting once more",
            res.name,
            first.display()
        );
        res = run_one(tool, r)?;
        retries.push("workload OOM-killed by the guest kernel, booted again".into());
    }
    res.retries = retries;
    Ok(res)
}

/// Extra boots when the guest kernel dies or hangs before /init (see `run_with_retries`).
const BOOT_CRASH_RETRIES: u32 = 2;

/// One boot of `r`: build its initramfs (and disk), boot, keep the report's sections as files,
/// check the run.
fn run_one(tool: &Path, r: &GuestRun<'_>) -> Result<RunResult> {
    let (k, workload, name, dir) = (r.kernel, r.workload, r.name.clone(), r.dir.clone());
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (args, measured) = tool_args(k.arch, workload, r.smp, r.extra);
    let disk = workload == "file";
    let plan = initramfs::InitPlan {
        tool_args: args,
        disk,
        lru_gen: r.lru_gen,
        // 64 kB folios only: the PMD size off, else MADV_HUGEPAGE memory gets 2 MB ones.
        thp_sizes: if workload == "mthp" {
            vec![(2048, "never"), (64, "madvise")]
        } else {
            vec![]
        },
        report_dev: guest::report_device(k.arch),
    };
    let cpio = dir.join("initramfs.cpio");
    let busybox = kernel::guest_busybox(&cache_dir(), k.arch)?;
    initramfs::build(tool, &busybox, k, &plan, &dir, &cpio)?;
    let disk_path = dir.join("disk.img");
    if disk {
        guest::make_disk(&disk_path, 1024)?;
    }
    eprintln!("xtask vm: booting {name} ({})", k.abi);
    let report = guest::boot(&guest::Boot {
        arch: k.arch,
        vmlinuz: &k.vmlinuz,
        smp: r.smp,
        initramfs: &cpio,
        disk: disk.then_some(disk_path.as_path()),
        work: &dir,
        timeout: BOOT_TIMEOUT,
    })
    .with_context(|| format!("guest {name}"))?;
    let _ = fs::remove_file(&disk_path);
    let _ = fs::remove_dir_all(dir.join("initramfs"));
    keep_sections(&report, &dir)?;
    let mut result = RunResult {
        name,
        checks: run_checks(&report, r.strict_console),
        row: None,
        summary: None,
        deltas: None,
        wall_s: report.wall_s,
        dir,
        workload_oom_killed: report.exit != Some(0)
            && report
                .section("stderr")
                .unwrap_or("")
                .contains("the workload ended before the end of the run: killed by SIGKILL"),
        retries: Vec::new(),
    };
    if measured && report.exit == Some(0) {
        check_measured_run(&mut result, r, &report)?;
    } else if !measured {
        println!("{}", report.section("stdout").unwrap_or(""));
        eprintln!("{}", report.section("stderr").unwrap_or(""));
    }
    Ok(result)
}

/// The report's sections as files in `dir`: doctor.txt, summary.json, the counters.
fn keep_sections(report: &guest::Report, dir: &Path) -> Result<()> {
    for (sec, file) in [
        ("doctor", "doctor.txt"),
        ("summary_json", "summary.json"),
        ("stdout", "stdout.txt"),
        ("stderr", "stderr.txt"),
        ("vmstat_before", "vmstat-before.txt"),
        ("vmstat_after", "vmstat-after.txt"),
        ("interrupts_before", "interrupts-before.txt"),
        ("interrupts_after", "interrupts-after.txt"),
    ] {
        if let Ok(t) = report.section(sec) {
            fs::write(dir.join(file), t)?;
        }
    }
    Ok(())
}

/// The checks of every run: /init's setup raised no error, (`strict_console`) the guest
/// kernel's log is clean, the tool exited with 0.
fn run_checks(report: &guest::Report, strict_console: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    for e in &report.errors {
        checks.push(Check {
            name: "guest setup".into(),
            ok: false,
            detail: e.clone(),
            made: true,
        });
    }
    if strict_console {
        checks.push(console_check(&report.console));
    }
    let exit = report.exit;
    checks.push(Check {
        name: "reclaim-trace exits with 0".into(),
        ok: exit == Some(0),
        detail: format!(
            "exit {exit:?}; stderr: {}",
            report
                .section("stderr")
                .unwrap_or("")
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" / ")
        ),
        made: true,
    });
    checks
}

/// The measured summary against the guest kernel's counters: its checks, its table row, and
/// both kept in `result`.
fn check_measured_run(
    result: &mut RunResult,
    r: &GuestRun<'_>,
    report: &guest::Report,
) -> Result<()> {
    let k = r.kernel;
    let s: Value = serde_json::from_str(report.section("summary_json")?)
        .context("the guest's summary JSON does not parse")?;
    let deltas = KernelDeltas::from_text(
        report.section("vmstat_before")?,
        report.section("vmstat_after")?,
        report.section("interrupts_before")?,
        report.section("interrupts_after")?,
    );
    result
        .checks
        .extend(check::checks(r.workload, r.dirty_flushes, &s, &deltas));
    let uname = report.section("uname").unwrap_or(&k.abi).trim().to_string();
    let kernel = if k.version.is_empty() {
        uname
    } else {
        format!("{uname} ({})", k.version)
    };
    let name = &result.name;
    let variant = name.split_once('/').map_or(name.as_str(), |(_, v)| v);
    result.row = Some(check::table_row(&kernel, variant, &s, &deltas));
    result.summary = Some(s);
    result.deltas = Some(deltas);
    Ok(())
}

/// Kernel log lines that mean the guest kernel found itself in a state it should not be in.
const CONSOLE_ALARMS: &[&str] = &["WARNING:", "BUG:", "Oops", "kernel BUG", "Call Trace:"];

/// A check that the guest's console has none of `CONSOLE_ALARMS`.
fn console_check(console: &Path) -> Check {
    let text = fs::read_to_string(console).unwrap_or_default();
    let alarms: Vec<&str> = text
        .lines()
        .filter(|l| CONSOLE_ALARMS.iter().any(|a| l.contains(a)))
        .take(3)
        .collect();
    Check {
        name: "guest kernel log: no warning, BUG or oops".into(),
        ok: alarms.is_empty(),
        detail: if alarms.is_empty() {
            format!("{} lines read", text.lines().count())
        } else {
            format!("{} (see {})", alarms.join(" / "), console.display())
        },
        made: true,
    }
}
