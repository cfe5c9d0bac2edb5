//! `--procs`: the workload's writers as separate single-threaded processes, like stress-ng's
//! vm workers, instead of threads of one process, each in its own memory cgroup.
//!
//! The difference is the one reclaim's flushes depend on: a process whose memory is mapped on
//! its own CPU only has nothing to shoot down elsewhere, so `should_defer_flush()` says no and
//! `try_to_unmap_one()` flushes at once, locally (an immediate flush, no IPI), where threads
//! of one mm spread over CPUs get their flushes deferred into a batch (and send IPIs).
//!
//! Each process has its own memory cgroup so that it reclaims its own memory: in one shared
//! cgroup, whose folios reclaim picks is the LRU's choice, and unmapping another process's
//! folios (its mm live on another CPU) is deferred again. On 6.18.44 with two pinned processes
//! in one cgroup, one run had one process reclaiming its own folios (immediate flushes) and
//! the other reclaiming the first's (deferred, with IPIs); another run had all flushes
//! deferred. With a cgroup each, 97% of the flushes were immediate.

use std::{
    process::Child,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::generator::{
    ChildSpec, Kind, Touch, map_anon, map_file, page_size, pin_to, thread_seed, touch_loop,
    watch_parent,
};
use crate::export::summary::WorkloadResult;

/// Run `spec.threads` processes of one thread each, each with its share of `spec.size`, until
/// told to stop; then print their results merged, as one workload's.
pub fn run_manager(spec: &ChildSpec) -> Result<()> {
    let n = spec.threads.max(1);
    let unit = (page_size() as u64).max(spec.huge_align);
    let share = spec.size / u64::from(n) / unit * unit;
    if share == 0 {
        bail!(
            "--size {} split among {n} processes leaves less than {unit} bytes each",
            spec.size
        );
    }
    let mut children: Vec<Child> = Vec::new();
    for t in 0..n {
        let cpu = spec.cpus.get(t as usize % spec.cpus.len().max(1)).copied();
        let Some(cgroup_procs) = spec.proc_cgroups.get(t as usize).cloned() else {
            bail!("no cgroup for workload process {t}");
        };
        let one = ChildSpec {
            threads: 1,
            procs: false,
            single: true,
            cgroup_procs,
            proc_cgroups: Vec::new(),
            size: share,
            cpus: cpu.into_iter().collect(),
            first_thread: t,
            ..spec.clone()
        };
        // Pinned before exec, so that the mm exec creates is only ever live on its CPU:
        // x86 leaves a CPU in mm_cpumask after the mm leaves it until a flush for that mm
        // reaches it, and batched flushes (no mm) never do; a process that ran on another
        // CPU before pinning itself kept every flush deferred (6.18.44, one run in two).
        let child = super::spawn_child(&one, cpu)?;
        children.push(child);
    }
    let stop = Arc::new(AtomicBool::new(false));
    watch_parent(stop.clone());
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed)
        && spec
            .duration_s
            .is_none_or(|d| started.elapsed().as_secs_f64() < d)
        && children
            .iter_mut()
            .any(|c| matches!(c.try_wait(), Ok(None)))
    {
        thread::sleep(Duration::from_millis(10));
    }
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (t, mut c) in children.into_iter().enumerate() {
        drop(c.stdin.take());
        let status = c.wait()?;
        match super::child_result(&mut c) {
            Some(r) => results.push(r),
            None => failures.push(format!("process {t} {}", super::describe_exit(status))),
        }
    }
    let result = WorkloadResult::merge(&results);
    println!("{}", serde_json::to_string(&result)?);
    if !failures.is_empty() {
        bail!("workload processes failed: {}", failures.join(", "));
    }
    if let Some(e) = result.corruption() {
        bail!("{e}");
    }
    Ok(())
}

/// One process of `--procs`: the writer runs on the main thread, and nothing else runs in the
/// process (no stop-watching thread: it polls its stdin between pages), so that its mm is
/// live on its own CPU only, as a single-threaded program's is.
pub fn run_single(spec: &ChildSpec) -> Result<()> {
    let t = spec.first_thread;
    let name = std::ffi::CString::new(format!("rt-{}-{t}", spec.kind.as_str()))?;
    // SAFETY: prctl with a valid NUL-terminated name.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    if let Some(&cpu) = spec.cpus.first() {
        pin_to(cpu);
    }
    let unit = (page_size() as u64).max(spec.huge_align);
    let len = (spec.size / unit * unit) as usize;
    let write = spec.kind != Kind::File;
    let region = if write {
        map_anon(len, spec.huge_align as usize)?
    } else {
        let Some(f) = &spec.file else {
            bail!("file workload without a data file");
        };
        map_file(f, len)?
    };
    let how = Touch {
        write,
        discard: write && spec.huge_align > 0,
        chunk: spec.huge_align as usize,
    };
    let started = Instant::now();
    let stop = || {
        stdin_closed()
            || spec
                .duration_s
                .is_some_and(|d| started.elapsed().as_secs_f64() >= d)
    };
    let out = touch_loop(
        &region,
        0..region.len,
        how,
        thread_seed(u64::from(t)),
        spec.sweeps,
        &stop,
    );
    let result = WorkloadResult::from_threads(started.elapsed().as_secs_f64(), &[(write, out)]);
    println!("{}", serde_json::to_string(&result)?);
    if let Some(e) = result.corruption() {
        bail!("{e}");
    }
    Ok(())
}

/// The parent closed our stdin (its way of saying stop), without blocking.
fn stdin_closed() -> bool {
    let mut fd = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) } > 0;
    if !ready {
        return false;
    }
    let mut b = [0u8; 64];
    // SAFETY: reading into a local buffer; the parent never writes, so readable means EOF.
    unsafe { libc::read(0, b.as_mut_ptr().cast(), b.len()) <= 0 }
}

impl WorkloadResult {
    /// The results of processes that ran side by side, as one workload's.
    pub fn merge(parts: &[WorkloadResult]) -> WorkloadResult {
        let sum = |f: fn(&WorkloadResult) -> u64| parts.iter().map(f).sum::<u64>();
        WorkloadResult {
            elapsed_s: parts.iter().map(|r| r.elapsed_s).fold(0.0, f64::max),
            pages_written: sum(|r| r.pages_written),
            pages_read: sum(|r| r.pages_read),
            pages_per_s: parts.iter().map(|r| r.pages_per_s).sum(),
            pages_per_s_by_thread: parts
                .iter()
                .flat_map(|r| r.pages_per_s_by_thread.iter().copied())
                .collect(),
            pages_verified: sum(|r| r.pages_verified),
            corrupt_pages: sum(|r| r.corrupt_pages),
            first_corruption: parts.iter().find_map(|r| r.first_corruption.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_processes_add_up_like_threads() {
        let a = WorkloadResult {
            elapsed_s: 2.0,
            pages_written: 100,
            pages_per_s: 50.0,
            pages_per_s_by_thread: vec![50.0],
            pages_verified: 80,
            ..Default::default()
        };
        let b = WorkloadResult {
            elapsed_s: 2.1,
            pages_written: 60,
            pages_per_s: 30.0,
            pages_per_s_by_thread: vec![30.0],
            pages_verified: 40,
            corrupt_pages: 1,
            first_corruption: Some("x".into()),
            ..Default::default()
        };
        let m = WorkloadResult::merge(&[a, b]);
        assert_eq!(
            (m.pages_written, m.pages_verified, m.corrupt_pages),
            (160, 120, 1)
        );
        assert_eq!(m.pages_per_s, 80.0);
        assert_eq!(m.pages_per_s_by_thread, vec![50.0, 30.0]);
        assert_eq!(m.elapsed_s, 2.1);
        assert_eq!(m.first_corruption.as_deref(), Some("x"));
        assert!(m.corruption().is_some());
    }
}
