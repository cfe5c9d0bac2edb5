//! Live-kernel tests of the workflows built on the summary: record → report → compare, and
//! the Prometheus exporter scraped over real HTTP while the workload runs.

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use common::{
    schema::validate,
    serve::{Serve, get},
    *,
};
use serde_json::Value;

fn record(kind: &str, extra: &[&str]) -> (std::path::PathBuf, Vec<Value>) {
    let out = tmp(&format!("{kind}.jsonl"));
    let mut args = vec![
        "record",
        "--output",
        out.to_str().unwrap(),
        "--interval",
        "1s",
        "--duration",
        "4s",
        "--workload",
        kind,
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, lines)
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn record_report_and_compare_on_the_live_kernel() {
    let Some(_lock) = live() else { return };
    let before = traces();
    let v0 = vmstat();
    let (anon, lines) = record("anon", &["--zram"]);
    let v1 = vmstat();
    for l in &lines {
        validate("record-v2.schema.json", l);
    }
    let intervals: Vec<&Value> = lines
        .iter()
        .filter(|l| l["record"]["type"] == "interval")
        .collect();
    assert!(intervals.len() >= 4, "{} intervals", intervals.len());
    let last = lines.last().unwrap();
    assert_eq!(last["record"]["type"], "summary");
    // The recording is the kernel's: its whole-run line matches /proc/vmstat.
    within(
        "recorded pageouts vs pswpout",
        u(last, "/totals/pageouts"),
        delta(&v0, &v1, "pswpout"),
        0.03,
    );
    // report: the sum of the interval lines, field by field.
    let rep = tmp("anon-report.json");
    let o = run(&[
        "report",
        anon.to_str().unwrap(),
        "--json",
        rep.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&rep);
    validate("summary-v2.schema.json", &r);
    for (k, v) in r["totals"].as_object().unwrap() {
        let sum: u64 = intervals
            .iter()
            .map(|l| l["totals"][k].as_u64().unwrap())
            .sum();
        assert_eq!(v.as_u64().unwrap(), sum, "report totals.{k} vs Σ intervals");
    }
    assert_eq!(
        r["totals"], last["totals"],
        "intervals add up to the whole run"
    );

    let (file, _) = record("file", &[]);
    let o = run(&[
        "compare",
        anon.to_str().unwrap(),
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = common::compare_row(&c, "flushes_per_reclaimed_folio");
    let q = row["ratio"].as_f64().unwrap();
    eprintln!(
        "flushes per folio: anon {} file {} (B/A {q:.3})",
        row["a"], row["b"]
    );
    assert!(q < 0.3, "file vs anon B/A {q}");
    let o = run(&[
        "compare",
        file.to_str().unwrap(),
        anon.to_str().unwrap(),
        "--fail-if",
        "flushes_per_reclaimed_folio>1.5",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("flushes_per_reclaimed_folio>1.5"));
    assert_eq!(traces(), before, "left behind");
}

fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not exported"))
}

fn promtool(text: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, installed by `cargo xtask setup`)");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = p.wait_with_output().unwrap();
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn serve_exports_metrics_that_grow_and_pass_promtool() {
    let Some(_lock) = live() else { return };
    let before = traces();
    let (mut child, addr) = Serve::start(&["--workload", "anon", "--zram"]);
    thread::sleep(Duration::from_secs(3));
    let (head, m1) = get(addr, "/metrics", None);
    assert!(
        head.contains("200 OK") && head.contains("text/plain; version=0.0.4"),
        "{head}"
    );
    promtool(&m1);
    thread::sleep(Duration::from_secs(2));
    let (_, m2) = get(addr, "/metrics", None);
    promtool(&m2);
    for series in [
        "reclaim_trace_folios_reclaimed_total{context=\"memcg\"}",
        "reclaim_trace_dirty_flushes_total{context=\"memcg\"}",
        "reclaim_trace_ipi_fanout_count{context=\"memcg\"}",
    ] {
        let (a, b) = (sample(&m1, series), sample(&m2, series));
        eprintln!("{series}: {a} -> {b}");
        assert!(b > a && a > 0, "{series} did not grow: {a} -> {b}");
    }
    assert!(m2.contains("reclaim_trace_probe_info{signal=\"flush\",tier=\""));
    let (head, om) = get(
        addr,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(om.ends_with("# EOF\n"));
    let (_, snap) = get(addr, "/snapshot.json", None);
    let snap: Value = serde_json::from_str(&snap).unwrap();
    validate("summary-v2.schema.json", &snap);
    assert!(u(&snap, "/totals/folios_reclaimed") > 0);
    assert!(get(addr, "/nope", None).0.contains("404"));
    let status = child.stop();
    assert!(status.success(), "serve exit {status}");
    assert_eq!(traces(), before, "left behind");
}
