//! `cargo xtask bench`: what reclaim-trace costs the reclaim it measures.
//!
//! Interleaved rounds on the live kernel. A round has `--runs` slots; in each slot the built-in
//! anon workload (fixed work: `--sweeps` passes over `--size` in a `--memcg-limit` cgroup, 2
//! threads, zram swap) runs once under each configuration, in an order that rotates from slot
//! to slot, each tracer attached for its run only:
//! 1. nothing attached;
//! 2. floor: do-nothing programs at exactly the tool's attach points (`__bench-floor`);
//! 3. bpftrace counting the same tracepoints with plain count()/sum() maps;
//! 4. `reclaim-trace summary`, as users run it.
//!
//! Wall time of each workload run is measured from here and compared with the "nothing" run of
//! the same slot, seconds away; the median of those paired slowdowns comes with a 95% interval,
//! since identical kernel work takes 10-30% more or less time from run to run on this VM. For
//! the tool we also take its CPU time and peak RSS (wait4 rusage) and its JSON (drops, records,
//! hot events, load+attach time).
//! Every round ends with one untimed run with the floor, bpftrace and the tool attached side by
//! side and the kernel's BPF statistics on: their program time per reclaimed folio on the same
//! events, the ratios that this machine's drift cannot move. A last untimed run of each tracer
//! alone gives the per-program table.

mod report;
mod runner;
mod stats;
mod tracers;

use std::{fs, path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, bail};

use self::{
    report::{markdown, results},
    runner::{Swap, in_kernel_alone, parse_size, timed_rounds},
    tracers::write_bpftrace_script,
};
use crate::{
    setup,
    util::{is_root, workspace_root},
};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Interleaved rounds.
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Workload runs per configuration per round.
    #[arg(long, default_value_t = 4)]
    runs: u32,
    /// Passes of each workload thread over its share of the memory.
    #[arg(long, default_value_t = 2)]
    sweeps: u32,
    #[arg(long, default_value = "400M")]
    size: String,
    #[arg(long, default_value = "200M")]
    memcg_limit: String,
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Write all results (raw times included) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    Nothing,
    Floor,
    Bpftrace,
    ReclaimTrace,
}

impl Config {
    const ALL: [Config; 4] = [
        Config::Nothing,
        Config::Floor,
        Config::Bpftrace,
        Config::ReclaimTrace,
    ];

    fn name(self) -> &'static str {
        match self {
            Config::Nothing => "nothing",
            Config::Floor => "floor",
            Config::Bpftrace => "bpftrace",
            Config::ReclaimTrace => "reclaim-trace",
        }
    }
}

/// What every step of the bench works with.
struct Bench<'a> {
    /// The tool's binary (also the floor's: `__bench-floor`).
    bin: PathBuf,
    /// target/bench: the bpftrace script, the tool's JSON files, results.json.
    dir: PathBuf,
    args: &'a BenchArgs,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if !is_root() {
        bail!("the bench loads eBPF programs and creates cgroups: run it as root");
    }
    let started = Instant::now();
    let env = setup::setup(false)?;
    setup::ensure_packages(&[("bpftrace", "bpftrace")])?;
    let b = Bench {
        bin: crate::build(&env)?,
        dir: workspace_root().join("target/bench"),
        args: &args,
    };
    fs::create_dir_all(&b.dir)?;
    let _swap = Swap::ensure(parse_size(&args.size)? * 2)?;
    let probe_mode = write_bpftrace_script(&b)?;
    // One warm-up run (page tables, zram, caches) that is not counted.
    b.workload()?;
    let timed = timed_rounds(&b)?;
    let alone = in_kernel_alone(&b)?;
    let result = results(
        &args,
        &probe_mode,
        &timed,
        &alone,
        started.elapsed().as_secs_f64(),
    );
    let text = serde_json::to_string_pretty(&result)?;
    fs::write(b.dir.join("results.json"), &text)?;
    if let Some(p) = &args.json {
        fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    print!("{}", markdown(&result));
    Ok(())
}
