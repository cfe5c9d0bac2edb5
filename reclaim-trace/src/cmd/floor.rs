//! `reclaim-trace __bench-floor`: the benchmark's floor configuration (see probe::Floor).

use anyhow::Result;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    kernel::Privileges,
    plan::ProbeMode,
    probe::{Floor, stats::StatsGuard},
    session::{gather_facts, require_privileges},
};

pub async fn run(mode: ProbeMode, bpf_stats: bool) -> Result<()> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    require_privileges(&Privileges::current(), false)?;
    let facts = gather_facts();
    let stats = bpf_stats.then(StatsGuard::enable).transpose()?;
    let floor = Floor::start(&facts, mode)?;
    eprintln!(
        "reclaim-trace: floor attached at {} points (probe mode {}); SIGINT/SIGTERM detaches",
        floor.attach_points,
        floor.plan.probe_mode()
    );
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    if stats.is_some() {
        eprintln!(
            "floor-stats: {}",
            serde_json::to_string(&floor.program_stats())?
        );
    }
    drop(floor);
    Ok(())
}
