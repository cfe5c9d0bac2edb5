//! Live-kernel tests: the real tool, the real eBPF programs, the built-in workload in a real
//! memory cgroup, checked against counters the kernel keeps independently of the tool
//! (/proc/vmstat, /proc/interrupts). Run as root by `cargo xtask test`.

mod common;

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::*;

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn anon_workload_figures_match_the_kernel() {
    let Some(_lock) = live() else { return };
    let before_traces = traces();
    let out = tmp("anon.json");
    let (v0, t0) = (vmstat(), tlb_interrupts());
    let o = run(&[
        "summary",
        "--duration",
        "15s",
        "--workload",
        "anon",
        "--zram",
        "--json",
        out.to_str().unwrap(),
    ]);
    let (v1, t1) = (vmstat(), tlb_interrupts());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = json(&out);
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));

    let pgsteal = delta(&v0, &v1, "pgsteal_anon") + delta(&v0, &v1, "pgsteal_file");
    within(
        "pages reclaimed (LRU) vs pgsteal",
        lru_pages_reclaimed(&s),
        pgsteal,
        0.03,
    );
    within(
        "pageouts vs pswpout",
        u(&s, "/totals/pageouts"),
        delta(&v0, &v1, "pswpout"),
        0.03,
    );
    within(
        "remote shootdowns vs /proc/interrupts TLB",
        u(&s, "/totals/remote_shootdowns"),
        t1 - t0,
        0.03,
    );
    let victims: u64 = s["remote_shootdowns_by_cpu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    within(
        "victims by CPU vs /proc/interrupts TLB",
        victims,
        t1 - t0,
        0.03,
    );

    // The workload's memory is base pages (MADV_NOHUGEPAGE): in its memcg context every folio
    // is one page, counted as the passes free them. (kswapd may reclaim the machine's large
    // file folios meanwhile: 3,864 folios for 17,386 pages in one run.)
    let memcg = &s["by_context"]["memcg"];
    let (folios, pages) = (u(memcg, "/folios_reclaimed"), u(memcg, "/pages_reclaimed"));
    assert!(
        folios.abs_diff(pages) <= u(&s, "/totals/unmatched_pages") && folios > 0,
        "memcg: folios {folios} vs pages {pages}"
    );
    // Threads of one process: their mm is live on every CPU, so every unmap is deferred.
    assert!(
        u(&s, "/totals/immediate_flushes") * 100 <= u(&s, "/totals/flushes"),
        "threads' flushes are deferred: {}",
        s["totals"]
    );
    // Today's kernels flush once per dirty folio before pageout().
    let ratio = f(&s, "/flushes_per_reclaimed_folio");
    assert!(
        (0.5..=1.5).contains(&ratio),
        "flushes per reclaimed folio {ratio}"
    );
    assert!(
        u(memcg, "/passes") > 100,
        "the workload reclaims in memcg context"
    );
    within(
        "dirty flushes vs pageouts (memcg)",
        u(memcg, "/dirty_flushes"),
        u(memcg, "/pageouts"),
        0.03,
    );
    assert_eq!(
        s["batch_fill"]["exact"], false,
        "tracepoint tier estimates batch fill"
    );
    assert_eq!(s["drops"]["ringbuf"], 0);
    assert_eq!(s["drops"]["decode_errors"], 0);
    every_pass_has_its_record(&s);
    assert!(
        s["program_errors"].as_object().unwrap().is_empty(),
        "{}",
        s["program_errors"]
    );
    // The workload's cgroup is attributed by id and resolved to its path.
    let cg = s["by_cgroup"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["path"]
                .as_str()
                .is_some_and(|p| p.contains("reclaim-trace-"))
        })
        .expect("workload cgroup in by_cgroup");
    within(
        "workload cgroup's reclaimed vs pgsteal",
        u(cg, "/pages_reclaimed"),
        pgsteal,
        0.03,
    );
    assert_eq!(traces(), before_traces, "left behind");
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn file_workload_flushes_clean_folios_in_batches() {
    let Some(_lock) = live() else { return };
    let before_traces = traces();
    let Measured { s, v0, v1, .. } =
        measure("file.json", &["--duration", "10s", "--workload", "file"]);
    within(
        "pages reclaimed (LRU) vs pgsteal",
        lru_pages_reclaimed(&s),
        delta(&v0, &v1, "pgsteal_anon") + delta(&v0, &v1, "pgsteal_file"),
        0.03,
    );
    let ratio = f(&s, "/flushes_per_reclaimed_folio");
    assert!(ratio < 0.3, "clean folios share flushes: ratio {ratio}");
    let memcg = &s["by_context"]["memcg"];
    assert_eq!(u(memcg, "/dirty_flushes"), 0);
    assert!(u(memcg, "/batch_flushes") > 0);
    assert!(
        u(&s, "/batch_fill/p50") > 1,
        "batch fill p50 {}",
        s["batch_fill"]["p50"]
    );
    assert_eq!(traces(), before_traces, "left behind");
}

/// Pass records travel in per-CPU batches; the ones still waiting when the session ends are
/// read from the kernel. With no drops, every counted pass has its record, and the per-cgroup
/// rows (built from records) add up to the totals (from the in-kernel counters).
fn every_pass_has_its_record(s: &serde_json::Value) {
    assert_eq!(u(s, "/drops/ringbuf"), 0, "ring-buffer drops");
    let passes = u(s, "/totals/passes");
    assert!(passes > 0);
    assert_eq!(
        u(s, "/tracer/pass_records"),
        passes,
        "pass records vs passes"
    );
    let rows: u64 = s["by_cgroup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["passes"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, passes, "passes in the per-cgroup rows vs totals");
}

fn interrupt_midway(signal: i32, name: &str) {
    let before_traces = traces();
    let out = tmp(&format!("{name}.json"));
    let child = Command::new(BIN)
        .args([
            "summary",
            "--duration",
            "120s",
            "--workload",
            "anon",
            "--zram",
            "--json",
        ])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // Wait until the workload's cgroup exists (attached and running), then a bit more.
    while traces().cgroups.len() <= before_traces.cgroups.len() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "workload did not start"
        );
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_secs(3));
    unsafe { libc::kill(child.id() as i32, signal) };
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{name}: {stderr}");
    assert!(
        stderr.contains(&format!("stopped early by {name}")),
        "{stderr}"
    );
    let s = json(&out);
    assert!(f(&s, "/duration_s") < 60.0);
    assert!(
        u(&s, "/totals/folios_reclaimed") > 0,
        "the final summary was flushed"
    );
    // Records still batched in the kernel at the signal were read after counting stopped.
    every_pass_has_its_record(&s);
    assert_eq!(traces(), before_traces, "left behind after {name}");
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn sigint_midway_flushes_the_summary_and_cleans_up() {
    if let Some(_lock) = live() {
        interrupt_midway(libc::SIGINT, "SIGINT");
    }
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn sigterm_midway_flushes_the_summary_and_cleans_up() {
    if let Some(_lock) = live() {
        interrupt_midway(libc::SIGTERM, "SIGTERM");
    }
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn doctor_lists_every_signal_with_a_source_or_a_reason() {
    let Some(_lock) = live() else { return };
    let o = run(&["doctor", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["verified_by_attach"], true);
    let plan = d["plan"].as_array().unwrap();
    let signals: Vec<&str> = plan.iter().map(|r| r["signal"].as_str().unwrap()).collect();
    for want in [
        "reclaim_pass",
        "reclaim_context",
        "pageouts",
        "batched_unmaps",
        "dirty_flush",
        "flush",
        "fanout_targets",
        "ipis",
        "remote_shootdowns",
    ] {
        assert!(signals.contains(&want), "{want} missing from {signals:?}");
    }
    for r in plan {
        let tier = r["tier"].as_str().unwrap();
        assert!(["fentry", "kprobe", "tracepoint", "none"].contains(&tier));
        if tier == "none" {
            assert!(
                r["note"].as_str().is_some_and(|n| !n.is_empty()),
                "{r} has no reason"
            );
        }
    }
    let kprobes = d["kernel"]["kprobes"].as_bool().unwrap();
    if !kprobes {
        // This machine (6.18, CONFIG_KPROBES off, fentry refused): tracepoints only.
        assert_eq!(d["probe_mode"], "tracepoint");
        assert_eq!(d["plan"][0]["tier"], "tracepoint");
    }
    assert_eq!(traces().programs, 0);
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn anon_without_swap_says_how_to_get_it_before_attaching() {
    let Some(_lock) = live() else { return };
    if !traces().swaps.is_empty() {
        skipped("swap is active on this machine; the no-swap error cannot occur");
        return;
    }
    let o = run(&["summary", "--duration", "2s", "--workload", "anon"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("no swap is active, so anonymous memory cannot be reclaimed")
            && e.contains("--zram"),
        "{e}"
    );
    assert_eq!(traces().programs, 0);
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn unwritable_output_fails_before_attaching() {
    let Some(_lock) = live() else { return };
    let t = Instant::now();
    let o = run(&[
        "summary",
        "--duration",
        "30s",
        "--json",
        "/proc/nope/out.json",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("cannot write /proc/nope/out.json"), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "failed only after tracing"
    );
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn unprivileged_user_is_told_to_run_as_root() {
    let Some(_lock) = live() else { return };
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            BIN,
        ])
        .args(["summary", "--duration", "1s"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("not permitted to load tracing programs") && e.contains("run as root"),
        "{e}"
    );
}
