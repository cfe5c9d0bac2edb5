//! The checks on made-up summaries and counters.

use super::*;

fn summary(pages: u64, dirty: u64, pageouts: u64, fanout_top: u64) -> Value {
    serde_json::json!({
        "kernel": {"probe_mode": "fentry"},
        "totals": {"pages_reclaimed": pages, "dirty_flushes": dirty, "pageouts": pageouts,
                   "remote_shootdowns": 3000, "passes": 700},
        "tracer": {"pass_records": 700},
        "drops": {"ringbuf": 0},
        "by_context": {"reclaim_pages": {"pages_reclaimed": 0},
                       "other": {"pages_reclaimed": 0}},
        "flushes_per_reclaimed_folio": 1.0,
        "deferred_flushes_per_reclaimed_folio": 1.0,
        "batch_fill": {"exact": true, "p50": 1, "max": 1},
        "ipi_fanout": {"source": "csd_queue_cpu", "p50": 3, "max": 3,
                       "histogram": [{"le": 1, "count": 5}, {"le": fanout_top, "count": 7}]},
        "program_errors": {},
        "probe_plan": [{"signal": "reclaim_pass", "tier": "fentry"}],
    })
}

fn kernel(pgsteal: u64) -> KernelDeltas {
    KernelDeltas::from_text(
        "pgsteal_anon 100\npgsteal_file 0\npswpout 0\n",
        &format!(
            "pgsteal_anon {}\npgsteal_file 0\npswpout 5000\n",
            100 + pgsteal
        ),
        "  TLB:  1  1  Shootdowns\n",
        "  TLB:  1501  1501  Shootdowns\n",
    )
}

/// The names of the checks a run fails on a kernel that flushes once per dirty folio.
fn failed_checks(workload: &str, s: &Value, k: &KernelDeltas) -> Vec<String> {
    checks(workload, DirtyFlushes::PerFolio, s, k)
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| c.name)
        .collect()
}

#[test]
fn a_good_run_passes_every_check() {
    let k = kernel(5000);
    assert_eq!(k.tlb_irqs, Some(3000));
    let c = checks(
        "anon",
        DirtyFlushes::PerFolio,
        &summary(5000, 5000, 5000, 3),
        &k,
    );
    assert!(c.iter().all(|c| c.ok), "{c:#?}");
    assert!(
        table_row("6.12", "anon", &summary(5000, 5000, 5000, 3), &k).contains("| 3/3 (targets) |")
    );
}

/// A 64 kB mTHP run: 900 large folios (14,400 pages) and 600 base pages written.
fn mthp(folios: u64, unmatched: u64) -> (Value, KernelDeltas) {
    let pages = 15_000;
    let mut s = summary(pages, 1500, 1500, 3);
    s["totals"]["folios_reclaimed"] = folios.into();
    s["totals"]["unmatched_pages"] = unmatched.into();
    // 1,200 windows measured, 300 pageouts with read-only entries pending.
    for (k, v) in [
        ("pageout_calls", 1500),
        ("pageouts_before_flush", 0),
        ("pageouts_readonly_pending", 300),
        ("pageouts_undeferred", 0),
        ("window_unknown", 0),
        ("pageouts_not_unmapped", 0),
    ] {
        s["totals"][k] = v.into();
    }
    s["unflushed_window_ns"] = serde_json::json!({"count": 1200, "p50": 4096, "p99": 8192});
    let k = KernelDeltas::from_text(
        "pgsteal_anon 0\npswpout 0\nthp_swpout 7\nmthp_swpout_64kB 100\nmthp_swpout_2048kB 7\n",
        "pgsteal_anon 15000\npswpout 15000\nthp_swpout 7\nmthp_swpout_64kB 1000\n\
         mthp_swpout_2048kB 7\n",
        "",
        "",
    );
    (s, k)
}

#[test]
fn large_folios_count_once_against_the_per_size_counters() {
    let (s, k) = mthp(1500, 0);
    assert_eq!((k.large_swpout, k.large_swpout_pages), (900, 14_400));
    assert_eq!(k.folios_written(), 1500);
    let c = checks("mthp", DirtyFlushes::PerFolio, &s, &k);
    assert!(c.iter().all(|c| c.ok), "{c:#?}");
    // Pages counted as folios, or frees that did not add up: caught.
    let failed = |(s, k): (Value, KernelDeltas)| failed_checks("mthp", &s, &k);
    assert_eq!(
        failed(mthp(15_000, 0)),
        vec!["folios reclaimed vs folios written (large + base pages of pswpout)"]
    );
    assert_eq!(
        failed(mthp(1500, 100)),
        vec!["every pass's freed folios add up to its pages (within 0.1%)"]
    );
    // Pageouts the window did not see with their flush done (or harmless): caught.
    let (mut s, k) = mthp(1500, 0);
    s["totals"]["pageouts_readonly_pending"] = 0.into();
    assert_eq!(
        failed((s, k)),
        vec!["every pageout accounted for by the stale-TLB window"]
    );
    // Without per-size counters, thp_swpout is PMD-sized.
    let k = KernelDeltas::from_text(
        "thp_swpout 1\npswpout 0\n",
        "thp_swpout 3\npswpout 1030\n",
        "",
        "",
    );
    assert_eq!(k.folios_written(), 2 + 6);
}

#[test]
fn mismatches_fail() {
    let k = kernel(5000);
    let failed = |s: Value| failed_checks("anon", &s, &k);
    assert_eq!(
        failed(summary(5100, 5000, 5000, 3)),
        vec!["pages reclaimed (LRU) vs pgsteal_anon+pgsteal_file"]
    );
    assert_eq!(
        failed(summary(5000, 4000, 5000, 3)),
        vec!["dirty flushes vs pageouts"]
    );
    assert_eq!(
        failed(summary(5000, 5000, 5000, 1)),
        vec!["fan-out reaches 2 or more CPUs"]
    );
    // MGLRU: pageout() may keep folios after their dirty flush; the counts must bracket.
    let mut m = summary(5000, 5200, 5000, 3);
    m["kernel"]["lru_gen"] = true.into();
    m["totals"]["dirty_flushes_without_pageout"] = 250.into();
    m["totals"]["dirty_flush_calls"] = 5300.into();
    assert!(failed(m.clone()).is_empty());
    m["totals"]["dirty_flushes_without_pageout"] = 100.into();
    assert_eq!(
        failed(m),
        vec!["MGLRU: dirty flushes - kept <= pageouts <= dirty-flush calls"]
    );
    // A pass whose record never arrived (a batch left in the kernel, say).
    let mut lost = summary(5000, 5000, 5000, 3);
    lost["tracer"]["pass_records"] = 699.into();
    assert_eq!(failed(lost), vec!["every pass has its record"]);
    // Nothing reclaimed at all proves nothing.
    assert!(
        !checks(
            "anon",
            DirtyFlushes::PerFolio,
            &summary(0, 0, 0, 3),
            &kernel(0)
        )[1]
        .ok
    );
}

#[test]
fn the_stale_window_check_fails_on_a_pageout_before_its_flush() {
    let with = |before: u64| {
        let mut s = summary(5000, 5000, 5000, 3);
        s["totals"]["pageouts_before_flush"] = before.into();
        s["unflushed_window_ns"] = serde_json::json!({"count": 5000, "p50": 4095, "p99": 65535});
        s
    };
    // (made, ok)
    let ok = |d, s: &Value| {
        let c = window_check(d, s, 1000);
        (c.made, c.ok)
    };
    assert_eq!(ok(DirtyFlushes::PerFolio, &with(0)), (true, true));
    assert_eq!(ok(DirtyFlushes::PerFolio, &with(1)), (true, false));
    assert_eq!(
        ok(DirtyFlushes::WrittenBeforeFlush, &with(0)),
        (true, false)
    );
    assert_eq!(
        ok(DirtyFlushes::WrittenBeforeFlush, &with(4000)),
        (true, true)
    );
    // Not measured (tracepoint tier, pageout inlined): a check not made, listed as such, not a
    // pass.
    assert_eq!(
        ok(DirtyFlushes::PerFolio, &summary(5000, 5000, 5000, 3)),
        (false, true)
    );
}

/// A run whose kernel gave no way to make a check, or that was booted again, says so in the
/// matrix table's last column.
#[test]
fn checks_not_made_and_retries_are_the_tables_last_column() {
    let mut s = summary(5000, 5000, 5000, 3);
    s["ipi_fanout"]["source"] = "batch_cpumask".into();
    let k = kernel(5000);
    let c = checks("anon", DirtyFlushes::PerFolio, &s, &k);
    let not_made: Vec<&str> = c
        .iter()
        .filter(|c| !c.made)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        not_made,
        [
            "stale-TLB window",
            "remote shootdowns (csd targets) vs /proc/interrupts TLB"
        ]
    );
    let mut r = crate::vm::RunResult {
        name: "x/anon".into(),
        checks: c,
        row: None,
        summary: None,
        deltas: None,
        wall_s: 1.0,
        dir: "/tmp".into(),
        workload_oom_killed: false,
        retries: vec!["boot 1 failed early, booted again".into()],
    };
    let caveats = r.caveats();
    assert!(
        caveats.starts_with(
            "boot 1 failed early, booted again; not checked: stale-TLB window (not measured"
        ),
        "{caveats}"
    );
    assert!(caveats.contains("not checked: remote shootdowns (csd targets) vs /proc/interrupts TLB (no csd:csd_queue_cpu targets on this kernel"), "{caveats}");
    r.retries.clear();
    r.checks.retain(|c| c.made);
    assert_eq!(r.caveats(), "-");
}

#[test]
fn batched_expectation_from_pass_pageouts() {
    let h =
        serde_json::json!([{"le": 31, "count": 2}, {"le": 32, "count": 1}, {"le": 6, "count": 4}]);
    // 2 x 1 + 1 x 2 + 4 x 1
    assert_eq!(batched_flush_bounds(&h, 31), Some((8, 8)));
    let open = serde_json::json!([{"le": "+Inf", "count": 1}]);
    assert_eq!(batched_flush_bounds(&open, 31), None);
}

/// arm64: a broadcast run, its counters with the guest's function-call interrupts.
fn broadcast(ipis: u64, calls: u64, histogram: Value) -> (Value, KernelDeltas) {
    let mut s = summary(5000, 5000, 5000, 3);
    s["totals"]["deferred_flushes"] = 5000.into();
    s["totals"]["ipis"] = ipis.into();
    s["kernel"]["online_cpus"] = 4.into();
    s["ipi_fanout"] = serde_json::json!({"source": "broadcast", "broadcast_cpus": 4,
        "p50": null, "max": null, "histogram": histogram, "candidates": null,
        "flushes_without_ipi": 5000});
    let irqs = |n: u64| format!("           CPU0\nIPI1: {n} Function call interrupts\n");
    let k = KernelDeltas::from_text(
        "pgsteal_anon 100\npswpout 0\n",
        "pgsteal_anon 5100\npswpout 5000\n",
        &irqs(100),
        &irqs(100 + calls),
    );
    (s, k)
}

#[test]
fn arm64_flushes_must_be_broadcast_without_ipis() {
    let (s, k) = broadcast(1, 1200, serde_json::json!([]));
    assert_eq!(failed_checks("anon", &s, &k), Vec::<String>::new());
    assert!(table_row("6.12", "anon", &s, &k).contains("| all 4, 0 IPIs (broadcast) |"));
    // One IPI per flush, interrupts to match: flushes sent by IPI.
    let (s, k) = broadcast(5000, 15000, serde_json::json!([]));
    assert_eq!(
        failed_checks("anon", &s, &k),
        [
            "flushes are broadcast: no IPI targets, < 1 IPI per 100 flushes",
            "/proc/interrupts: fewer function calls than flushes"
        ]
    );
    // A per-CPU histogram shown beside a broadcast.
    let (s, k) = broadcast(0, 100, serde_json::json!([{"le": 0, "count": 5000}]));
    assert_eq!(
        failed_checks("anon", &s, &k),
        ["flushes are broadcast: no IPI targets, < 1 IPI per 100 flushes"]
    );
}
