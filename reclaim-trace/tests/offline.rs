//! Tests of the commands that need no kernel: `report` and `compare` on recordings made on a
//! real 6.18 kernel (fixtures/*.jsonl, recorded with `record --workload anon|file`), the JSON
//! Schema files against real output, and bad input.

mod common;

use std::{path::PathBuf, process::Command};

use common::{schema::validate, *};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn lines(name: &str) -> Vec<Value> {
    std::fs::read_to_string(fixture(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn recorded_lines_match_the_record_schema() {
    for f in ["anon-6.18.jsonl", "file-6.18.jsonl"] {
        let ls = lines(f);
        assert!(ls.len() >= 3, "{f}");
        for l in &ls {
            validate("record-v1.schema.json", l);
            validate("summary-v1.schema.json", l);
        }
        assert_eq!(ls.last().unwrap()["record"]["type"], "summary");
    }
}

#[test]
fn report_totals_are_the_sum_of_the_interval_lines() {
    let out = tmp("report.json");
    let o = run(&[
        "report",
        fixture("anon-6.18.jsonl").to_str().unwrap(),
        "--json",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&out);
    // The fixtures are schema v1: report reads them and writes v2.
    validate("summary-v2.schema.json", &r);
    assert_eq!(r["schema"], "reclaim-trace/summary/v2");
    assert_eq!(r["folios_exact"], false, "v1 folios were base pages");
    let intervals: Vec<Value> = lines("anon-6.18.jsonl")
        .into_iter()
        .filter(|l| l["record"]["type"] == "interval")
        .collect();
    let totals = r["totals"].as_object().unwrap();
    for (k, v) in totals {
        let sum: u64 = intervals.iter().map(|l| v1_total(&l["totals"], k)).sum();
        assert_eq!(v.as_u64().unwrap(), sum, "totals.{k}");
    }
    let dur: f64 = intervals
        .iter()
        .map(|l| l["duration_s"].as_f64().unwrap())
        .sum();
    assert!((r["duration_s"].as_f64().unwrap() - dur).abs() < 1e-6);
    let flushes = r["totals"]["flushes"].as_f64().unwrap();
    let folios = r["totals"]["folios_reclaimed"].as_f64().unwrap();
    assert!((r["flushes_per_reclaimed_folio"].as_f64().unwrap() - flushes / folios).abs() < 1e-12);
    // Histogram counts add up too.
    let count: u64 = intervals
        .iter()
        .map(|l| l["ipi_fanout"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(r["ipi_fanout"]["count"].as_u64().unwrap(), count);
    // A clean recording's final line agrees with the sum of its intervals (keys added since
    // the recording read as 0 there; keys dropped since, e.g. tlb_targets_all, are ignored).
    let last = lines("anon-6.18.jsonl").pop().unwrap();
    for (k, v) in r["totals"].as_object().unwrap() {
        assert_eq!(
            v1_total(&last["totals"], k),
            v.as_u64().unwrap(),
            "final line totals.{k}"
        );
    }
}

/// Total `k` of schema v2 from v1 totals: v1's `flushes` were the deferred ones, its
/// `unbatched_flushes` the immediate ones; a key added since reads as 0 (serde default).
fn v1_total(t: &Value, k: &str) -> u64 {
    let get = |k: &str| t.get(k).map_or(Some(0), Value::as_u64).unwrap();
    match k {
        "deferred_flushes" => get("flushes"),
        "immediate_flushes" => get("unbatched_flushes"),
        "flushes" => get("flushes") + get("unbatched_flushes"),
        _ => get(k),
    }
}

#[test]
fn report_skips_corrupt_lines_and_names_them() {
    let text = std::fs::read_to_string(fixture("anon-6.18.jsonl")).unwrap();
    let mut ls: Vec<&str> = text.lines().collect();
    let cut = &ls[2][..ls[2].len() / 2];
    ls[2] = cut;
    ls.insert(4, "garbage");
    ls.pop(); // as if killed before the final line
    let p = tmp("corrupt.jsonl");
    std::fs::write(&p, ls.join("\n")).unwrap();
    let o = run(&["report", p.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains(":3: not valid JSON") && e.contains(":5: not valid JSON"),
        "{e}"
    );
    assert!(e.contains("no final summary line"), "{e}");
}

#[test]
fn compare_of_anon_and_file_gates_on_flushes_per_folio() {
    let (anon, file) = (fixture("anon-6.18.jsonl"), fixture("file-6.18.jsonl"));
    let o = run(&[
        "compare",
        anon.to_str().unwrap(),
        file.to_str().unwrap(),
        "--json",
        "--fail-if",
        "flushes_per_reclaimed_folio>1.5",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = common::compare_row(&c, "flushes_per_reclaimed_folio");
    let ratio = row["ratio"].as_f64().unwrap();
    assert!(
        ratio < 0.2,
        "clean file folios need far fewer flushes than dirty anon: B/A {ratio}"
    );
    // The other way round it is a >5x regression: the gate fails and names the metric.
    let o = run(&[
        "compare",
        file.to_str().unwrap(),
        anon.to_str().unwrap(),
        "--fail-if",
        "flushes_per_reclaimed_folio>1.5",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("regression gate failed: flushes_per_reclaimed_folio>1.5"),
        "{e}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL flushes_per_reclaimed_folio>1.5"));
}

/// Bad input: one line on stderr that names the problem, exit status 2.
fn bad(args: &[&str], needle: &str) {
    let o = run(args);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
    assert_eq!(
        e.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {e}"
    );
    assert!(e.contains(needle), "{args:?}: {e}");
}

#[test]
fn bad_input_is_one_line_and_exit_status_2() {
    let empty = tmp("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let future = tmp("future.json");
    let mut s = lines("anon-6.18.jsonl").pop().unwrap();
    s["schema"] = "reclaim-trace/summary/v3".into();
    std::fs::write(&future, s.to_string()).unwrap();
    let anon = fixture("anon-6.18.jsonl");
    let a = anon.to_str().unwrap();
    bad(
        &["report", "/nonexistent/rec.jsonl"],
        "cannot open /nonexistent/rec.jsonl",
    );
    bad(&["report", empty.to_str().unwrap()], "the file is empty");
    bad(
        &["compare", a, future.to_str().unwrap()],
        "newer than this reclaim-trace",
    );
    bad(
        &["compare", a, "/nonexistent/b.json"],
        "cannot read /nonexistent/b.json",
    );
    bad(
        &["compare", a, a, "--fail-if", "nonsense>2"],
        "no numeric metric `nonsense`",
    );
    bad(
        &["report", a, "--json", "/proc/nope/out.json"],
        "cannot write /proc/nope/out.json",
    );
    bad(
        &[
            "record",
            "--output",
            "/proc/nope/rec.jsonl",
            "--duration",
            "1s",
        ],
        "cannot write /proc/nope/rec.jsonl",
    );
}

/// Files that are not a recording, or not one run: each named, one line, exit 2; a 1 GiB file
/// of one line is read in bounded memory.
#[test]
fn wrong_kind_binary_huge_and_mixed_files_are_named() {
    let anon = fixture("anon-6.18.jsonl");
    let a = anon.to_str().unwrap();
    // A comparison, pretty-printed as `compare --json` writes it.
    let c = run(&["compare", a, a, "--json"]);
    assert!(c.status.success());
    let cmp = tmp("comparison.json");
    std::fs::write(&cmp, &c.stdout).unwrap();
    bad(
        &["report", cmp.to_str().unwrap()],
        "is a reclaim-trace comparison (what `compare --json` writes), not a recording",
    );
    bad(
        &["compare", a, cmp.to_str().unwrap()],
        "is a reclaim-trace comparison (what `compare --json` writes), not a summary or recording",
    );
    // A summary given to report.
    let mut ls = lines("anon-6.18.jsonl");
    let whole = ls.pop().unwrap();
    let summary = tmp("summary.json");
    std::fs::write(&summary, serde_json::to_string_pretty(&whole).unwrap()).unwrap();
    bad(
        &["report", summary.to_str().unwrap()],
        "is a reclaim-trace summary (what `summary --json` writes), not a recording",
    );
    // A binary file.
    let binary = tmp("binary.jsonl");
    std::fs::write(&binary, [0u8, 0xff, 0xfe, b'\n', 0x80, 0x81].repeat(1000)).unwrap();
    bad(
        &["report", binary.to_str().unwrap()],
        "contains no reclaim-trace records (line 1: not UTF-8 text: binary or corrupt)",
    );
    // Two recordings from different kernels, one after the other.
    let mut other = ls[0].clone();
    other["kernel"]["release"] = "6.12.118+deb13-cloud-amd64".into();
    let mixed = tmp("mixed.jsonl");
    let text = format!("{}\n{}\n", ls[0], other);
    std::fs::write(&mixed, text).unwrap();
    bad(
        &["report", mixed.to_str().unwrap()],
        "mixes runs: line 2 is from kernel 6.12.118+deb13-cloud-amd64",
    );
    // 1 GiB of one line (sparse: no disk used): skipped while read, peak RSS stays small.
    let huge = tmp("huge.jsonl");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    for cmd in ["report", "compare"] {
        let mut args = vec![cmd];
        if cmd == "compare" {
            args.push(a);
        }
        args.push(huge.to_str().unwrap());
        let (o, peak_kib) = run_measured(&args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {e}");
        assert!(
            e.contains(
                "(line 1: 1073741824 bytes long, over 16777216: not a reclaim-trace record)"
            ),
            "{cmd}: {e}"
        );
        assert!(
            peak_kib < 200 << 10,
            "{cmd}: peak RSS {peak_kib} KiB for a 1 GiB line"
        );
        eprintln!("{cmd} of a 1 GiB line: peak RSS {peak_kib} KiB");
    }
    let _ = std::fs::remove_file(&huge);
}

/// Run the tool; its output and its peak RSS in KiB (wait4's rusage of this child alone).
// The child is reaped by wait4 below, not Child::wait: only wait4 gives its own rusage.
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&str]) -> (std::process::Output, i64) {
    use std::os::unix::process::ExitStatusExt as _;
    let child = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut out = (Vec::new(), Vec::new());
    let (mut so, mut se) = (child.stdout.unwrap(), child.stderr.unwrap());
    let t = std::thread::spawn(move || {
        use std::io::Read as _;
        let mut v = Vec::new();
        so.read_to_end(&mut v).unwrap();
        v
    });
    use std::io::Read as _;
    se.read_to_end(&mut out.1).unwrap();
    out.0 = t.join().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped (the Child was consumed without waiting).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid);
    (
        std::process::Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: out.0,
            stderr: out.1,
        },
        ru.ru_maxrss,
    )
}

/// Arguments every command refuses before touching the kernel: one line naming the
/// problem (and, for usage errors, the expected usage), exit 2.
#[test]
fn bad_arguments_table() {
    let anon = fixture("anon-6.18.jsonl");
    let a = anon.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["summary", "--bogus"], "unexpected argument '--bogus'"),
        (
            &["summary", "--duration"],
            "a value is required for '--duration",
        ),
        (&["summary", "--duration", "0s"], "must be positive"),
        (
            &["summary", "--duration", "-5s"],
            "unexpected argument '-5'",
        ),
        (
            &["summary", "--duration", "100000000000s"],
            "longer than a year",
        ),
        (
            &["summary", "--duration", "1s", "--duration", "2s"],
            "cannot be used multiple times",
        ),
        (
            &["record", "--interval", "1ns", "--output", "x"],
            "unknown duration unit `ns`",
        ),
        (
            &["summary", "--workload", "anon", "--size", "1E"],
            "unknown size unit `E`",
        ),
        (
            &["summary", "--workload", "anon", "--memcg-limit", "0"],
            "size `0` must be positive",
        ),
        (
            &["summary", "--workload", "frob"],
            "invalid value 'frob' for '--workload",
        ),
        (
            &["summary", "--probe-mode", "foo"],
            "[possible values: auto, fentry, kprobe, tracepoint]",
        ),
        (&["summary", "--json", "/tmp"], "cannot write /tmp"),
        (
            &["summary", "--json", "/proc/nope/x.json"],
            "cannot write /proc/nope/x.json",
        ),
        (&["report", a, "--json", "/tmp"], "cannot write /tmp"),
        (
            &["top", "--interval", "50ms"],
            "--interval 50ms is too short",
        ),
        (
            &["top", "--export-dir", "/nonexistent"],
            "--export-dir /nonexistent is not a directory",
        ),
        (&["top", "--cgroup", "/no/such/cgroup"], "no/such/cgroup"),
        (&["serve", "--interval", "0s"], "must be positive"),
        (
            &["serve", "--listen", "nonsense"],
            "invalid value 'nonsense' for '--listen",
        ),
        (
            &["workload", "--kind", "anon", "--size", "-1M"],
            "unexpected argument '-1'",
        ),
        (
            &["compare"],
            "required arguments were not provided: <A> <B>",
        ),
        (&["compare", a], "required arguments were not provided: <B>"),
        (&["report"], "required arguments were not provided"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (
            &["compare", a, a, "--fail-if", "flushes_per_reclaimed_folio"],
            "is not a rule",
        ),
        (
            &[
                "compare",
                a,
                a,
                "--fail-if",
                "flushes_per_reclaimed_folio>abc",
            ],
            "is not a ratio",
        ),
        (
            &[
                "compare",
                a,
                a,
                "--fail-if",
                "flushes_per_reclaimed_folio>NaN",
            ],
            "is not a ratio",
        ),
        (&["compare", a, a, "--fail-if", ">1"], "names no metric"),
        (
            &["compare", a, a, "--fail-if", "kernel.release>1"],
            "no numeric metric `kernel.release`",
        ),
        (
            &["compare", a, a, "--fail-if", "nonsense>2"],
            "no numeric metric `nonsense`",
        ),
    ];
    for (args, needle) in cases {
        bad(args, needle);
    }
    eprintln!("{} bad argument lists refused", cases.len());
}

#[test]
fn serve_refuses_a_port_in_use_before_attaching() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    bad(
        &["serve", "--listen", &addr],
        &format!("cannot listen on {addr}"),
    );
}

#[test]
fn help_documents_every_command() {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    let h = String::from_utf8_lossy(&o.stdout);
    for c in [
        "summary", "doctor", "record", "report", "compare", "serve", "workload",
    ] {
        assert!(h.contains(c), "{c} missing from --help:\n{h}");
    }
}
