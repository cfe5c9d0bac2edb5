//! The bench's report: the README table from the results JSON.

use serde_json::Value;

use super::stats::median;

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

/// The README table.
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
    o.push_str("| configuration | median wall time | min | max | wall vs nothing (paired) | 95% interval | workload CPU per reclaimed folio | vs nothing (paired) | 95% interval |\n|---|---|---|---|---|---|---|---|---|\n");
    for c in r["configs"].as_array().into_iter().flatten() {
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
    let t = &r["reclaim_trace"];
    o.push_str(&format!(
        "\nreclaim-trace: slowdown {} the floor's and {} bpftrace's (paired wall time); in-kernel program time per folio {:.2}x the floor's (per round: {}) and {:.2}x bpftrace's (per round: {}); ring-buffer drops {}; {:.0} pass records/s; {:.0} hot events/s handled in the kernel; userspace CPU {:.2}% of one core while tracing ({:.2}% including start-up); peak RSS {} KiB; load+attach {:.2} s (max).\n",
        times(&r["checks"]["tool_vs_floor"]),
        times(&r["checks"]["tool_vs_bpftrace"]),
        r["checks"]["in_kernel_tool_vs_floor"].as_f64().unwrap_or(f64::NAN),
        per_round(&r["checks"]["in_kernel_tool_vs_floor_per_round"]),
        r["checks"]["in_kernel_tool_vs_bpftrace"].as_f64().unwrap_or(f64::NAN),
        per_round(&r["checks"]["in_kernel_tool_vs_bpftrace_per_round"]),
        t["ringbuf_drops"],
        t["records_per_s"].as_f64().unwrap_or(0.0),
        t["hot_events_per_s"].as_f64().unwrap_or(0.0),
        t["cpu_pct_of_one_core"].as_f64().unwrap_or(0.0),
        t["cpu_pct_with_startup"].as_f64().unwrap_or(0.0),
        t["max_rss_kib"],
        t["load_attach_s_max"].as_f64().unwrap_or(0.0),
    ));
    if let Some(k) = t["in_kernel"].as_array() {
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
    }
    if let Some(progs) = t["bpf_programs"].as_array() {
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
