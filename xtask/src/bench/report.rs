//! The bench's report: the results JSON (results.json, `--json`) and the README table made
//! from it.

use std::fs;

use serde_json::{Value, json};

use super::{
    BenchArgs, Config,
    runner::{Alone, Timed},
    stats::{config_figures, median, per_round_ratios, slowdown_ratio},
};

/// Everything the bench measured, with its figures and checks; `wall_s` is the bench's own
/// duration.
pub(super) fn results(
    args: &BenchArgs,
    probe_mode: &str,
    timed: &Timed,
    alone: &Alone,
    wall_s: f64,
) -> Value {
    let configs = config_figures(&timed.runs);
    json!({
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "probe_mode": probe_mode,
        "workload": {"kind": "anon", "size": args.size, "memcg_limit": args.memcg_limit, "threads": args.threads, "sweeps": args.sweeps},
        "rounds": args.rounds, "runs_per_round": args.runs,
        "reclaim_trace": tool_summary(&timed.tool_runs, alone),
        "checks": checks(&configs, &timed.in_kernel_rounds),
        "configs": configs,
        "bench_wall_s": wall_s,
    })
}

/// The tool's own figures: over its timed runs (drops, records, CPU, RSS, load+attach time),
/// and from its run alone with the kernel's BPF statistics on (hot events, per program).
fn tool_summary(tool_runs: &[Value], alone: &Alone) -> Value {
    let sum = |k: &str| {
        tool_runs
            .iter()
            .map(|r| r[k].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    let stats = &alone.tool_summary;
    let hot_events_per_s = stats["tracer"]["hot_events"].as_f64().unwrap_or(0.0)
        / stats["duration_s"].as_f64().unwrap_or(f64::NAN);
    json!({
        "ringbuf_drops": sum("ringbuf_drops"),
        "records_per_s": sum("pass_records") / sum("duration_s"),
        "hot_events_per_s": hot_events_per_s,
        "cpu_pct_of_one_core": 100.0 * sum("cpu_tracing_s") / sum("traced_s"),
        "cpu_pct_with_startup": 100.0 * sum("cpu_s") / sum("lifetime_s"),
        "max_rss_kib": tool_runs.iter().map(|r| r["max_rss_kib"].as_u64().unwrap_or(0)).max(),
        "load_attach_s_max": tool_runs.iter().map(|r| r["load_attach_s"].as_f64().unwrap_or(0.0)).fold(0.0, f64::max),
        "runs": tool_runs,
        "bpf_programs": stats["tracer"]["programs"],
        "in_kernel": alone.in_kernel,
    })
}

/// The tool against the floor and bpftrace: paired slowdowns of wall time, and in-kernel
/// program time per folio from the side-by-side runs.
fn checks(configs: &[Value], in_kernel_rounds: &[Vec<f64>]) -> Value {
    let tool_vs_floor = per_round_ratios(in_kernel_rounds, Config::ReclaimTrace, Config::Floor);
    let tool_vs_bpftrace =
        per_round_ratios(in_kernel_rounds, Config::ReclaimTrace, Config::Bpftrace);
    json!({
        "basis": "workload wall time, each run paired with the nothing run of the same slot; median of the paired slowdowns, and as upper_bound the tool's 95% interval top over the other's interval bottom; null when the other configuration has no interval (under 6 runs) or its interval reaches zero or below (its slowdown is inside the noise)",
        "tool_vs_floor": slowdown_ratio(configs, Config::ReclaimTrace, Config::Floor),
        "tool_vs_bpftrace": slowdown_ratio(configs, Config::ReclaimTrace, Config::Bpftrace),
        "in_kernel_basis": "BPF program time per reclaimed folio, kernel BPF statistics on, in one untimed run per round with the floor, bpftrace and the tool attached side by side (same events); median of the per-round ratios",
        "in_kernel_tool_vs_floor": median(&tool_vs_floor),
        "in_kernel_tool_vs_bpftrace": median(&tool_vs_bpftrace),
        "in_kernel_tool_vs_floor_per_round": tool_vs_floor,
        "in_kernel_tool_vs_bpftrace_per_round": tool_vs_bpftrace,
        "in_kernel_ns_per_folio_per_round": Config::ALL
            .iter()
            .skip(1)
            .map(|c| (c.name().to_string(), json!(in_kernel_rounds[*c as usize])))
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// `1.23x (at most 2.50x)`, or why there is no ratio.
fn times(v: &Value) -> String {
    match (v["median"].as_f64(), v["upper_bound"].as_f64()) {
        (Some(m), Some(u)) => format!("{m:.2}x (at most {u:.2}x)"),
        (Some(m), None) => format!("{m:.2}x"),
        _ => "n/a (the other's slowdown has no 95% interval above zero: inside the noise, or under 6 runs)".to_string(),
    }
}

/// `-3 to +8%`: a 95% interval in percent.
fn interval(v: &Value) -> String {
    match v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
    {
        Some(a) if a.len() == 2 => format!("{:+.0} to {:+.0}%", a[0], a[1]),
        _ => "n/a".to_string(),
    }
}

/// `1.61 1.70 ...`: a list of per-round ratios.
fn per_round(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| format!("{:.2}", x.as_f64().unwrap_or(f64::NAN)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The README table: a line on the setup, the configurations' table, a line on the tool,
/// the in-kernel cost table and the tool's per-program table.
pub(super) fn markdown(r: &Value) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "Kernel {} ({} tier), anon workload {} in a {} memcg, {} threads, {} sweeps; {} rounds x {} runs per configuration, each run paired with a \"nothing\" run seconds apart.\n\n",
        r["kernel"].as_str().unwrap_or("?"),
        r["probe_mode"].as_str().unwrap_or("?"),
        r["workload"]["size"].as_str().unwrap_or("?"),
        r["workload"]["memcg_limit"].as_str().unwrap_or("?"),
        r["workload"]["threads"],
        r["workload"]["sweeps"],
        r["rounds"],
        r["runs_per_round"],
    ));
    o.push_str(&configs_table(&r["configs"]));
    o.push_str(&tool_line(&r["checks"], &r["reclaim_trace"]));
    o.push_str(&in_kernel_table(r));
    o.push_str(&programs_table(&r["reclaim_trace"]["bpf_programs"]));
    o
}

/// One row per configuration: wall time, and the paired slowdowns with their intervals.
fn configs_table(configs: &Value) -> String {
    let mut o = String::new();
    o.push_str("| configuration | median wall time | min | max | wall vs nothing (paired) | 95% interval | workload CPU per reclaimed folio | vs nothing (paired) | 95% interval |\n|---|---|---|---|---|---|---|---|---|\n");
    for c in configs.as_array().into_iter().flatten() {
        let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
        // "nothing" against itself: no interval to give.
        let ci_cell = |v: &Value| {
            if c["config"] == "nothing" {
                String::new()
            } else {
                interval(v)
            }
        };
        o.push_str(&format!(
            "| {} | {:.3} s | {:.3} s | {:.3} s | {:+.1}% | {} | {:.2} µs | {:+.1}% | {} |\n",
            c["config"].as_str().unwrap_or("?"),
            f("median_s"),
            f("min_s"),
            f("max_s"),
            f("paired_slowdown_pct"),
            ci_cell(&c["paired_slowdown_pct_ci95"]),
            f("cpu_us_per_folio"),
            f("paired_cpu_per_folio_slowdown_pct"),
            ci_cell(&c["paired_cpu_per_folio_slowdown_pct_ci95"]),
        ));
    }
    o
}

/// The tool against the floor and bpftrace, and its own figures, in one line.
fn tool_line(checks: &Value, t: &Value) -> String {
    format!(
        "\nreclaim-trace: slowdown {} the floor's and {} bpftrace's (paired wall time); in-kernel program time per folio {:.2}x the floor's (per round: {}) and {:.2}x bpftrace's (per round: {}); ring-buffer drops {}; {:.0} pass records/s; {:.0} hot events/s handled in the kernel; userspace CPU {:.2}% of one core while tracing ({:.2}% including start-up); peak RSS {} KiB; load+attach {:.2} s (max).\n",
        times(&checks["tool_vs_floor"]),
        times(&checks["tool_vs_bpftrace"]),
        checks["in_kernel_tool_vs_floor"]
            .as_f64()
            .unwrap_or(f64::NAN),
        per_round(&checks["in_kernel_tool_vs_floor_per_round"]),
        checks["in_kernel_tool_vs_bpftrace"]
            .as_f64()
            .unwrap_or(f64::NAN),
        per_round(&checks["in_kernel_tool_vs_bpftrace_per_round"]),
        t["ringbuf_drops"],
        t["records_per_s"].as_f64().unwrap_or(0.0),
        t["hot_events_per_s"].as_f64().unwrap_or(0.0),
        t["cpu_pct_of_one_core"].as_f64().unwrap_or(0.0),
        t["cpu_pct_with_startup"].as_f64().unwrap_or(0.0),
        t["max_rss_kib"],
        t["load_attach_s_max"].as_f64().unwrap_or(0.0),
    )
}

/// Each tracer's in-kernel cost alone, with its time per folio of every side-by-side round
/// (nothing without the BPF statistics' figures).
fn in_kernel_table(r: &Value) -> String {
    let mut o = String::new();
    let Some(k) = r["reclaim_trace"]["in_kernel"].as_array() else {
        return o;
    };
    o.push_str("\n| in-kernel cost (BPF statistics) | programs | program runs per folio | ns per run | ns per reclaimed folio | per round | recursion misses |\n|---|---|---|---|---|---|---|\n");
    for c in k {
        let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
        let name = c["config"].as_str().unwrap_or("?");
        let rounds = &r["checks"]["in_kernel_ns_per_folio_per_round"][name];
        let v: Vec<f64> = rounds
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_f64())
            .collect();
        o.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {:.0} (median of rounds) | {} | {} |\n",
            name,
            c["programs"],
            f("runs_per_folio"),
            f("ns_per_run"),
            median(&v),
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
            c["recursion_misses"],
        ));
    }
    o
}

/// The tool's programs that ran, with their time per run.
fn programs_table(progs: &Value) -> String {
    let mut o = String::new();
    let Some(progs) = progs.as_array() else {
        return o;
    };
    o.push_str("\n| BPF program | runs | ns/run |\n|---|---|---|\n");
    for p in progs {
        let (n, ns) = (
            p["run_count"].as_u64().unwrap_or(0),
            p["run_time_ns"].as_u64().unwrap_or(0),
        );
        if n > 0 {
            o.push_str(&format!(
                "| {} | {} | {:.0} |\n",
                p["name"].as_str().unwrap_or("?"),
                n,
                ns as f64 / n as f64
            ));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_table_gives_intervals_against_nothing_only() {
        let row = |name: &str, ci: Value| {
            json!({"config": name, "median_s": 2.0, "min_s": 1.9, "max_s": 2.2,
                "paired_slowdown_pct": 0.0, "paired_slowdown_pct_ci95": ci.clone(),
                "cpu_us_per_folio": 25.0, "paired_cpu_per_folio_slowdown_pct": 0.0,
                "paired_cpu_per_folio_slowdown_pct_ci95": ci})
        };
        let r = json!({
            "configs": [row("nothing", json!([0.0, 0.0])), row("floor", json!([-8.4, 15.2]))],
            "checks": {"tool_vs_floor": null,
                "tool_vs_bpftrace": {"median": 0.35, "upper_bound": 5.35}},
            "reclaim_trace": {},
        });
        let md = markdown(&r);
        assert!(
            md.contains(
                "| nothing | 2.000 s | 1.900 s | 2.200 s | +0.0% |  | 25.00 µs | +0.0% |  |"
            ),
            "{md}"
        );
        assert!(md.contains("| floor | 2.000 s | 1.900 s | 2.200 s | +0.0% | -8 to +15% | 25.00 µs | +0.0% | -8 to +15% |"), "{md}");
        assert!(md.contains("slowdown n/a (the other's slowdown has no 95% interval above zero: inside the noise, or under 6 runs) the floor's and 0.35x (at most 5.35x) bpftrace's"), "{md}");
    }

    #[test]
    fn a_ratio_needs_a_slowdown_to_divide_by() {
        assert_eq!(
            times(&json!({"median": 0.5, "upper_bound": 1.25})),
            "0.50x (at most 1.25x)"
        );
        assert!(times(&Value::Null).starts_with("n/a"));
        assert_eq!(interval(&json!([-3.2, 8.6])), "-3 to +9%");
        assert_eq!(interval(&Value::Null), "n/a");
    }
}
