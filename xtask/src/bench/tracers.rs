//! The tracers the bench attaches (the floor, bpftrace, the tool) and the kernel's BPF
//! statistics of their programs.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use super::{Bench, Config, runner::tv};

/// A background tracer: started, waited for until attached, stopped with SIGINT.
pub(super) struct Tracer {
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
    pub(super) fn stop(mut self) -> Result<(bool, f64, u64, Vec<String>)> {
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
    /// `STOP_DEADLINE`: bpftrace v0.17.0 (Debian 12) can stay in epoll_wait after a SIGINT it
    /// has caught, and leaves at the next one. A second SIGINT is harmless to reclaim-trace
    /// (its session has already ended).
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
pub(super) struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub(super) fn enable() -> Result<BpfStats> {
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
pub(super) struct ProgStats {
    pub programs: u64,
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub recursion_misses: u64,
}

impl ProgStats {
    /// What accumulated since `before` (the program count is this snapshot's).
    pub(super) fn since(&self, before: &ProgStats) -> ProgStats {
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

pub(super) fn prog_stats(pid: u32) -> ProgStats {
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
pub(super) fn start_tracer(
    b: &Bench<'_>,
    cfg: Config,
    json_out: &Path,
    bpf_stats: bool,
) -> Result<Tracer> {
    let bin = &b.bin;
    match cfg {
        Config::Floor => {
            let mut c = Command::new(bin);
            c.arg("__bench-floor");
            Tracer::start(c, "floor attached")
        }
        Config::Bpftrace => {
            let mut c = Command::new("bpftrace");
            c.arg(b.dir.join("same-tracepoints.bt"));
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

/// Write `same-tracepoints.bt`: bpftrace probes on the tracepoints the tool attaches on this
/// kernel, taken from its own (verified) plan. Returns the tool's probe mode.
pub(super) fn write_bpftrace_script(b: &Bench<'_>) -> Result<String> {
    let doctor = Command::new(&b.bin).args(["doctor", "--json"]).output()?;
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
    fs::write(
        b.dir.join("same-tracepoints.bt"),
        bpftrace_script(&tracepoints),
    )?;
    Ok(probe_mode)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracer_that_misses_the_first_sigint_gets_another() {
        // The first SIGINT only removes the trap, as bpftrace v0.17 can swallow one; the
        // second, sent RESIGNAL later, ends it.
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
}
