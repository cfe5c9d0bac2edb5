//! Workload runs: the runs themselves, with tracers attached and the kernel's BPF statistics
//! on, and the swap device they need.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::{
    Config,
    tracers::{BpfStats, ProgStats, Tracer, prog_stats, start_tracer},
};
use crate::util::run;

/// One workload run with `tracers` attached and the kernel's BPF statistics switched on for
/// it (and restored): each tracer's program statistics over the run, and the run.
pub(super) fn stats_over_run(
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

/// One workload run with the floor, bpftrace and the tool all attached and the kernel's BPF
/// statistics on: each tracer's program time per reclaimed folio (ns), on the same events.
pub(super) fn side_by_side(
    bin: &Path,
    dir: &Path,
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
pub(super) struct Run {
    pub wall: f64,
    /// user+sys of the workload process and its generator child.
    pub cpu: f64,
    /// `pgsteal_anon + pgsteal_file` delta over the run.
    pub reclaimed: u64,
}

pub(super) fn pgsteal() -> u64 {
    fs::read_to_string("/proc/vmstat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == "pgsteal_anon" || *k == "pgsteal_file")
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// Wait for `pid`: (exited with 0, user+sys CPU s of it and the children it reaped).
pub(super) fn wait_rusage(pid: i32) -> Result<(bool, f64)> {
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

pub(super) fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// A zram swap device for the duration of the bench (when no swap is active).
pub(super) struct Swap {
    dev: Option<u32>,
}

impl Swap {
    pub(super) fn ensure(size_bytes: u64) -> Result<Swap> {
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

pub(super) fn parse_size(s: &str) -> Result<u64> {
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
