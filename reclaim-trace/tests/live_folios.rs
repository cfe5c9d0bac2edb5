//! Live-kernel tests of what the tool counts as a folio and which flushes it counts: huge
//! folios (THP and mTHP) against the kernel's swap-out counters, and the immediate flushes of
//! single-threaded processes against the kernel's own trace of them (tracefs, not BPF).
//! Run as root by `cargo xtask test`.

mod common;

use std::{fs, path::Path};

use common::*;

const THP: &str = "/sys/kernel/mm/transparent_hugepage";

/// Folios the kernel wrote to swap between `v0` and `v1`: whole large folios (counted by
/// `large`, with `pages_each` pages each) plus the base pages of `pswpout` left over.
fn kernel_folios_written(pswpout: u64, large: u64, pages_each: u64) -> u64 {
    large + pswpout.saturating_sub(large * pages_each)
}

/// The checks shared by the THP and mTHP runs: pages against pgsteal, folios against the
/// folios the kernel wrote out, and one dirty flush per folio.
fn check_large_folios(m: &Measured, pgsteal: u64, kernel_folios: u64, large: u64) {
    let s = &m.s;
    within(
        "pages reclaimed vs pgsteal",
        u(s, "/totals/pages_reclaimed"),
        pgsteal,
        0.03,
    );
    assert!(
        large >= 50,
        "only {large} large folios were swapped out whole"
    );
    within(
        "pageouts (folios) vs the kernel's folios written",
        u(s, "/totals/pageouts"),
        kernel_folios,
        0.03,
    );
    // The workload's memcg context: kswapd may reclaim the machine's file folios meanwhile.
    let (folios, pages) = (
        u(s, "/by_context/memcg/folios_reclaimed"),
        u(s, "/by_context/memcg/pages_reclaimed"),
    );
    assert!(
        folios * 2 < pages,
        "large folios count once: {folios} folios for {pages} pages"
    );
    // zram writes synchronously: every reclaimed anon folio was written out in its pass. The
    // folio count may be off only by what the tool says did not add up (in the tracepoint
    // tier a pass also sees the frees of folios put back after shrink_folio_list, e.g. ones
    // the other thread's MADV_DONTNEED dropped while they were isolated), plus 1%.
    let unmatched = u(s, "/totals/unmatched_pages");
    assert!(
        unmatched * 1000 <= pages,
        "{unmatched} of {pages} pages did not add up to the freed folios"
    );
    let off = folios.abs_diff(kernel_folios);
    assert!(
        off <= unmatched + kernel_folios / 100,
        "folios reclaimed {folios} vs the kernel's folios written {kernel_folios}: {off} apart, \
         more than the {unmatched} unmatched pages the summary reports + 1%"
    );
    eprintln!(
        "folios reclaimed vs the kernel's folios written: tool {folios} vs kernel \
         {kernel_folios} ({off} apart; {unmatched} unmatched pages reported)"
    );
    assert_eq!(
        s["folios_exact"],
        unmatched == 0,
        "folios_exact says whether every pass added up"
    );
    assert_eq!(
        m.text.contains("folio count not exact"),
        unmatched > 0,
        "the text summary says when the folio count is not exact:\n{}",
        m.text
    );
    // One dirty flush per written folio, whatever its size.
    within(
        "dirty flushes vs pageouts",
        u(s, "/totals/dirty_flushes"),
        u(s, "/totals/pageouts"),
        0.05,
    );
    let pf = f(s, "/flushes_per_reclaimed_folio");
    let split = f(s, "/deferred_flushes_per_reclaimed_folio")
        + f(s, "/immediate_flushes_per_reclaimed_folio");
    assert!((pf - split).abs() < 1e-9, "{pf} != deferred + immediate");
}

fn summary_thp(name: &str) -> Measured {
    measure(name, &["--duration", "10s", "--workload", "thp", "--zram"])
}

/// THP for madvised memory, or why not (the test then fails under `cargo xtask test`: the
/// CI machines allow it).
fn thp_madvise_allowed() -> bool {
    let top = fs::read_to_string(format!("{THP}/enabled")).unwrap_or_default();
    top.contains("[madvise]") || top.contains("[always]")
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn thp_workload_counts_each_huge_folio_once() {
    let Some(_lock) = live() else { return };
    assert!(
        thp_madvise_allowed(),
        "{THP}/enabled does not allow madvised THP on this machine"
    );
    let _pmd_only = ThpSizes::set(&[("2048", "inherit")], true);
    let before = traces();
    let m = summary_thp("thp.json");
    let (s, v0, v1) = (&m.s, &m.v0, &m.v1);
    let pmd_pages = fs::read_to_string(format!("{THP}/hpage_pmd_size"))
        .unwrap()
        .trim()
        .parse::<u64>()
        .unwrap()
        / 4096;
    let large = delta(v0, v1, "thp_swpout");
    let pswpout = delta(v0, v1, "pswpout");
    let pgsteal = delta(v0, v1, "pgsteal_anon") + delta(v0, v1, "pgsteal_file");
    check_large_folios(
        &m,
        pgsteal,
        kernel_folios_written(pswpout, large, pmd_pages),
        large,
    );
    assert_eq!(s["workload"]["thp_sizes_kb"][0], 2048);
    assert_eq!(traces(), before, "left behind");
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn mthp_workload_counts_each_64k_folio_once() {
    let Some(_lock) = live() else { return };
    if !Path::new(&format!("{THP}/hugepages-64kB/stats/swpout")).exists() {
        skipped("this kernel has no per-size THP controls (before 6.8)");
        return;
    }
    // The tool never changes these; the test does, and puts them back.
    let _only_64k = ThpSizes::set(&[("2048", "never"), ("64", "madvise")], false);
    let before = traces();
    let stat = || -> u64 {
        fs::read_to_string(format!("{THP}/hugepages-64kB/stats/swpout"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let large0 = stat();
    let m = summary_thp("mthp.json");
    let (s, v0, v1) = (&m.s, &m.v0, &m.v1);
    let large = stat() - large0;
    let pgsteal = delta(v0, v1, "pgsteal_anon") + delta(v0, v1, "pgsteal_file");
    check_large_folios(
        &m,
        pgsteal,
        kernel_folios_written(delta(v0, v1, "pswpout"), large, 16),
        large,
    );
    assert_eq!(s["workload"]["thp_sizes_kb"], serde_json::json!([64]));
    assert_eq!(traces(), before, "left behind");
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn thp_workload_with_thp_off_says_how_to_turn_it_on() {
    let Some(_lock) = live() else { return };
    let _off = ThpSizes::set(&[], true);
    let o = run(&["summary", "--workload", "thp", "--zram", "--duration", "1s"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(
        e.contains("transparent huge pages are off for madvised memory"),
        "{e}"
    );
    assert_eq!(traces().programs, 0);
}

/// Per-size THP settings changed for one test and put back when it ends.
struct ThpSizes(Vec<(String, String)>);

impl ThpSizes {
    /// Set `hugepages-<kB>kB/enabled` for each (size, value); with `others_never`, every
    /// other size to `never`.
    fn set(sizes: &[(&str, &str)], others_never: bool) -> ThpSizes {
        let mut saved = Vec::new();
        let Ok(dir) = fs::read_dir(THP) else {
            return ThpSizes(saved);
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(kb) = name
                .strip_prefix("hugepages-")
                .and_then(|n| n.strip_suffix("kB"))
            else {
                continue;
            };
            let want = match sizes.iter().find(|(k, _)| *k == kb) {
                Some((_, v)) => *v,
                None if others_never => "never",
                None => continue,
            };
            let path = e.path().join("enabled");
            // Sizes the CPU cannot map have a directory but no control (8kB on 6.18.44).
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            let Some(cur) = text.split('[').nth(1).and_then(|t| t.split(']').next()) else {
                continue;
            };
            saved.push((path.display().to_string(), cur.to_string()));
            fs::write(&path, want).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        ThpSizes(saved)
    }
}

impl Drop for ThpSizes {
    fn drop(&mut self) {
        for (path, v) in &self.0 {
            let _ = fs::write(path, v);
        }
    }
}

/// The kernel's own trace of one event (tracefs ring buffer, filtered in the kernel), set up
/// for one test and taken down when it ends.
struct KernelTrace {
    event: String,
    buffer_kb: String,
    /// `tracing_on` as found (other tracers on the machine may rely on it).
    tracing_on: String,
}

const TRACEFS: &str = "/sys/kernel/tracing";

impl KernelTrace {
    fn start(event: &str, filter: &str) -> KernelTrace {
        let w = |f: &str, v: &str| {
            fs::write(format!("{TRACEFS}/{f}"), v).unwrap_or_else(|e| panic!("{f}: {e}"))
        };
        let read = |f: &str| {
            fs::read_to_string(format!("{TRACEFS}/{f}"))
                .unwrap()
                .trim()
                .to_string()
        };
        let (buffer_kb, tracing_on) = (read("buffer_size_kb"), read("tracing_on"));
        w("tracing_on", "0");
        w("trace", "");
        // ~40 bytes an event; a 5 s run of two processes makes about a million.
        w("buffer_size_kb", "131072");
        w(&format!("events/{event}/filter"), filter);
        w(&format!("events/{event}/enable"), "1");
        w("tracing_on", "1");
        KernelTrace {
            event: event.to_string(),
            buffer_kb,
            tracing_on,
        }
    }

    /// Lines of the trace containing `needle`; panics if the buffer overran (a lost event
    /// would make the count wrong).
    fn count(&self, needle: &str) -> u64 {
        let _ = fs::write(format!("{TRACEFS}/tracing_on"), "0");
        for cpu in fs::read_dir(format!("{TRACEFS}/per_cpu"))
            .unwrap()
            .flatten()
        {
            let stats = fs::read_to_string(cpu.path().join("stats")).unwrap();
            let overrun = parse_kv(&stats.replace(':', " "))
                .get("overrun")
                .copied()
                .unwrap_or(0);
            assert_eq!(overrun, 0, "{}: trace buffer overran", cpu.path().display());
        }
        let trace = fs::read_to_string(format!("{TRACEFS}/trace")).unwrap();
        trace.lines().filter(|l| l.contains(needle)).count() as u64
    }
}

impl Drop for KernelTrace {
    fn drop(&mut self) {
        for (f, v) in [
            ("tracing_on".to_string(), "0"),
            (format!("events/{}/enable", self.event), "0"),
            (format!("events/{}/filter", self.event), "0"),
            ("trace".to_string(), ""),
            ("buffer_size_kb".to_string(), self.buffer_kb.as_str()),
            ("tracing_on".to_string(), self.tracing_on.as_str()),
        ] {
            let _ = fs::write(format!("{TRACEFS}/{f}"), v);
        }
    }
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn single_threaded_processes_flush_at_once_and_the_headline_says_so() {
    let Some(_lock) = live() else { return };
    let before = traces();
    // TLB_LOCAL_MM_SHOOTDOWN by the workload's processes (named rt-anon-N): the local flush
    // flush_tlb_mm_range() does when try_to_unmap_one() cannot defer.
    let trace = KernelTrace::start("tlb/tlb_flush", "reason == 3 && comm ~ \"rt-anon-*\"");
    let Measured { s, v0, v1, text } = measure(
        "procs.json",
        &[
            "--duration",
            "5s",
            "--workload",
            "anon",
            "--zram",
            "--procs",
        ],
    );
    let local_mm = trace.count("reason:local MM shootdown (3)");
    drop(trace);
    assert_eq!(s["workload"]["processes"], s["workload"]["threads"]);
    within(
        "pages reclaimed vs pgsteal",
        u(&s, "/totals/pages_reclaimed"),
        delta(&v0, &v1, "pgsteal_anon") + delta(&v0, &v1, "pgsteal_file"),
        0.03,
    );
    // The workload's processes flush locally outside reclaim only when they exit.
    within(
        "immediate flushes vs the kernel's trace of local mm flushes",
        u(&s, "/totals/immediate_flushes"),
        local_mm,
        0.03,
    );
    let all = f(&s, "/flushes_per_reclaimed_folio");
    let immediate = f(&s, "/immediate_flushes_per_reclaimed_folio");
    assert!((0.9..=1.1).contains(&all), "flushes per folio {all}");
    assert!(
        immediate > 0.8 * all,
        "almost all immediate: {immediate} of {all}"
    );
    assert!(
        text.contains(&format!(
            "= {:.3} deferred + {immediate:.3} immediate",
            f(&s, "/deferred_flushes_per_reclaimed_folio")
        )),
        "the text headline gives the split"
    );
    assert_eq!(traces(), before, "left behind");
}
