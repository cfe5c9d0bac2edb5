//! Project tasks: `cargo xtask setup | build | dist | run -- ARGS | test | vm | bench | fuzz`.

mod ab;
mod arch;
mod bench;
mod dist;
mod fuzz;
mod screenshot;
mod setup;
mod util;
mod vm;

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

use crate::util::{cargo, is_root, run, workspace_root};

#[derive(Parser)]
#[command(name = "xtask", about = "reclaim-trace project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need: nightly rust-src, bpf-linker (built against
    /// nightly's LLVM), and the Debian packages the tests use. Idempotent and quick when done.
    Setup {
        /// Only the Rust toolchain parts (no Debian packages).
        #[arg(long)]
        toolchain_only: bool,
    },
    /// Build reclaim-trace (release) with its eBPF programs.
    Build,
    /// Build the binary to copy to other machines: static (musl), checked so, with shell
    /// completions and man pages, in target/dist/ (arm64: target/dist/arm64/reclaim-trace).
    Dist {
        /// The architecture to build for.
        #[arg(long, value_enum, default_value_t)]
        arch: arch::Arch,
    },
    /// Set up if needed, build, and run reclaim-trace as root with ARGS.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Formatting, clippy (workspace, then the eBPF crate), unit tests, and the live-kernel
    /// tests (root).
    Test {
        /// Skip the live-kernel tests (for machines where eBPF cannot be loaded).
        #[arg(long)]
        no_live: bool,
        /// Skip the kernel matrix under qemu (`cargo xtask vm`).
        #[arg(long)]
        no_vm: bool,
    },
    /// Boot Debian kernels under qemu and check the tool against each guest kernel's counters
    /// (the real-kernel matrix; see `cargo xtask vm --help`).
    Vm(vm::VmArgs),
    /// Judge a reclaim-flush patch: build a baseline and a patched kernel from Debian's
    /// source (cached), run the same workload on both under qemu, check each run against the
    /// guest's counters, and print the A/B table (see `cargo xtask ab --help`).
    Ab(ab::AbArgs),
    /// Measure the tracer's cost: workload wall time with nothing, a do-nothing floor,
    /// bpftrace, and reclaim-trace attached (interleaved rounds, as root).
    Bench(bench::BenchArgs),
    /// Fuzz the ring-buffer record decoder, the recording reader and the `--fail-if` parser
    /// (cargo-fuzz on nightly, installed if missing): `--runs` generated inputs per target,
    /// failing on a panic or on memory beyond a bound linear in the input's size. Not part of
    /// `test` (building the targets takes ~10 min); see docs/internals.md.
    Fuzz(fuzz::FuzzArgs),
    /// Render `reclaim-trace top` under the built-in anon workload to docs/top.png (root).
    Screenshot {
        /// How long the dashboard runs before the capture (history for the sparkline).
        #[arg(long, default_value_t = 25)]
        seconds: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.command {
        Cmd::Setup { toolchain_only } => setup::setup(!toolchain_only).map(|_| ()),
        Cmd::Build => setup::setup(false).and_then(|env| build(&env)).map(|_| ()),
        Cmd::Dist { arch } => setup::setup(false)
            .and_then(|env| dist::dist(&env, arch))
            .map(|_| ()),
        Cmd::Run { args } => run_tool(&args),
        Cmd::Test { no_live, no_vm } => test(no_live, no_vm),
        // The guests boot the static binary of `dist` (their initramfs has no libc).
        Cmd::Vm(args) => setup::setup(true).and_then(|env| vm::vm(&env, &args)),
        Cmd::Ab(args) => setup::setup(true).and_then(|env| {
            if args.build_only {
                ab::build_kernels(&args).map(|_| ())
            } else {
                dist::dist(&env, arch::Arch::Amd64).and_then(|bin| ab::ab(&bin, &args))
            }
        }),
        Cmd::Bench(args) => bench::bench(args),
        Cmd::Fuzz(args) => fuzz::fuzz(&args),
        Cmd::Screenshot { seconds } => setup::setup(true)
            .and_then(|env| build(&env))
            .and_then(|bin| screenshot::screenshot(&bin, seconds))
            .map(|png| eprintln!("xtask screenshot: wrote {}", png.display())),
    };
    if let Err(e) = r {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// `cargo build --release -p reclaim-trace`; returns the binary.
pub(crate) fn build(env: &setup::Env) -> Result<PathBuf> {
    let mut c = cargo(env);
    c.args(["build", "--release", "-p", "reclaim-trace"]);
    run(&mut c)?;
    let bin = workspace_root().join("target/release/reclaim-trace");
    if !bin.exists() {
        bail!("build succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

fn run_tool(args: &[String]) -> Result<()> {
    let env = setup::setup(false)?;
    let bin = build(&env)?;
    let mut c = if is_root() {
        Command::new(&bin)
    } else {
        eprintln!("xtask: reclaim-trace needs root; running it through sudo");
        let mut c = Command::new("sudo");
        c.arg("--preserve-env=RUST_LOG").arg(&bin);
        c
    };
    c.args(args);
    let status = c
        .status()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn test(no_live: bool, no_vm: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let env = setup::setup(true)?;
    let step = |name: &str| {
        eprintln!(
            "\nxtask test: == {name} ({:.0} s)",
            started.elapsed().as_secs_f64()
        )
    };
    lints(&env, &step)?;
    unit_and_live_tests(&env, no_live, &step)?;
    if no_vm {
        eprintln!("\nxtask test: SKIPPED the kernel matrix (--no-vm)");
    } else {
        kernel_runs(&env, &step)?;
    }
    eprintln!(
        "\nxtask test: all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo fmt --check`, then clippy on the workspace and on the eBPF crate.
fn lints(env: &setup::Env, step: &dyn Fn(&str)) -> Result<()> {
    step("cargo fmt --check");
    let mut c = cargo(env);
    c.args(["fmt", "--all", "--", "--check"]);
    run(&mut c).context("formatting differs: run `cargo fmt --all`")?;

    step("clippy: workspace without the eBPF crate");
    let mut c = cargo(env);
    c.args([
        "clippy",
        "--release",
        "--workspace",
        "--exclude",
        "reclaim-trace-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(&mut c)?;

    // Twice: the kprobe programs read their arguments from `pt_regs`, whose layout aya-ebpf
    // picks by `bpf_target_arch` (the host's unless AYA_BPF_TARGET_ARCH says otherwise), and
    // the arm64 build of `cargo xtask dist --arch arm64` compiles the other one.
    for (arch, dir) in [
        ("x86_64", "target/ebpf-clippy"),
        ("aarch64", "target/ebpf-clippy-aarch64"),
    ] {
        step(&format!(
            "clippy: the eBPF crate (nightly, bpfel-unknown-none, {arch} pt_regs)"
        ));
        let mut c = Command::new("rustup");
        c.current_dir(workspace_root())
            .env("PATH", &env.path)
            .env("AYA_BPF_TARGET_ARCH", arch)
            .args([
                "run",
                "nightly",
                "cargo",
                "clippy",
                "-p",
                "reclaim-trace-ebpf",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--target-dir",
                dir,
                "--",
                "-D",
                "warnings",
            ]);
        run(&mut c)?;
    }
    Ok(())
}

/// The unit tests and (unless `no_live`, as root) the live-kernel tests of the workspace.
fn unit_and_live_tests(env: &setup::Env, no_live: bool, step: &dyn Fn(&str)) -> Result<()> {
    step(if no_live {
        "unit tests (live-kernel tests skipped by --no-live)"
    } else {
        "unit tests and live-kernel tests"
    });
    if !no_live && !is_root() {
        bail!(
            "the live-kernel tests load eBPF programs and need root: run `sudo cargo xtask test` (or --no-live)"
        );
    }
    let mut c = cargo(env);
    c.args([
        "test",
        "--release",
        "--workspace",
        "--exclude",
        "reclaim-trace-ebpf",
    ]);
    c.env(
        "RECLAIM_TRACE_LIVE",
        if no_live { "skip" } else { "require" },
    );
    // Tests that skip themselves (a tool missing, swap already active) append why to this
    // file; it is listed after the run, so no skip passes silently.
    let skips = workspace_root().join("target/test-skips.txt");
    let _ = std::fs::remove_file(&skips);
    c.env("RECLAIM_TRACE_SKIP_LOG", &skips);
    // Live tests share the kernel: one at a time. They are #[ignore]d so that a plain
    // `cargo test` lists them as ignored instead of passing them; here they run.
    c.args(["--", "--test-threads=1"]);
    if !no_live {
        c.arg("--include-ignored");
    }
    let result = run(&mut c);
    match std::fs::read_to_string(&skips) {
        Ok(list) if !list.trim().is_empty() => {
            eprintln!("xtask test: tests that skipped themselves:");
            for line in list.lines() {
                eprintln!("  SKIPPED {line}");
            }
        }
        _ => eprintln!("xtask test: no test skipped itself"),
    }
    result
}

/// The kernel matrix under qemu (`cargo xtask vm`) and the A/B runs of the project's patch
/// (`cargo xtask ab`).
fn kernel_runs(env: &setup::Env, step: &dyn Fn(&str)) -> Result<()> {
    step("kernel matrix under qemu, amd64 and arm64 guests (cargo xtask vm)");
    let vm_started = std::time::Instant::now();
    vm::vm(env, &vm::VmArgs::matrix())?;
    eprintln!(
        "xtask test: kernel matrix passed in {:.0} s",
        vm_started.elapsed().as_secs_f64()
    );
    step("A/B of kernel-patches/6.12 on kernels built from Debian's source (cargo xtask ab)");
    let ab_started = std::time::Instant::now();
    let bin = dist::dist(env, arch::Arch::Amd64)?;
    for args in ab::test_runs() {
        ab::ab(&bin, &args)?;
    }
    eprintln!(
        "xtask test: A/B runs passed in {:.0} s (kernels built or found in {})",
        ab_started.elapsed().as_secs_f64(),
        ab::cache_dir().display()
    );
    Ok(())
}
