//! The ring-buffer reader: a task that wakes when records arrive, decodes them (length-checked)
//! and sends batches to the main loop, which owns the aggregator.

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use reclaim_trace_common::{
    READER_POLL_MS,
    decode::{Record, decode_into},
};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
    task::JoinHandle,
};

/// Records read in one wake-up.
#[derive(Debug, Default)]
pub struct RecordBatch {
    pub records: Vec<Record>,
    pub decode_errors: u64,
}

/// Upper bound of records per batch (keeps the main loop responsive under load).
const MAX_BATCH: usize = 4096;

fn drain(rb: &mut RingBuf<MapData>, tx: &mpsc::UnboundedSender<RecordBatch>) -> bool {
    loop {
        let mut batch = RecordBatch::default();
        while batch.records.len() < MAX_BATCH {
            let Some(item) = rb.next() else { break };
            match decode_into(&item, &mut batch.records) {
                Ok(()) => {}
                Err(e) => {
                    if batch.decode_errors == 0 {
                        log::warn!("ring buffer: {e}");
                    }
                    batch.decode_errors += 1;
                }
            }
        }
        let full = batch.records.len() == MAX_BATCH;
        if (!batch.records.is_empty() || batch.decode_errors != 0) && tx.send(batch).is_err() {
            return false; // receiver gone
        }
        if !full {
            return true;
        }
    }
}

/// Start reading. Set `stop` to true to make the task read what is left and end.
pub fn spawn_reader(
    rb: RingBuf<MapData>,
    tx: mpsc::UnboundedSender<RecordBatch>,
    mut stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unreplaced, for as long as the
    // AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register(rb)? };
    Ok(tokio::spawn(async move {
        // Producers wake us only when the buffer is a quarter full (see WAKEUP_BYTES); the
        // rest of the time records are collected on this timer.
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(READER_POLL_MS));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    if !drain(fd.get_mut(), &tx) {
                        return;
                    }
                }
                guard = fd.readable_mut() => {
                    let Ok(mut guard) = guard else { break };
                    let open = drain(guard.get_inner_mut(), &tx);
                    guard.clear_ready();
                    if !open {
                        return;
                    }
                }
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        drain(fd.get_mut(), &tx);
    }))
}

/// Forward the programs' log records (anomalies) to this process's logger as they arrive,
/// until `stop` is set; then forward what is left.
pub fn spawn_kernel_log(
    log: super::KernelLog,
    mut stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>> {
    // SAFETY: the logger owns its ring buffer's map fd and keeps it open, unreplaced, for as
    // long as the AsyncFd owns the logger.
    let mut fd = unsafe { AsyncFd::register(log)? };
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                guard = fd.readable_mut() => {
                    let Ok(mut guard) = guard else { break };
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        fd.get_mut().flush();
    }))
}
