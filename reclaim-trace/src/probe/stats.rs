//! The tracer's own cost, from the kernel's BPF run-time statistics.

use std::os::fd::OwnedFd;

use aya::Ebpf;

/// Keeps kernel BPF statistics on while alive; dropping it restores the previous state (the
/// kernel counts enablers: stats stay on only if someone else also asked).
pub struct StatsGuard {
    _fd: OwnedFd,
}

impl StatsGuard {
    pub fn enable() -> anyhow::Result<StatsGuard> {
        let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map_err(|e| anyhow::anyhow!("BPF_ENABLE_STATS failed: {e}"))?;
        Ok(StatsGuard { _fd: fd })
    }
}

pub use crate::export::summary::ProgramStat;

/// Run time and count of every loaded program of this object.
pub fn collect(ebpf: &Ebpf) -> Vec<ProgramStat> {
    ebpf.programs()
        .filter_map(|(name, p)| {
            let info = p.info().ok()?;
            Some(ProgramStat {
                name: name.to_string(),
                run_time_ns: info.run_time().as_nanos() as u64,
                run_count: info.run_count(),
            })
        })
        .collect()
}
