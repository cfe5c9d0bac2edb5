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

use std::{
    fs,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::{
    setup,
    util::{is_root, run, workspace_root},
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

/// A background tracer: started, waited for until attached, stopped with SIGINT.
struct Tracer {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// `stop` waited for it; otherwise dropping it stops it (see `Drop`).
    reaped: bool,
    /// The command, for messages.
    what: String,
}

impl Tracer {
    fn start(mut c: Command, ready: &str) -> Result<Tracer> {
        // bpftrace announces on stdout, reclaim-trace on stderr: read both.
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {c:?}"))?;
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let err = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                for l in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        // Only the readers hold senders now: the channel closes when the tracer exits.
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(ready) => break,
                Ok(l) => said.push(l),
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    let why = match e {
                        mpsc::RecvTimeoutError::Timeout => "did not attach within 60 s".to_string(),
                        mpsc::RecvTimeoutError::Disconnected => format!(
                            "exited before it attached ({})",
                            status.map_or_else(|e| e.to_string(), |s| s.to_string())
                        ),
                    };
                    let tail = said[said.len().saturating_sub(5)..].join("\n  ");
                    bail!("{c:?} {why}; its last words:\n  {tail}");
                }
            }
        }
        // bpftrace announces before it attaches; give every tracer the same settling time.
        thread::sleep(Duration::from_secs(1));
        Ok(Tracer {
            child,
            lines: rx,
            reaped: false,
            what: format!("{c:?}"),
        })
    }

    /// SIGINT, wait, and return (exit ok, user+sys CPU s, peak RSS KiB, lifetime lines).
    fn stop(mut self) -> Result<(bool, f64, u64, Vec<String>)> {
        let (status, ru) = self.interrupt_and_reap()?;
        let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
        let lines: Vec<String> = self.lines.try_iter().collect();
        Ok((
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            cpu,
            ru.ru_maxrss as u64,
            lines,
        ))
    }

    /// SIGINT, repeated every `RESIGNAL` until the tracer exits, and SIGKILL after
    /// `STOP_DEADLINE`: bpftrace v0.17.0 (Debian 12) once stayed in epoll_wait for 15 minutes
    /// after a SIGINT it had caught (a 3 s session, 6.18.44), and left at the second one. A
    /// second SIGINT is harmless to reclaim-trace (its session has already ended).
    fn interrupt_and_reap(&mut self) -> Result<(i32, libc::rusage)> {
        const RESIGNAL: Duration = Duration::from_secs(5);
        const STOP_DEADLINE: Duration = Duration::from_secs(30);
        let pid = self.child.id() as i32;
        let t = Instant::now();
        let mut sent = 0u32;
        let mut status = 0;
        // SAFETY: rusage is plain data.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            if t.elapsed() >= RESIGNAL * sent {
                // SAFETY: signalling our own child, not yet reaped (its pid is still ours).
                unsafe { libc::kill(pid, libc::SIGINT) };
                sent += 1;
            }
            // SAFETY: wait4 on our own child with valid pointers.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
            if r == pid {
                self.reaped = true;
                return Ok((status, ru));
            }
            if r < 0 {
                bail!("wait4({pid}) failed: {}", std::io::Error::last_os_error());
            }
            if t.elapsed() >= STOP_DEADLINE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.reaped = true;
                bail!(
                    "{} did not exit within {} s of SIGINT (sent {sent} times): killed",
                    self.what,
                    STOP_DEADLINE.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A tracer still running when an error ends the bench early (a later tracer did not start,
/// the workload failed): stopped as `stop` would, so that none outlives the bench (the tool
/// runs `--duration 1h`).
impl Drop for Tracer {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.interrupt_and_reap();
        }
    }
}

/// Kernel-wide BPF run-time statistics on (`kernel.bpf_stats_enabled`), restored on drop.
struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> Result<BpfStats> {
        let previous =
            fs::read_to_string(BPF_STATS).with_context(|| format!("cannot read {BPF_STATS}"))?;
        fs::write(BPF_STATS, "1").with_context(|| format!("cannot enable {BPF_STATS}"))?;
        Ok(BpfStats { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, self.previous.trim());
    }
}

/// Run time, runs and recursion misses summed over the BPF programs `pid` holds open.
#[derive(Default)]
struct ProgStats {
    programs: u64,
    run_time_ns: u64,
    run_cnt: u64,
    recursion_misses: u64,
}

impl ProgStats {
    /// What accumulated since `before` (the program count is this snapshot's).
    fn since(&self, before: &ProgStats) -> ProgStats {
        ProgStats {
            programs: self.programs,
            run_time_ns: self.run_time_ns.saturating_sub(before.run_time_ns),
            run_cnt: self.run_cnt.saturating_sub(before.run_cnt),
            recursion_misses: self
                .recursion_misses
                .saturating_sub(before.recursion_misses),
        }
    }
}

/// One workload run with `tracers` attached and the kernel's BPF statistics switched on for
/// it (and restored): each tracer's program statistics over the run, and the run.
fn stats_over_run(
    tracers: &[(Config, Tracer)],
    workload: &mut dyn FnMut(&mut Vec<Run>) -> Result<()>,
) -> Result<(Vec<ProgStats>, Run)> {
    let _stats = BpfStats::enable()?;
    let before: Vec<ProgStats> = tracers
        .iter()
        .map(|(_, t)| prog_stats(t.child.id()))
        .collect();
    let mut one = Vec::new();
    workload(&mut one)?;
    let run = one
        .pop()
        .ok_or_else(|| anyhow!("the workload run left no record"))?;
    let deltas = tracers
        .iter()
        .zip(&before)
        .map(|((_, t), b)| prog_stats(t.child.id()).since(b))
        .collect();
    Ok((deltas, run))
}

fn prog_stats(pid: u32) -> ProgStats {
    let mut s = ProgStats::default();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return s;
    };
    for fd in fds.flatten() {
        let Ok(info) = fs::read_to_string(fd.path()) else {
            continue;
        };
        // Program fds only: link fds also name a prog_id but carry no statistics, and
        // counting them would double the program count.
        if !info.lines().any(|l| l.starts_with("prog_type:")) {
            continue;
        }
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        s.programs += 1;
        s.run_time_ns += field("run_time_ns:");
        s.run_cnt += field("run_cnt:");
        s.recursion_misses += field("recursion_misses:");
    }
    s
}

/// Start a tracer and wait until it is attached; the tool writes its JSON to `json_out`, and
/// its per-program statistics too with `bpf_stats`.
fn start_tracer(
    bin: &std::path::Path,
    dir: &std::path::Path,
    cfg: Config,
    json_out: &std::path::Path,
    bpf_stats: bool,
) -> Result<Tracer> {
    match cfg {
        Config::Floor => {
            let mut c = Command::new(bin);
            c.arg("__bench-floor");
            Tracer::start(c, "floor attached")
        }
        Config::Bpftrace => {
            let mut c = Command::new("bpftrace");
            c.arg(dir.join("same-tracepoints.bt"));
            Tracer::start(c, "Attaching")
        }
        Config::ReclaimTrace => {
            let mut c = Command::new(bin);
            c.args(["summary", "--duration", "1h", "--json"])
                .arg(json_out);
            if bpf_stats {
                c.arg("--bpf-stats");
            }
            Tracer::start(c, "tracing for")
        }
        Config::Nothing => bail!("nothing to start"),
    }
}

/// One workload run with the floor, bpftrace and the tool all attached and the kernel's BPF
/// statistics on: each tracer's program time per reclaimed folio (ns), on the same events.
fn side_by_side(
    bin: &std::path::Path,
    dir: &std::path::Path,
    round: u32,
    workload: &mut dyn FnMut(&mut Vec<Run>) -> Result<()>,
) -> Result<Vec<(Config, f64)>> {
    let json_out = dir.join(format!("summary-side-by-side{round}.json"));
    let mut tracers = Vec::new();
    for cfg in [Config::Floor, Config::Bpftrace, Config::ReclaimTrace] {
        tracers.push((cfg, start_tracer(bin, dir, cfg, &json_out, false)?));
    }
    let (stats, run) = stats_over_run(&tracers, workload)?;
    let folios = run.reclaimed.max(1) as f64;
    let mut out = Vec::new();
    for ((cfg, t), st) in tracers.into_iter().zip(&stats) {
        let (ok, ..) = t.stop()?;
        if !ok {
            bail!("{} did not exit cleanly", cfg.name());
        }
        out.push((cfg, st.run_time_ns as f64 / folios));
    }
    Ok(out)
}

/// One workload run.
#[derive(Clone, Copy, Debug)]
struct Run {
    wall: f64,
    /// user+sys of the workload process and its generator child.
    cpu: f64,
    /// `pgsteal_anon + pgsteal_file` delta over the run.
    reclaimed: u64,
}

fn pgsteal() -> u64 {
    fs::read_to_string("/proc/vmstat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == "pgsteal_anon" || *k == "pgsteal_file")
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// Wait for `pid`: (exited with 0, user+sys CPU s of it and the children it reaped).
fn wait_rusage(pid: i32) -> Result<(bool, f64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 on our own child with valid pointers.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r != pid {
        bail!("wait4({pid}) failed: {}", std::io::Error::last_os_error());
    }
    Ok((
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        tv(ru.ru_utime) + tv(ru.ru_stime),
    ))
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// A distribution-free 95% confidence interval of the median of `v`: the order statistics
/// x(k) and x(n+1-k), k the largest with P(Binomial(n, 1/2) < k) <= 2.5%. For 16 values
/// these are the 4th and 13th (97.9% coverage). None below 6 values, where no k qualifies.
fn median_ci95(v: &[f64]) -> Option<[f64; 2]> {
    let n = v.len();
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let (mut k, mut cdf, mut choose) = (0, 0.0, 1.0);
    for j in 0..n {
        // cdf = P(B <= j); choose = C(n, j).
        cdf += choose / 2f64.powi(n as i32);
        if cdf > 0.025 {
            break;
        }
        k = j + 1;
        choose = choose * (n - j) as f64 / (j + 1) as f64;
    }
    (k > 0).then(|| [s[k - 1], s[n - k]])
}

/// bpftrace probes for the same tracepoints, counted the way a user would.
fn bpftrace_script(tracepoints: &[String]) -> String {
    let mut s = String::new();
    for tp in tracepoints {
        let var = tp.replace(':', "_");
        let body = match tp.as_str() {
            "vmscan:mm_vmscan_lru_isolate" => {
                format!("@{var} = count(); @taken = sum(args->nr_taken);")
            }
            "vmscan:mm_vmscan_lru_shrink_inactive" | "vmscan:mm_vmscan_reclaim_pages" => {
                format!("@{var} = count(); @{var}_reclaimed = sum(args->nr_reclaimed);")
            }
            "tlb:tlb_flush" => "@tlb_flush[args->reason] = count();".to_string(),
            _ => format!("@{var} = count();"),
        };
        s.push_str(&format!("tracepoint:{tp} {{ {body} }}\n"));
    }
    s
}

/// A zram swap device for the duration of the bench (when no swap is active).
struct Swap {
    dev: Option<u32>,
}

impl Swap {
    fn ensure(size_bytes: u64) -> Result<Swap> {
        let swaps = fs::read_to_string("/proc/swaps").unwrap_or_default();
        if swaps.lines().count() > 1 {
            return Ok(Swap { dev: None });
        }
        let _ = Command::new("modprobe")
            .arg("zram")
            .stderr(Stdio::null())
            .status(); // a no-op where zram is built in
        let dev: u32 = fs::read_to_string("/sys/class/zram-control/hot_add")
            .context("no zram-control: the bench needs swap (or a kernel with zram)")?
            .trim()
            .parse()?;
        let swap = Swap { dev: Some(dev) };
        fs::write(
            format!("/sys/block/zram{dev}/disksize"),
            size_bytes.to_string(),
        )?;
        run(Command::new("mkswap")
            .arg(format!("/dev/zram{dev}"))
            .stdout(Stdio::null()))?;
        run(Command::new("swapon").arg(format!("/dev/zram{dev}")))?;
        Ok(swap)
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        if let Some(dev) = self.dev {
            let _ = Command::new("swapoff")
                .arg(format!("/dev/zram{dev}"))
                .status();
            let _ = fs::write(format!("/sys/block/zram{dev}/reset"), "1");
            let _ = fs::write("/sys/class/zram-control/hot_remove", dev.to_string());
        }
    }
}

fn parse_size(s: &str) -> Result<u64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().with_context(|| format!("bad size {s}"))?;
    Ok(n * match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => bail!("bad size unit in {s} (K, M, G)"),
    })
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
fn markdown(r: &Value) -> String {
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
    use super::*;

    #[test]
    fn median_interval_is_the_binomial_order_statistics() {
        // 16 values: P(B <= 3) = 0.0106 <= 2.5% < P(B <= 4) = 0.0384, so the 4th and 13th.
        let v: Vec<f64> = (1..=16).rev().map(f64::from).collect();
        assert_eq!(median_ci95(&v), Some([4.0, 13.0]));
        // 6 values: only the extremes (P(B = 0) = 1/64).
        assert_eq!(
            median_ci95(&[3.0, -1.0, 2.0, 9.0, 0.0, 5.0]),
            Some([-1.0, 9.0])
        );
        // 5 values: P(B = 0) = 1/32 > 2.5%, no interval at 95%.
        assert_eq!(median_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]), None);
        // 9 values: P(B <= 1) = 10/512 = 0.0195, P(B <= 2) = 0.0898: the 2nd and 8th.
        let v: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(median_ci95(&v), Some([2.0, 8.0]));
    }

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
    fn a_tracer_that_misses_the_first_sigint_gets_another() {
        // The first SIGINT only removes the trap, as bpftrace once swallowed one; the second,
        // sent RESIGNAL later, ends it.
        let mut c = Command::new("sh");
        c.args([
            "-c",
            "trap 'trap - INT' INT; echo ready; while :; do sleep 0.1; done",
        ]);
        let t = Tracer::start(c, "ready").unwrap();
        let started = Instant::now();
        let (ok, ..) = t.stop().unwrap();
        assert!(!ok, "killed by the second SIGINT, not a clean exit");
        assert!(started.elapsed() >= Duration::from_secs(5));
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
