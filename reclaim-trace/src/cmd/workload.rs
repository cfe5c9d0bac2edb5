//! `reclaim-trace workload`: the reclaim generator on its own, with the memcg's own counters.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::WorkloadArgs,
    kernel::Privileges,
    session::require_privileges,
    workload::{Workload, preflight},
};

pub async fn run(args: WorkloadArgs) -> Result<()> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    require_privileges(&Privileges::current(), true)?;
    let mut opts = args.tuning.options(args.kind, None);
    opts.sweeps = args.sweeps;
    let h = preflight(&opts)?;
    let mut w = Workload::start(&opts, &h)?;
    eprintln!(
        "reclaim-trace workload: {} x{} threads, {} MiB in {} (limit {} MiB), swap: {}; Ctrl-C stops",
        w.info.kind,
        w.info.threads,
        w.info.size_bytes >> 20,
        w.info.cgroup,
        w.info.memcg_limit_bytes >> 20,
        w.info.swap
    );
    let start = Instant::now();
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    // Short ticks: with --sweeps the end of the work is timed from outside.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut exited = None;
    loop {
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {
                if let Some((ok, why)) = w.exited() {
                    // With --sweeps the generator ends by itself when its work is done.
                    if !(ok && args.sweeps.is_some()) {
                        exited = Some(why);
                    }
                    break;
                }
            }
            _ = until => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    let stat = w.cgroup.memory_stat();
    // cgroup v2 names them pgscan/pgsteal; v1 has no such counters (total_* where present).
    let pick = |k: &str| {
        stat.get(k)
            .or_else(|| stat.get(&format!("total_{k}")))
            .map_or("n/a".to_string(), u64::to_string)
    };
    eprintln!(
        "reclaim-trace workload: ran {:.1} s; memcg counters: pgscan {} pgsteal {} pgmajfault {}{}",
        start.elapsed().as_secs_f64(),
        pick("pgscan"),
        pick("pgsteal"),
        pick("pgmajfault"),
        exited
            .as_deref()
            .map(|e| format!("; workload {e}"))
            .unwrap_or_default()
    );
    w.cleanup()?;
    if let Some(e) = exited {
        anyhow::bail!("the workload process {e}");
    }
    Ok(())
}
