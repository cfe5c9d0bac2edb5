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

use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};

use self::{
    report::markdown,
    runner::{Run, Swap, parse_size, pgsteal, side_by_side, stats_over_run, wait_rusage},
    stats::{median, median_ci95},
    tracers::{bpftrace_script, start_tracer},
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

pub fn bench(args: BenchArgs) -> Result<()> {
    if !is_root() {
        bail!("the bench loads eBPF programs and creates cgroups: run it as root");
    }
    let started = Instant::now();
    let env = setup::setup(false)?;
    setup::ensure_packages(&[("bpftrace", "bpftrace")])?;
    let bin = crate::build(&env)?;
    let dir = workspace_root().join("target/bench");
    fs::create_dir_all(&dir)?;
    let size = parse_size(&args.size)?;
    let _swap = Swap::ensure(size * 2)?;

    // The tracepoints the tool attaches on this kernel, from its own (verified) plan.
    let doctor = Command::new(&bin).args(["doctor", "--json"]).output()?;
    let d: Value = serde_json::from_slice(&doctor.stdout).context("doctor --json")?;
    let tracepoints: Vec<String> = d["attach"]
        .as_array()
        .ok_or_else(|| anyhow!("doctor --json has no attach list"))?
        .iter()
        .filter(|a| a["ok"] == true)
        .filter_map(|a| {
            let t = a["target"].as_str()?;
            t.strip_prefix("tracepoint:")
                .or_else(|| t.strip_prefix("raw_tracepoint:"))
                .map(String::from)
        })
        .collect();
    let probe_mode = d["probe_mode"].as_str().unwrap_or("?").to_string();
    let script = bpftrace_script(&tracepoints);
    fs::write(dir.join("same-tracepoints.bt"), &script)?;

    // One workload run: (wall s, CPU s of the workload and its generator process). Reclaim
    // runs in the workload's own threads (memcg limit reclaim), and so do the tracepoint
    // programs: the tracer's cost shows in this CPU time, which other load on the machine
    // disturbs far less than wall time.
    let workload = |log: &mut Vec<Run>| -> Result<()> {
        let before = pgsteal();
        let t = Instant::now();
        let child = Command::new(&bin)
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
        log.push(Run {
            wall,
            cpu,
            reclaimed: pgsteal().saturating_sub(before),
        });
        Ok(())
    };

    // times[cfg][slot]: every configuration runs once per slot, so that slot i of each is
    // paired with slot i of "nothing" (runs seconds apart, not a block of runs apart).
    let mut times: Vec<Vec<Run>> = vec![Vec::new(); 4];
    // Per configuration, per round: BPF program time per reclaimed folio (ns).
    let mut in_kernel_rounds: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let mut tool_runs = Vec::new();
    // One warm-up run (page tables, zram, caches) that is not counted.
    workload(&mut Vec::new())?;
    let json_out = dir.join("summary-timed.json");
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
                let tracer = match cfg {
                    Config::Nothing => None,
                    _ => Some(start_tracer(&bin, &dir, cfg, &json_out, false)?),
                };
                let t0 = Instant::now();
                let r = workload(&mut times[cfg as usize]);
                if let Some(t) = tracer {
                    let life = t0.elapsed().as_secs_f64() + 1.0;
                    let (ok, cpu, rss, _) = t.stop()?;
                    if !ok {
                        bail!("{} did not exit cleanly", cfg.name());
                    }
                    if cfg == Config::ReclaimTrace {
                        let s: Value = serde_json::from_str(&fs::read_to_string(&json_out)?)?;
                        tool_runs.push(json!({
                            "cpu_s": cpu, "lifetime_s": life,
                            "cpu_tracing_s": s["tracer"]["cpu_s"], "traced_s": s["tracer"]["traced_s"],
                            "max_rss_kib": rss,
                            "ringbuf_drops": s["drops"]["ringbuf"],
                            "decode_errors": s["drops"]["decode_errors"],
                            "pass_records": s["tracer"]["pass_records"],
                            "duration_s": s["duration_s"],
                            "load_attach_s": s["tracer"]["load_attach_s"],
                            "folios_reclaimed": s["totals"]["folios_reclaimed"],
                        }));
                    }
                }
                r?;
            }
        }
        // Untimed: the three tracers attached side by side, with the kernel's BPF statistics on
        // for one workload run. Every program then runs on the very same events in the same
        // seconds, so the ratios of their program time per reclaimed folio carry none of this
        // machine's drift (separate runs minutes apart differed by ±15% for the empty floor).
        eprintln!(
            "xtask bench: round {}/{} in-kernel, side by side",
            round + 1,
            args.rounds
        );
        let side = side_by_side(&bin, &dir, round, &mut |log| workload(log))?;
        for (cfg, ns) in side {
            in_kernel_rounds[cfg as usize].push(ns);
        }
    }

    // Untimed: each tracer's in-kernel cost, from the kernel's BPF statistics (switched on for
    // this pass only, and restored): program run time summed over the tracer's programs (read
    // from /proc/<pid>/fdinfo of its prog fds) per reclaimed folio, and the runs the kernel
    // skipped for recursion. Exact where the wall times above are noisy, but it leaves out the
    // dispatch: classic tracepoints (bpftrace) also build a trace record per event.
    let mut in_kernel = Vec::new();
    for cfg in [Config::Floor, Config::Bpftrace, Config::ReclaimTrace] {
        let json_out = dir.join("summary-bpf-stats.json");
        let t = [(cfg, start_tracer(&bin, &dir, cfg, &json_out, true)?)];
        let (stats, run) = stats_over_run(&t, &mut |log| workload(log))?;
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
    let stats: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("summary-bpf-stats.json"))?)?;
    let hot_events_per_s = stats["tracer"]["hot_events"].as_f64().unwrap_or(0.0)
        / stats["duration_s"].as_f64().unwrap_or(f64::NAN);

    // Each run's figures: wall time, the workload's CPU time, and both per reclaimed folio.
    // Every run reclaims the same number of folios (fixed work), yet on this VM the same work
    // takes 10-30% more or less time from run to run, whatever is attached.
    let metric = |i: usize, f: fn(&Run) -> f64| times[i].iter().map(f).collect::<Vec<f64>>();
    let pick: [fn(&Run) -> f64; 4] = [
        |r| r.wall,
        |r| r.cpu,
        |r| 1e6 * r.wall / r.reclaimed.max(1) as f64,
        |r| 1e6 * r.cpu / r.reclaimed.max(1) as f64,
    ];
    // Paired per slot: each run against the "nothing" run of the same slot (seconds apart), so
    // that the machine's slow drift (other load, DAMON, zram state) cancels; the run-to-run
    // noise that remains is what the intervals show.
    let paired_runs = |i: usize, f: fn(&Run) -> f64| -> Vec<f64> {
        times[i]
            .iter()
            .zip(&times[0])
            .map(|(x, n)| 100.0 * (f(x) / f(n) - 1.0))
            .collect()
    };
    let nothing: Vec<f64> = pick.iter().map(|f| median(&metric(0, *f))).collect();
    let mut configs = Vec::new();
    for cfg in Config::ALL {
        let i = cfg as usize;
        let w = metric(i, pick[0]);
        let med: Vec<f64> = pick.iter().map(|f| median(&metric(i, *f))).collect();
        let pairs: Vec<Vec<f64>> = pick.iter().map(|f| paired_runs(i, *f)).collect();
        configs.push(json!({
            "config": cfg.name(),
            "runs": w.len(),
            "median_s": med[0],
            "min_s": w.iter().copied().fold(f64::INFINITY, f64::min),
            "max_s": w.iter().copied().fold(0.0, f64::max),
            "ratio_to_nothing": med[0] / nothing[0],
            "slowdown_pct": 100.0 * (med[0] / nothing[0] - 1.0),
            "paired_slowdown_pct": median(&pairs[0]),
            // What this machine's noise allows to resolve: a distribution-free 95% interval
            // of that median, and every paired figure.
            "paired_slowdown_pct_ci95": median_ci95(&pairs[0]),
            "paired_slowdown_pct_per_run": pairs[0],
            "cpu_median_s": med[1],
            "paired_cpu_slowdown_pct": median(&pairs[1]),
            "wall_us_per_folio": med[2],
            "paired_wall_per_folio_slowdown_pct": median(&pairs[2]),
            "cpu_us_per_folio": med[3],
            "paired_cpu_per_folio_slowdown_pct": median(&pairs[3]),
            "paired_cpu_per_folio_slowdown_pct_ci95": median_ci95(&pairs[3]),
            "times_s": w,
            "cpu_s": metric(i, pick[1]),
            "folios_reclaimed": times[i].iter().map(|r| r.reclaimed).collect::<Vec<u64>>(),
        }));
    }
    let get = |i: usize, k: &str| configs[i][k].as_f64().unwrap_or(f64::NAN);
    let slow = |i: usize| get(i, "paired_slowdown_pct");
    let low = |i: usize| configs[i]["paired_slowdown_pct_ci95"][0].as_f64();
    let high = |i: usize| configs[i]["paired_slowdown_pct_ci95"][1].as_f64();
    // A ratio of slowdowns only means something when the denominator is a slowdown: its whole
    // interval above zero. The bound is the largest ratio the two intervals allow (the tool's
    // interval top over the other's interval bottom).
    let ratio = |tool: usize, den: usize| match low(den) {
        Some(lo) if lo > 0.0 => json!({
            "median": slow(tool) / slow(den),
            "upper_bound": high(tool).map(|h| h / lo),
        }),
        _ => Value::Null,
    };
    let sum = |k: &str| {
        tool_runs
            .iter()
            .map(|r| r[k].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    // Per round, from the side-by-side run: the machine's speed drifts by tens of percent
    // between minutes, and a ratio of two measurements minutes apart inherits that drift.
    let in_kernel_ratio_rounds = |num: Config, den: Config| -> Vec<f64> {
        in_kernel_rounds[num as usize]
            .iter()
            .zip(&in_kernel_rounds[den as usize])
            .map(|(a, b)| a / b)
            .collect()
    };
    let tool_vs_floor_rounds = in_kernel_ratio_rounds(Config::ReclaimTrace, Config::Floor);
    let tool_vs_bpftrace_rounds = in_kernel_ratio_rounds(Config::ReclaimTrace, Config::Bpftrace);
    let in_kernel_checks = json!({
        "in_kernel_tool_vs_floor": median(&tool_vs_floor_rounds),
        "in_kernel_tool_vs_bpftrace": median(&tool_vs_bpftrace_rounds),
        "in_kernel_tool_vs_floor_per_round": tool_vs_floor_rounds,
        "in_kernel_tool_vs_bpftrace_per_round": tool_vs_bpftrace_rounds,
        "in_kernel_ns_per_folio_per_round": Config::ALL
            .iter()
            .skip(1)
            .map(|c| (c.name().to_string(), json!(in_kernel_rounds[*c as usize])))
            .collect::<serde_json::Map<_, _>>(),
    });
    let tool_summary = json!({
        "ringbuf_drops": sum("ringbuf_drops"),
        "records_per_s": sum("pass_records") / sum("duration_s"),
        "hot_events_per_s": hot_events_per_s,
        "cpu_pct_of_one_core": 100.0 * sum("cpu_tracing_s") / sum("traced_s"),
        "cpu_pct_with_startup": 100.0 * sum("cpu_s") / sum("lifetime_s"),
        "max_rss_kib": tool_runs.iter().map(|r| r["max_rss_kib"].as_u64().unwrap_or(0)).max(),
        "load_attach_s_max": tool_runs.iter().map(|r| r["load_attach_s"].as_f64().unwrap_or(0.0)).fold(0.0, f64::max),
        "runs": tool_runs,
        "bpf_programs": stats["tracer"]["programs"],
        "in_kernel": in_kernel,
    });
    let result = json!({
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "probe_mode": probe_mode,
        "workload": {"kind": "anon", "size": args.size, "memcg_limit": args.memcg_limit, "threads": args.threads, "sweeps": args.sweeps},
        "rounds": args.rounds, "runs_per_round": args.runs,
        "configs": configs,
        "reclaim_trace": tool_summary,
        "checks": {
            "basis": "workload wall time, each run paired with the nothing run of the same slot; median of the paired slowdowns, and as upper_bound the tool's 95% interval top over the other's interval bottom; null when the other configuration has no interval (under 6 runs) or its interval reaches zero or below (its slowdown is inside the noise)",
            "tool_vs_floor": ratio(3, 1),
            "tool_vs_bpftrace": ratio(3, 2),
            "in_kernel_basis": "BPF program time per reclaimed folio, kernel BPF statistics on, in one untimed run per round with the floor, bpftrace and the tool attached side by side (same events); median of the per-round ratios",
            "in_kernel_tool_vs_floor": in_kernel_checks["in_kernel_tool_vs_floor"],
            "in_kernel_tool_vs_bpftrace": in_kernel_checks["in_kernel_tool_vs_bpftrace"],
            "in_kernel_tool_vs_floor_per_round": in_kernel_checks["in_kernel_tool_vs_floor_per_round"],
            "in_kernel_tool_vs_bpftrace_per_round": in_kernel_checks["in_kernel_tool_vs_bpftrace_per_round"],
            "in_kernel_ns_per_folio_per_round": in_kernel_checks["in_kernel_ns_per_folio_per_round"],
        },
        "bench_wall_s": started.elapsed().as_secs_f64(),
    });
    let text = serde_json::to_string_pretty(&result)?;
    fs::write(dir.join("results.json"), &text)?;
    if let Some(p) = &args.json {
        fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    print!("{}", markdown(&result));
    Ok(())
}
