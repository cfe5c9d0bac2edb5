//! The bench's runs: the timed rounds, the untimed ones with the kernel's BPF statistics on,
//! one workload run, and the swap device they need.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{
    Bench, Config,
    tracers::{BpfStats, ProgStats, Tracer, prog_stats, start_tracer},
};
use crate::util::run;

/// What the timed rounds measured.
pub(super) struct Timed {
    /// runs[cfg][slot]: every configuration runs once per slot, so that slot i of each is
    /// paired with slot i of "nothing" (runs seconds apart, not a block of runs apart).
    pub runs: Vec<Vec<Run>>,
    /// Per configuration, per round: BPF program time per reclaimed folio (ns), from the
    /// round's side-by-side run.
    pub in_kernel_rounds: Vec<Vec<f64>>,
    /// The tool's own figures of each of its timed runs (see `tool_run`).
    pub tool_runs: Vec<Value>,
}

/// The interleaved rounds: in each slot every configuration runs the workload once, in an
/// order that rotates from slot to slot; every round ends with the side-by-side run.
pub(super) fn timed_rounds(b: &Bench<'_>) -> Result<Timed> {
    let args = b.args;
    let mut timed = Timed {
        runs: vec![Vec::new(); 4],
        in_kernel_rounds: vec![Vec::new(); 4],
        tool_runs: Vec::new(),
    };
    let json_out = b.dir.join("summary-timed.json");
    for round in 0..args.rounds {
        for run in 0..args.runs {
            let slot = (round * args.runs + run) as usize;
            for k in 0..4 {
                let cfg = Config::ALL[(k + slot) % 4];
                eprintln!(
                    "xtask bench: round {}/{} run {}/{} {}",
                    round + 1,
                    args.rounds,
                    run + 1,
                    args.runs,
                    cfg.name()
                );
                timed_run(b, cfg, &json_out, &mut timed)?;
            }
        }
        // Untimed: the three tracers attached side by side, with the kernel's BPF statistics on
        // for one workload run. Every program then runs on the very same events in the same
        // seconds, so the ratios of their program time per reclaimed folio carry none of this
        // machine's drift (on it, separate runs minutes apart differ by up to ±15%, even for
        // the empty floor).
        eprintln!(
            "xtask bench: round {}/{} in-kernel, side by side",
            round + 1,
            args.rounds
        );
        for (cfg, ns) in side_by_side(b, round)? {
            timed.in_kernel_rounds[cfg as usize].push(ns);
        }
    }
    Ok(timed)
}

/// One timed workload run under `cfg`, its tracer (if any) attached for this run only.
fn timed_run(b: &Bench<'_>, cfg: Config, json_out: &Path, timed: &mut Timed) -> Result<()> {
    let tracer = match cfg {
        Config::Nothing => None,
        _ => Some(start_tracer(b, cfg, json_out, false)?),
    };
    let t0 = Instant::now();
    let r = b.workload();
    if let Some(t) = tracer {
        let life = t0.elapsed().as_secs_f64() + 1.0;
        let (ok, cpu, rss, _) = t.stop()?;
        if !ok {
            bail!("{} did not exit cleanly", cfg.name());
        }
        if cfg == Config::ReclaimTrace {
            timed.tool_runs.push(tool_run(json_out, cpu, life, rss)?);
        }
    }
    timed.runs[cfg as usize].push(r?);
    Ok(())
}

/// The tool's figures of one timed run: its CPU time over its life (`life` s) and peak RSS
/// from wait4, the rest from the JSON it wrote to `json_out`.
fn tool_run(json_out: &Path, cpu: f64, life: f64, rss: u64) -> Result<Value> {
    let s: Value = serde_json::from_str(&fs::read_to_string(json_out)?)?;
    Ok(json!({
        "cpu_s": cpu, "lifetime_s": life,
        "cpu_tracing_s": s["tracer"]["cpu_s"], "traced_s": s["tracer"]["traced_s"],
        "max_rss_kib": rss,
        "ringbuf_drops": s["drops"]["ringbuf"],
        "decode_errors": s["drops"]["decode_errors"],
        "pass_records": s["tracer"]["pass_records"],
        "duration_s": s["duration_s"],
        "load_attach_s": s["tracer"]["load_attach_s"],
        "folios_reclaimed": s["totals"]["folios_reclaimed"],
    }))
}

/// One workload run with `tracers` attached and the kernel's BPF statistics switched on for
/// it (and restored): each tracer's program statistics over the run, and the run.
fn stats_over_run(tracers: &[(Config, Tracer)], b: &Bench<'_>) -> Result<(Vec<ProgStats>, Run)> {
    let _stats = BpfStats::enable()?;
    let before: Vec<ProgStats> = tracers
        .iter()
        .map(|(_, t)| prog_stats(t.child.id()))
        .collect();
    let run = b.workload()?;
    let deltas = tracers
        .iter()
        .zip(&before)
        .map(|((_, t), b)| prog_stats(t.child.id()).since(b))
        .collect();
    Ok((deltas, run))
}

/// One workload run with the floor, bpftrace and the tool all attached and the kernel's BPF
/// statistics on: each tracer's program time per reclaimed folio (ns), on the same events.
fn side_by_side(b: &Bench<'_>, round: u32) -> Result<Vec<(Config, f64)>> {
    let json_out = b.dir.join(format!("summary-side-by-side{round}.json"));
    let mut tracers = Vec::new();
    for cfg in [Config::Floor, Config::Bpftrace, Config::ReclaimTrace] {
        tracers.push((cfg, start_tracer(b, cfg, &json_out, false)?));
    }
    let (stats, run) = stats_over_run(&tracers, b)?;
    let folios = run.reclaimed.max(1) as f64;
    let mut out = Vec::new();
    for ((cfg, t), st) in tracers.into_iter().zip(&stats) {
        let (ok, ..) = t.stop()?;
        if !ok {
            bail!("{} did not exit cleanly", cfg.name());
        }
        out.push((cfg, st.run_time_ns as f64 / folios));
    }
    Ok(out)
}

/// What each tracer costs in the kernel, attached alone.
pub(super) struct Alone {
    /// Per tracer: its programs, their runs and time per reclaimed folio, recursion misses.
    pub in_kernel: Vec<Value>,
    /// The tool's summary JSON of its run (hot events, its per-program statistics).
    pub tool_summary: Value,
}

/// Untimed: each tracer's in-kernel cost, from the kernel's BPF statistics (switched on for
/// this pass only, and restored): program run time summed over the tracer's programs (read
/// from /proc/<pid>/fdinfo of its prog fds) per reclaimed folio, and the runs the kernel
/// skipped for recursion. Exact where the wall times are noisy, but it leaves out the
/// dispatch: classic tracepoints (bpftrace) also build a trace record per event.
pub(super) fn in_kernel_alone(b: &Bench<'_>) -> Result<Alone> {
    let json_out = b.dir.join("summary-bpf-stats.json");
    let mut in_kernel = Vec::new();
    for cfg in [Config::Floor, Config::Bpftrace, Config::ReclaimTrace] {
        let t = [(cfg, start_tracer(b, cfg, &json_out, true)?)];
        let (stats, run) = stats_over_run(&t, b)?;
        let [(_, t)] = t;
        t.stop()?;
        let d = &stats[0];
        let folios = run.reclaimed.max(1) as f64;
        in_kernel.push(json!({
            "config": cfg.name(),
            "programs": d.programs,
            "runs_per_folio": d.run_cnt as f64 / folios,
            "ns_per_folio": d.run_time_ns as f64 / folios,
            "ns_per_run": d.run_time_ns as f64 / d.run_cnt.max(1) as f64,
            "recursion_misses": d.recursion_misses,
            "workload_cpu_us_per_folio": 1e6 * run.cpu / folios,
        }));
    }
    let tool_summary = serde_json::from_str(&fs::read_to_string(&json_out)?)?;
    Ok(Alone {
        in_kernel,
        tool_summary,
    })
}

impl Bench<'_> {
    /// One run of the built-in anon workload: wall time, CPU time of the workload and its
    /// generator process, folios reclaimed. Reclaim runs in the workload's own threads (memcg
    /// limit reclaim), and so do the tracepoint programs: the tracer's cost shows in this CPU
    /// time, which other load on the machine disturbs far less than wall time.
    pub(super) fn workload(&self) -> Result<Run> {
        let args = self.args;
        let before = pgsteal();
        let t = Instant::now();
        let child = Command::new(&self.bin)
            .args(["workload", "--kind", "anon", "--size", &args.size])
            .args(["--memcg-limit", &args.memcg_limit])
            .args(["--threads", &args.threads.to_string()])
            .args(["--sweeps", &args.sweeps.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let (ok, cpu) = wait_rusage(child.id() as i32)?;
        let wall = t.elapsed().as_secs_f64();
        if !ok {
            bail!("workload run failed");
        }
        Ok(Run {
            wall,
            cpu,
            reclaimed: pgsteal().saturating_sub(before),
        })
    }
}

/// One workload run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Run {
    pub wall: f64,
    /// user+sys of the workload process and its generator child.
    pub cpu: f64,
    /// `pgsteal_anon + pgsteal_file` delta over the run.
    pub reclaimed: u64,
}

fn pgsteal() -> u64 {
    let text = fs::read_to_string("/proc/vmstat").unwrap_or_default();
    reclaim_trace_common::procfs::key_values(&text)
        .filter(|(k, _)| *k == "pgsteal_anon" || *k == "pgsteal_file")
        .map(|(_, v)| v)
        .sum()
}

/// Wait for `pid`: (exited with 0, user+sys CPU s of it and the children it reaped).
fn wait_rusage(pid: i32) -> Result<(bool, f64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 on our own child with valid pointers.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r != pid {
        bail!("wait4({pid}) failed: {}", std::io::Error::last_os_error());
    }
    Ok((
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        tv(ru.ru_utime) + tv(ru.ru_stime),
    ))
}

pub(super) fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// A zram swap device for the duration of the bench (when no swap is active).
pub(super) struct Swap {
    dev: Option<u32>,
}

impl Swap {
    pub(super) fn ensure(size_bytes: u64) -> Result<Swap> {
        let swaps = fs::read_to_string("/proc/swaps").unwrap_or_default();
        if swaps.lines().count() > 1 {
            return Ok(Swap { dev: None });
        }
        let _ = Command::new("modprobe")
            .arg("zram")
            .stderr(Stdio::null())
            .status(); // a no-op where zram is built in
        let dev: u32 = fs::read_to_string("/sys/class/zram-control/hot_add")
            .context("no zram-control: the bench needs swap (or a kernel with zram)")?
            .trim()
            .parse()?;
        let swap = Swap { dev: Some(dev) };
        fs::write(
            format!("/sys/block/zram{dev}/disksize"),
            size_bytes.to_string(),
        )?;
        run(Command::new("mkswap")
            .arg(format!("/dev/zram{dev}"))
            .stdout(Stdio::null()))?;
        run(Command::new("swapon").arg(format!("/dev/zram{dev}")))?;
        Ok(swap)
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        if let Some(dev) = self.dev {
            let _ = Command::new("swapoff")
                .arg(format!("/dev/zram{dev}"))
                .status();
            let _ = fs::write(format!("/sys/block/zram{dev}/reset"), "1");
            let _ = fs::write("/sys/class/zram-control/hot_remove", dev.to_string());
        }
    }
}

pub(super) fn parse_size(s: &str) -> Result<u64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().with_context(|| format!("bad size {s}"))?;
    Ok(n * match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => bail!("bad size unit in {s} (K, M, G)"),
    })
}
