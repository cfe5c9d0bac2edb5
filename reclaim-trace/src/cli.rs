//! The command line (DESIGN.md §6).

use std::{path::PathBuf, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::{
    export::compare::FailIf,
    plan::ProbeMode,
    units::{parse_duration, parse_size},
    workload::{Kind, WorkloadOptions},
};

const ABOUT: &str = "Measure what TLB flushing costs Linux page reclaim, on a live kernel (eBPF)";

const LONG_ABOUT: &str = "\
Measure what TLB flushing costs Linux page reclaim, on a live kernel (eBPF).

Three figures, by reclaim context and memory cgroup:
  flushes per reclaimed folio  reclaim TLB flushes / folios reclaimed (~1.0 for dirty anon
                               reclaim today, ~1/31 or less with batched dirty flushing)
  batch fill                   folios covered by each flush (histogram)
  IPI fan-out                  CPUs each flush had to reach (histogram)

Probes are chosen per signal at run time (fentry, kprobe, or tracepoints); `doctor` shows
the plan for this kernel. Needs root, or CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH (plus
CAP_SYSLOG where kernel.kptr_restrict=1); --workload needs CAP_SYS_ADMIN.";

const AFTER_HELP: &str = "\
Examples:
  sudo reclaim-trace summary --duration 30s       trace the whole machine for 30 s
  sudo reclaim-trace top                           live dashboard
  sudo reclaim-trace summary --workload anon --zram --duration 10s
                                                   the built-in workload in its own memcg
  reclaim-trace compare before.json after.json --fail-if 'flushes_per_reclaimed_folio>1.1'

Exit status: 0 success; 1 a `compare --fail-if` rule held; 2 an error (bad arguments or
files, privileges, kernel support, environment: the message says what to do).
Environment: RUST_LOG (log filter, like -v), NO_COLOR (no colours in help, logs and `top`).";

#[derive(Debug, Parser)]
#[command(
    name = "reclaim-trace",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// More log output on stderr (-v: info, -vv: debug).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Live dashboard: flushes per reclaimed folio, batch fill, IPI fan-out, by context,
    /// reclaimer and CPU (keys: q quit, p pause, r reset, tab views, s sort, e export, ? help).
    #[command(
        after_help = "Examples:\n  sudo reclaim-trace top\n  sudo reclaim-trace top --cgroup /system.slice --interval 2s\n  sudo reclaim-trace top --workload anon --zram"
    )]
    Top(TopArgs),
    /// Trace for a while, then print the summary (and write it as JSON).
    #[command(
        after_help = "Examples:\n  sudo reclaim-trace summary --duration 30s --json summary.json\n  sudo reclaim-trace summary --workload file --duration 10s\n  sudo reclaim-trace summary --workload anon --zram --json - | jq .flushes_per_reclaimed_folio"
    )]
    Summary(SummaryArgs),
    /// Show the kernel, privileges, and the probe chosen for every signal, and why; as root,
    /// also the anomalies the programs count in one second attached.
    #[command(
        after_help = "Examples:\n  reclaim-trace doctor          predicted plan (no privileges needed)\n  sudo reclaim-trace doctor     verified: loads and attaches every planned program, watches 1 s\n  sudo reclaim-trace doctor -v  ... and prints the first anomalies the programs log\n  sudo reclaim-trace doctor --json"
    )]
    Doctor(DoctorArgs),
    /// Record interval snapshots as JSON lines (one per --interval, then the whole run).
    #[command(
        after_help = "Examples:\n  sudo reclaim-trace record --output run.jsonl --duration 5m\n  sudo reclaim-trace record --output run.jsonl --interval 10s --workload anon --zram"
    )]
    Record(RecordArgs),
    /// Summarise a recording (no kernel or root needed).
    #[command(
        after_help = "Examples:\n  reclaim-trace report run.jsonl\n  reclaim-trace report run.jsonl --json summary.json"
    )]
    Report(ReportArgs),
    /// Compare two summaries or recordings (A = baseline, B = candidate), optionally as a gate.
    #[command(
        after_help = "Examples:\n  reclaim-trace compare baseline.json patched.json\n  reclaim-trace compare baseline.json patched.json --fail-if 'flushes_per_reclaimed_folio>1.1'\n\nExit status 1 when a --fail-if rule holds, 2 on an error."
    )]
    Compare(CompareArgs),
    /// Serve Prometheus/OpenMetrics on /metrics and the summary JSON on /snapshot.json.
    #[command(
        after_help = "Examples:\n  sudo reclaim-trace serve                       http://127.0.0.1:9464/metrics\n  sudo reclaim-trace serve --listen 0.0.0.0:9464 --interval 5s\n\nScrape config, rules and the Grafana dashboard: docs/fleet.md."
    )]
    Serve(ServeArgs),
    /// Run the built-in reclaim workload on its own (until --duration or Ctrl-C).
    #[command(
        after_help = "Examples:\n  sudo reclaim-trace workload --kind anon --zram --duration 30s\n  sudo reclaim-trace workload --kind file --sweeps 3"
    )]
    Workload(WorkloadArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  reclaim-trace completions bash > /etc/bash_completion.d/reclaim-trace\n  reclaim-trace completions zsh > ~/.zfunc/_reclaim-trace"
    )]
    Completions {
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Internal: the workload's child process.
    #[command(name = "__workload-child", hide = true)]
    WorkloadChild { spec: String },
    /// Internal (`cargo xtask bench`): attach do-nothing programs at the tool's attach points
    /// until SIGINT/SIGTERM.
    #[command(name = "__bench-floor", hide = true)]
    BenchFloor(BenchFloorArgs),
    /// Internal (`cargo xtask dist`): write the man pages (the tool's and one per subcommand)
    /// into DIR.
    #[command(name = "__man", hide = true)]
    Man { dir: PathBuf },
}

#[derive(Debug, Args, Clone)]
pub struct ProbeArgs {
    /// Most precise probe tier to use; `auto` picks the best available per signal.
    #[arg(long, value_enum, default_value_t = ProbeMode::Auto)]
    pub probe_mode: ProbeMode,
    /// Do not measure the stale-TLB window (per-folio bookkeeping in the precise tier: one
    /// map update per unmap and a lookup per pageout); for measuring what it costs.
    #[arg(long)]
    pub no_stale_window: bool,
    /// Size of the ring buffer that carries per-pass records to userspace (a power of two,
    /// 4K to 1G). Records that do not fit are dropped and counted (`drops: ring buffer` in the
    /// summary, `reclaim_trace_ringbuf_drops_total`); the totals are counted in the kernel and
    /// lose nothing.
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_ring_buffer_size)]
    pub ring_buffer_size: u32,
}

/// `--ring-buffer-size`: what the kernel accepts for a BPF ring buffer.
fn parse_ring_buffer_size(s: &str) -> Result<u32, String> {
    let v = parse_size(s)?;
    if !v.is_power_of_two() || !(4096..=1 << 30).contains(&v) {
        return Err(format!(
            "`{s}` is not a power of two between 4K and 1G (the kernel's ring-buffer sizes)"
        ));
    }
    Ok(v as u32)
}

/// Knobs of the built-in workload, shared by every command that can run it.
#[derive(Debug, Args, Clone)]
pub struct WorkloadTuning {
    /// Workload threads, each pinned to its own CPU [default: online CPUs, 2..16].
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Set up a temporary zram swap device when no swap is active (removed on exit).
    #[arg(long)]
    pub zram: bool,
    /// Run each writer as its own single-threaded process instead of a thread of one process
    /// (like stress-ng's vm workers): reclaim then flushes each unmap at once, locally
    /// (immediate flushes), instead of deferring it into a batch.
    #[arg(long)]
    pub procs: bool,
    /// Memory limit of the workload's cgroup.
    #[arg(long, value_name = "SIZE", default_value = "128M", value_parser = parse_size)]
    pub memcg_limit: u64,
    /// Memory the workload touches [default: 2.5 x --memcg-limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub size: Option<u64>,
    /// Directory for the file workload's data file (a disk filesystem, not tmpfs).
    #[arg(long, value_name = "DIR")]
    pub file_dir: Option<PathBuf>,
}

impl WorkloadTuning {
    pub fn options(&self, kind: Kind, duration: Option<Duration>) -> WorkloadOptions {
        WorkloadOptions {
            kind,
            threads: self.threads,
            memcg_limit: self.memcg_limit,
            size: self.size,
            zram: self.zram,
            file_dir: self.file_dir.clone(),
            duration,
            sweeps: None,
            procs: self.procs,
        }
    }
}

/// What every tracing command shares: the optional built-in workload and the probe choice.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// Run the built-in reclaim workload while tracing (stopped and removed at the end).
    #[arg(long, value_enum, value_name = "KIND")]
    pub workload: Option<Kind>,
    #[command(flatten)]
    pub tuning: WorkloadTuning,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// How long to trace (e.g. 10s, 2m).
    #[arg(long, value_name = "D", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Write the summary as JSON (schema reclaim-trace/summary/v2) to PATH, or `-` for stdout
    /// (the text summary then goes to stderr).
    #[arg(long, value_name = "PATH|-")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub session: SessionArgs,
    /// Turn on kernel BPF statistics for the run and report each program's run time and
    /// count (costs two clock reads per program run; restored afterwards).
    #[arg(long)]
    pub bpf_stats: bool,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// JSON-lines file to write (schema reclaim-trace/record/v2), or `-` for stdout.
    #[arg(long, short, value_name = "PATH|-")]
    pub output: PathBuf,
    /// Length of each interval line.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Stop after this long (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A recording written by `record`.
    #[arg(value_name = "FILE.jsonl")]
    pub file: PathBuf,
    /// Also write the summary as JSON to PATH, or `-` for stdout (text then goes to stderr).
    #[arg(long, value_name = "PATH|-")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Baseline: a summary JSON or a recording.
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// Candidate: a summary JSON or a recording.
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Print the comparison as JSON (schema reclaim-trace/compare/v1).
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when B/A of METRIC crosses RATIO, e.g. `flushes_per_reclaimed_folio>1.5` or
    /// `rates.folios_reclaimed_per_s<0.9`. METRIC is a dotted path into the summary JSON.
    #[arg(long = "fail-if", value_name = "METRIC>RATIO")]
    pub fail_if: Vec<FailIf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default; any other address exposes the statistics
    /// to whoever can reach it.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464")]
    pub listen: std::net::SocketAddr,
    /// How often the exported figures are refreshed.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Refresh interval (at least 100ms).
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Show only reclaimers in this memory cgroup and below: a path below the memory
    /// controller's mount (e.g. /system.slice) or a full cgroupfs path.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Show only reclaim done by this process (direct/memcg reclaim in its context).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Directory for the summary JSON files the `e` key writes [default: current directory].
    #[arg(long, value_name = "DIR")]
    pub export_dir: Option<PathBuf>,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Debug, Args)]
pub struct BenchFloorArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// Turn on kernel BPF statistics and print the floor programs' run time at exit (the
    /// fixed cost a program run has, to compare the tool's programs against).
    #[arg(long)]
    pub bpf_stats: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Debug, Args)]
pub struct WorkloadArgs {
    /// What to push through reclaim.
    #[arg(long, value_enum, default_value_t = Kind::Anon)]
    pub kind: Kind,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after each thread has written (or read) its share of the memory N times: a fixed
    /// amount of work, for timing it from outside.
    #[arg(long, value_name = "N")]
    pub sweeps: Option<u64>,
    #[command(flatten)]
    pub tuning: WorkloadTuning,
}

/// A clap error as one line: what is wrong, and the usage line that says what is expected.
/// (clap's own rendering spreads it over several lines with blank lines in between.)
pub fn one_line_error(rendered: &str) -> String {
    let mut what = Vec::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim) {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u.to_string());
        } else if line.is_empty() || line.starts_with("For more information") {
            continue;
        } else {
            what.push(line.trim_start_matches("error: ").to_string());
        }
    }
    let mut out = what.join(" ");
    if let Some(u) = usage {
        out.push_str(&format!(" (usage: {u}; see --help)"));
    } else {
        out.push_str(" (see --help)");
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn clap_errors_become_one_line() {
        for args in [
            &["reclaim-trace", "summary", "--bogus"][..],
            &["reclaim-trace", "compare"],
            &["reclaim-trace", "summary", "--probe-mode", "foo"],
            &[
                "reclaim-trace",
                "summary",
                "--duration",
                "1s",
                "--duration",
                "2s",
            ],
            &["reclaim-trace", "frobnicate"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            let line = one_line_error(&e.render().to_string());
            assert!(!line.contains('\n') && !line.is_empty(), "{args:?}: {line}");
            assert!(line.ends_with("see --help)"), "{args:?}: {line}");
            eprintln!("{line}");
        }
        let e = Cli::try_parse_from(["reclaim-trace", "compare"]).unwrap_err();
        let line = one_line_error(&e.render().to_string());
        assert!(
            line.contains("<A> <B>") && line.contains("usage: reclaim-trace compare"),
            "{line}"
        );
        let e = Cli::try_parse_from(["reclaim-trace", "summary", "--probe-mode", "x"]).unwrap_err();
        let line = one_line_error(&e.render().to_string());
        assert!(
            line.contains("[possible values: auto, fentry, kprobe, tracepoint]"),
            "{line}"
        );
    }

    #[test]
    fn every_command_has_examples_and_the_exit_statuses_are_documented() {
        let cli = Cli::command();
        let top = cli
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(top.contains("Exit status: 0 success; 1 "), "{top}");
        assert!(top.contains("NO_COLOR"), "{top}");
        for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("Examples:\n  ") && help.contains("reclaim-trace "),
                "`reclaim-trace {} --help` has no example",
                sub.get_name()
            );
        }
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &["reclaim-trace", "summary", "--duration", "0s"][..],
            &["reclaim-trace", "summary", "--duration", "soon"],
            &["reclaim-trace", "summary", "--workload", "bogus"],
            &["reclaim-trace", "summary", "--memcg-limit", "12X"],
            &["reclaim-trace", "frobnicate"],
            &[
                "reclaim-trace",
                "compare",
                "a.json",
                "b.json",
                "--fail-if",
                "ratio",
            ],
            &["reclaim-trace", "serve", "--listen", "localhost"],
            &["reclaim-trace", "record"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn top_takes_the_workload_knobs_and_filters() {
        let c = Cli::try_parse_from([
            "reclaim-trace",
            "top",
            "--workload",
            "anon",
            "--zram",
            "--threads",
            "2",
            "--cgroup",
            "/system.slice",
            "--pid",
            "42",
            "--interval",
            "500ms",
        ])
        .unwrap();
        let Command::Top(t) = c.command else { panic!() };
        assert_eq!(t.interval, Duration::from_millis(500));
        assert_eq!(t.session.workload, Some(Kind::Anon));
        assert_eq!(t.session.tuning.threads, Some(2));
        assert_eq!(
            t.cgroup.as_deref(),
            Some(std::path::Path::new("/system.slice"))
        );
        assert_eq!(t.pid, Some(42));
        let d = Cli::try_parse_from(["reclaim-trace", "top"]).unwrap();
        let Command::Top(t) = d.command else { panic!() };
        assert_eq!(t.interval, Duration::from_secs(1));
        let e = Cli::try_parse_from(["reclaim-trace", "top", "--pid", "x"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn summary_defaults() {
        let c = Cli::try_parse_from(["reclaim-trace", "summary", "--workload", "anon", "--zram"])
            .unwrap();
        let Command::Summary(s) = c.command else {
            panic!()
        };
        assert_eq!(s.duration, Duration::from_secs(10));
        assert_eq!(s.session.workload, Some(Kind::Anon));
        assert!(s.session.tuning.zram);
        assert_eq!(s.session.tuning.memcg_limit, 128 << 20);
        assert_eq!(s.session.tuning.options(Kind::Anon, None).size(), 320 << 20);
    }
}
