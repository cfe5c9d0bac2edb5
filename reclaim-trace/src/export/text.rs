//! The human-readable summary: one function per section, in the order they are printed.

use std::fmt::Write as _;

use super::summary::{IpiFanout, Summary, TracerInfo, WorkloadInfo};
use crate::aggregate::{
    HistStats,
    hist::{Bucket, Le},
};

/// `1234567` → `1,234,567`.
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A ratio (flushes per folio and similar) with three decimals, `n/a` when undefined; the
/// dashboard shows its ratios with this too.
pub fn opt_ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"))
}

/// A bar chart of the non-empty buckets, `width` characters for the largest.
pub fn bars(buckets: &[Bucket], width: usize) -> String {
    let mut out = String::new();
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0);
    for b in buckets {
        let label = match b.le {
            Le::Value(v) if v <= 64 => format!("{v:>6}"),
            Le::Value(v) => format!("<={v:<4}"),
            Le::Inf(_) => "  +Inf".to_string(),
        };
        let n = if max == 0 {
            0
        } else {
            ((b.count as f64 / max as f64) * width as f64).ceil() as usize
        };
        let _ = writeln!(
            out,
            "  {label} | {:<width$} {}",
            "#".repeat(n),
            thousands(b.count)
        );
    }
    out
}

/// `c` padded with spaces to `w` characters: on the right when `left` (aligned left), else on
/// the left. By hand, not with a format width: one above `u16::MAX` panics, and a cell read
/// from a file (a cgroup path, a command) can be that long.
fn pad(c: &str, w: usize, left: bool) -> String {
    let fill = " ".repeat(w.saturating_sub(c.chars().count()));
    if left {
        format!("{c}{fill}")
    } else {
        format!("{fill}{c}")
    }
}

/// Columns are padded to their widest cell up to this many characters; a longer cell (a path
/// or a command list in a crafted file) sticks out instead of widening every row, which made
/// the table grow as rows × width (3,000 plan rows and one 1 MiB source: 2 GB).
const MAX_COLUMN: usize = 256;

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count().min(MAX_COLUMN));
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let numeric = rows.iter().all(|r| {
                    r[i].chars()
                        .all(|ch| ch.is_ascii_digit() || ",.-/a".contains(ch))
                });
                pad(c, widths[i], i == 0 || !numeric)
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let _ = writeln!(
        out,
        "  {}",
        line(header.iter().map(|s| s.to_string()).collect())
    );
    for r in rows {
        let _ = writeln!(out, "  {}", line(r.clone()));
    }
}

/// `n 300  mean 0.97  p50 1  p99 1  max 1`: histogram statistics on one line.
fn stats_line(h: &HistStats) -> String {
    let u = |v: Option<u64>| match v {
        Some(u64::MAX) => "+Inf".to_string(),
        Some(v) => v.to_string(),
        None => "-".to_string(),
    };
    format!(
        "n {}  mean {}  p50 {}  p99 {}  max {}",
        h.count,
        h.mean
            .map_or_else(|| "-".to_string(), |m| format!("{m:.2}")),
        u(h.p50),
        u(h.p99),
        u(h.max)
    )
}

pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    header(&mut o, s);
    headline(&mut o, s);
    totals(&mut o, s);
    distributions(&mut o, s);
    stale_window(&mut o, s);
    contexts(&mut o, s);
    cgroups(&mut o, s);
    probe_plan(&mut o, s);
    drops(&mut o, s);
    if let Some(t) = &s.tracer {
        tracer(&mut o, t);
    }
    program_errors(&mut o, s);
    anomalies(&mut o, s);
    o
}

/// The run: duration, kernel, probe mode, and the built-in workload when one ran.
fn header(o: &mut String, s: &Summary) {
    let _ = writeln!(
        o,
        "reclaim-trace summary: {:.1} s on Linux {} ({}, {} CPUs), probe mode {}",
        s.duration_s, s.kernel.release, s.kernel.machine, s.kernel.online_cpus, s.kernel.probe_mode
    );
    if let Some(w) = &s.workload {
        workload(o, w);
    }
    let _ = writeln!(o);
}

fn workload(o: &mut String, w: &WorkloadInfo) {
    let _ = writeln!(
        o,
        "workload: {} x{} {}{}, {} MiB in a {} MiB memcg ({} v{}), swap: {}",
        w.kind,
        w.threads,
        if w.processes > 1 {
            "single-threaded processes"
        } else {
            "threads"
        },
        if w.thp_sizes_kb.is_empty() {
            String::new()
        } else {
            let kb: Vec<String> = w.thp_sizes_kb.iter().map(|k| format!("{k}K")).collect();
            format!(" (THP sizes allowed: {})", kb.join(" "))
        },
        w.size_bytes >> 20,
        w.memcg_limit_bytes >> 20,
        w.cgroup,
        w.cgroup_version,
        w.swap
    );
    if let Some(r) = &w.result {
        let per_thread: Vec<String> = r
            .pages_per_s_by_thread
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect();
        let _ = writeln!(
            o,
            "workload did: {:.0} pages/s over {:.1} s (per thread: {}); {} pages read back, {} \
             corrupt",
            r.pages_per_s,
            r.elapsed_s,
            per_thread.join(" "),
            thousands(r.pages_verified),
            thousands(r.corrupt_pages)
        );
    }
}

/// The figures a patch is judged by: flushes and IPIs per reclaimed folio, and the rates.
fn headline(o: &mut String, s: &Summary) {
    let t = &s.totals;
    let pf = &s.per_folio;
    if !s.flushes_observed() {
        let _ = writeln!(
            o,
            "  flushes per reclaimed folio       n/a   (no probe sees reclaim flushes on this \
             kernel: see the flush row of the probe plan)"
        );
        let _ = writeln!(o, "  {}", folios_line(s));
        let _ = writeln!(
            o,
            "  rates: {:.0} folios/s reclaimed, {:.0} passes/s",
            s.rates.folios_reclaimed_per_s, s.rates.passes_per_s
        );
        return;
    }
    let _ = writeln!(
        o,
        "  flushes per reclaimed folio  {:>8}   = {} deferred + {} immediate   ({} reclaim flushes / {} folios)",
        opt_ratio(pf.flushes_per_reclaimed_folio),
        opt_ratio(pf.deferred_flushes_per_reclaimed_folio),
        opt_ratio(pf.immediate_flushes_per_reclaimed_folio),
        thousands(t.flushes),
        thousands(t.folios_reclaimed)
    );
    let _ = writeln!(o, "  {}", folios_line(s));
    let _ = writeln!(
        o,
        "  IPIs per reclaimed folio     {:>8}   ({} IPIs)",
        opt_ratio(s.ipis_per_reclaimed_folio),
        thousands(t.ipis)
    );
    let _ = writeln!(
        o,
        "  rates: {:.0} folios/s reclaimed, {:.0} flushes/s, {:.0} IPIs/s, {:.0} passes/s",
        s.rates.folios_reclaimed_per_s,
        s.rates.flushes_per_s,
        s.rates.ipis_per_s,
        s.rates.passes_per_s
    );
}

fn totals(o: &mut String, s: &Summary) {
    let t = &s.totals;
    let _ = writeln!(o, "\ntotals");
    let _ = writeln!(
        o,
        "  passes {}   folios in {}   reclaimed {} (pages {})   scanned {} pages   pageouts {}",
        thousands(t.passes),
        thousands(t.folios_in),
        thousands(t.folios_reclaimed),
        thousands(t.pages_reclaimed),
        thousands(t.pages_scanned),
        thousands(t.pageouts)
    );
    if !s.flushes_observed() {
        let _ = writeln!(
            o,
            "  flushes: not observed on this kernel (see the probe plan)"
        );
        return;
    }
    let _ = writeln!(
        o,
        "  flushes {} = deferred {} (dirty {} + batch {}) + immediate {}   outside reclaim {}",
        thousands(t.flushes),
        thousands(t.deferred_flushes),
        thousands(t.dirty_flushes),
        thousands(t.batch_flushes),
        // arm64 has no event for an immediate flush: its 0 is not a count.
        if broadcast_cpus(s).is_some() {
            "n/a".to_string()
        } else {
            thousands(t.immediate_flushes)
        },
        thousands(t.other_flushes)
    );
    if let Some(cpus) = broadcast_cpus(s) {
        let _ = writeln!(
            o,
            "  fan-out: broadcast to all {cpus} CPUs (TLBI, no per-CPU targets)   IPIs {}   \
             flushes without IPI {}",
            thousands(t.ipis),
            thousands(t.flushes_without_ipi)
        );
        let _ = writeln!(
            o,
            "  remote shootdowns: n/a (the TLBIs are broadcast in hardware; no CPU is sent a flush)"
        );
        return;
    }
    let _ = writeln!(
        o,
        "  fan-out: targets {}   candidates {}   IPIs {}   flushes without IPI {}",
        thousands(t.fanout_targets),
        if s.ipi_fanout.candidates.is_some() {
            thousands(t.fanout_candidates)
        } else {
            "n/a".to_string()
        },
        thousands(t.ipis),
        thousands(t.flushes_without_ipi)
    );
    let by_cpu: Vec<String> = s
        .remote_shootdowns_by_cpu
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0)
        .map(|(i, v)| format!("cpu{i} {}", thousands(*v)))
        .collect();
    let _ = writeln!(
        o,
        "  remote shootdowns received {} ({})   traced on the victims {}",
        thousands(t.remote_shootdowns),
        if by_cpu.is_empty() {
            "none".to_string()
        } else {
            by_cpu.join(", ")
        },
        thousands(t.remote_shootdowns_traced)
    );
}

/// The CPUs every flush reached where flushes are a hardware broadcast (arm64).
fn broadcast_cpus(s: &Summary) -> Option<u32> {
    (s.ipi_fanout.source == IpiFanout::BROADCAST)
        .then_some(s.ipi_fanout.broadcast_cpus.unwrap_or(0))
}

/// Batch fill and IPI fan-out: their statistics and bar charts.
fn distributions(o: &mut String, s: &Summary) {
    if !s.flushes_observed() {
        let _ = writeln!(
            o,
            "\nbatch fill and fan-out: not observed (no probe sees the flushes)"
        );
        return;
    }
    let bf = &s.batch_fill.stats;
    let _ = writeln!(
        o,
        "\nbatch fill: folios per flush{}   {}",
        if s.batch_fill.exact {
            ""
        } else {
            " (estimated: unmaps not observable)"
        },
        stats_line(bf)
    );
    o.push_str(&bars(&bf.histogram, 40));
    let f = &s.ipi_fanout;
    if let Some(cpus) = broadcast_cpus(s) {
        let _ = writeln!(
            o,
            "\nTLB flush reach: broadcast (TLBI to all {cpus} CPUs at unmap; the flush waits \
             for it: no IPIs)   {} flushes without IPI",
            thousands(f.flushes_without_ipi)
        );
        if let Some(i) = &f.ipis {
            let _ = writeln!(o, "  IPIs per flush               {}", stats_line(i));
        }
        return;
    }
    let _ = writeln!(
        o,
        "\nIPI fan-out: CPUs per flush ({})   {}",
        f.source,
        stats_line(&f.stats)
    );
    o.push_str(&bars(&f.stats.histogram, 40));
    if let Some(c) = &f.candidates {
        let _ = writeln!(o, "  candidates (batch cpumask)   {}", stats_line(c));
    }
    if let Some(i) = &f.ipis {
        let _ = writeln!(o, "  IPIs per flush               {}", stats_line(i));
    }
}

fn contexts(o: &mut String, s: &Summary) {
    let _ = writeln!(o, "\nby reclaim context");
    let rows: Vec<Vec<String>> = s
        .by_context
        .iter()
        .filter(|(_, c)| c.totals.passes != 0)
        .map(|(name, c)| {
            vec![
                name.clone(),
                thousands(c.totals.passes),
                thousands(c.totals.folios_reclaimed),
                thousands(c.totals.pageouts),
                thousands(c.totals.dirty_flushes),
                thousands(c.totals.batch_flushes),
                thousands(c.totals.immediate_flushes),
                thousands(c.totals.ipis),
                opt_ratio(c.per_folio.flushes_per_reclaimed_folio),
            ]
        })
        .collect();
    if rows.is_empty() {
        let _ = writeln!(o, "  (no reclaim observed)");
    } else {
        table(
            o,
            &[
                "context",
                "passes",
                "reclaimed",
                "pageouts",
                "dirty fl",
                "batch fl",
                "immed fl",
                "IPIs",
                "fl/folio",
            ],
            &rows,
        );
    }
}

fn cgroups(o: &mut String, s: &Summary) {
    if s.by_cgroup.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nby memory cgroup");
    let rows: Vec<Vec<String>> = s
        .by_cgroup
        .iter()
        .map(|c| {
            vec![
                c.label(),
                c.commands.join(","),
                thousands(c.totals.passes),
                thousands(c.totals.folios_reclaimed),
                thousands(c.totals.flushes),
                opt_ratio(c.per_folio.flushes_per_reclaimed_folio),
            ]
        })
        .collect();
    table(
        o,
        &[
            "cgroup",
            "commands",
            "passes",
            "reclaimed",
            "flushes",
            "fl/folio",
        ],
        &rows,
    );
}

fn probe_plan(o: &mut String, s: &Summary) {
    let _ = writeln!(o, "\nprobe plan (mode {})", s.kernel.probe_mode);
    let rows: Vec<Vec<String>> = s
        .probe_plan
        .iter()
        .map(|r| vec![r.signal.clone(), r.tier.clone(), r.source.clone()])
        .collect();
    table(o, &["signal", "tier", "source"], &rows);
    for r in s.probe_plan.iter().filter(|r| r.note.is_some()) {
        let _ = writeln!(
            o,
            "  note {}: {}",
            r.signal,
            r.note.as_deref().unwrap_or("")
        );
    }
}

fn drops(o: &mut String, s: &Summary) {
    let _ = writeln!(
        o,
        "\ndrops: ring buffer {}, decode errors {}, flush records {}{}",
        thousands(s.drops.ringbuf),
        thousands(s.drops.decode_errors),
        thousands(s.drops.flush_records),
        if s.drops.ringbuf > 0 {
            "  (lost pass records only shorten the per-cgroup table; totals come from in-kernel counters)"
        } else {
            ""
        }
    );
}

/// The tracer's own cost: load time, records, userspace CPU, and its BPF programs.
fn tracer(o: &mut String, t: &TracerInfo) {
    let _ = writeln!(
        o,
        "tracer: load+attach {:.2} s, {} pass records{}{}",
        t.load_attach_s,
        thousands(t.pass_records),
        t.cpu_s
            .zip(t.cpu_pct())
            .map(|(c, pct)| format!(
                ", userspace CPU {c:.2} s over {:.1} s ({pct:.2}% of one core)",
                t.traced_s
            ))
            .unwrap_or_default(),
        t.hot_events
            .map(|h| format!(", {} hot events handled in the kernel", thousands(h)))
            .unwrap_or_default()
    );
    if let Some(progs) = &t.programs {
        let rows: Vec<Vec<String>> = progs
            .iter()
            .filter(|p| p.run_count > 0)
            .map(|p| {
                vec![
                    p.name.clone(),
                    thousands(p.run_count),
                    format!("{:.0}", p.ns_per_run().unwrap_or_default()),
                    format!("{:.1}", p.run_time_ns as f64 / 1e6),
                ]
            })
            .collect();
        table(o, &["BPF program", "runs", "ns/run", "total ms"], &rows);
    }
}

/// The kernel side's anomalies, when there were any.
fn anomalies(o: &mut String, s: &Summary) {
    let seen: Vec<String> = s
        .anomalies
        .iter()
        .filter(|(_, v)| **v != 0)
        .map(|(k, v)| format!("{k} {}", thousands(*v)))
        .collect();
    if !seen.is_empty() {
        let _ = writeln!(
            o,
            "kernel-side anomalies: {} (the first ones are logged with -v)",
            seen.join(", ")
        );
    }
}

fn program_errors(o: &mut String, s: &Summary) {
    if !s.program_errors.is_empty() {
        let errs: Vec<String> = s
            .program_errors
            .iter()
            .map(|(k, v)| format!("{k} {}", thousands(*v)))
            .collect();
        let _ = writeln!(o, "program errors: {}", errs.join(", "));
    }
}

/// What the folio count is: counted one by one and exact, counted with some passes that did
/// not add up, or base pages standing in.
fn folios_line(s: &Summary) -> String {
    let t = &s.totals;
    if !s.folios_counted() {
        return format!(
            "folios not counted on this kernel: the {} reclaimed base pages stand in for them",
            thousands(t.pages_reclaimed)
        );
    }
    let head = format!(
        "reclaimed {} folios = {} base pages",
        thousands(t.folios_reclaimed),
        thousands(t.pages_reclaimed)
    );
    if s.folios_exact {
        format!("{head} (counted one by one: every pass's folios add up to its pages)")
    } else {
        format!(
            "{head}; folio count not exact: {} pages in {} passes did not add up",
            thousands(t.unmatched_pages),
            thousands(t.unmatched_passes)
        )
    }
}

/// The stale-TLB window section (precise tier only).
fn stale_window(o: &mut String, s: &Summary) {
    let (Some(w), Some(f)) = (&s.unflushed_window_ns, &s.flush_to_pageout_ns) else {
        return;
    };
    let t = &s.totals;
    let _ = writeln!(
        o,
        "\nstale-TLB window per written-out folio (ns, power-of-two buckets)\n  \
         unmap -> covering flush   {}\n  flush -> pageout          {}\n  \
         pageouts before their flush {} (0 on a correct kernel)   read-only entries pending {}   \
         unflushed at once {}   not unmapped by the pass {}   flush time lost {}",
        stats_line(w),
        stats_line(f),
        thousands(t.pageouts_before_flush),
        thousands(t.pageouts_readonly_pending),
        thousands(t.pageouts_undeferred),
        thousands(t.pageouts_not_unmapped),
        thousands(t.window_unknown)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        export::summary::tests::{anon_window, summarize},
        plan::{Failures, ProbeMode, plan, tests::FakeKernel},
    };

    /// arm64: the precise tier shows the broadcast and no immediate count; the tracepoint tier
    /// (no flush probe) prints no flush figure at all, never a 0 that looks measured.
    #[test]
    fn arm64_text_says_broadcast_and_what_it_cannot_see() {
        let facts = FakeKernel::debian_6_12_arm64().facts();
        let precise = plan(&facts, ProbeMode::Auto, &Failures::default()).unwrap();
        let t = render(&summarize(&anon_window(), &precise));
        assert!(t.contains("fan-out: broadcast to all"), "{t}");
        assert!(t.contains("+ immediate n/a"), "{t}");
        assert!(t.contains("remote shootdowns: n/a"), "{t}");
        assert!(t.contains("TLB flush reach: broadcast"), "{t}");
        let tp = plan(&facts, ProbeMode::Tracepoint, &Failures::default()).unwrap();
        let t = render(&summarize(&anon_window(), &tp));
        assert!(
            t.contains("flushes per reclaimed folio       n/a   (no probe"),
            "{t}"
        );
        assert!(t.contains("flushes: not observed"), "{t}");
        assert!(!t.contains("IPIs per reclaimed folio"), "{t}");
        assert!(!t.contains("flushes 0"), "{t}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(98535), "98,535");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    /// A cell longer than `u16::MAX` characters (a cgroup path in a recording) made the table's
    /// format width panic ("Formatting argument out of range", found by `cargo xtask fuzz`),
    /// and every other row was padded to its width.
    #[test]
    fn tables_take_cells_of_any_length() {
        let long = "é".repeat(70_000);
        let mut out = String::new();
        table(
            &mut out,
            &["cgroup", "folios"],
            &[
                vec![long.clone(), "1".into()],
                vec!["/a".into(), "12".into()],
            ],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[1],
            format!("  {long}  {:>6}", 1),
            "numbers aligned right"
        );
        // The long cell sticks out; the other rows are not padded to its width.
        assert_eq!(lines[2], format!("  {:<MAX_COLUMN$}  {:>6}", "/a", 12));
        assert!(out.len() < 2 * long.len() + 3 * (MAX_COLUMN + 20));
        assert_eq!(pad("ab", 4, true), "ab  ");
        assert_eq!(pad("ab", 4, false), "  ab");
        assert_eq!(pad("abcdef", 4, false), "abcdef");
    }
}

#[cfg(test)]
mod render_tests {
    #[test]
    fn text_summary_snapshot() {
        let s = crate::export::summary::tests::anon_summary();
        insta::assert_snapshot!("text_summary_anon", super::render(&s));
    }

    /// Anomalies get a line only when there were some, naming each kind seen.
    #[test]
    fn anomalies_are_named_when_seen() {
        let mut s = crate::export::summary::tests::anon_summary();
        assert!(!super::render(&s).contains("anomalies"));
        s.anomalies.insert("pass_end_without_start".into(), 1234);
        s.anomalies.insert("failed_read".into(), 0);
        let text = super::render(&s);
        assert!(
            text.contains(
                "kernel-side anomalies: pass_end_without_start 1,234 (the first ones are \
                 logged with -v)"
            ),
            "{text}"
        );
    }
}
