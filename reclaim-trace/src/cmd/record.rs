//! `reclaim-trace record`: one JSON line per interval, then the whole run.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use super::output::Output;
use crate::{
    aggregate::Mark,
    cli::RecordArgs,
    export::record::{LineType, RECORD_SCHEMA, RecordHeader, RecordLine},
    session::{Session, Stop},
};

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Write one line (a flush per line: a killed recording loses at most one interval).
fn write_line(
    out: &mut Output,
    session: &Session,
    from: &Mark,
    seq: u64,
    kind: LineType,
) -> Result<()> {
    let w = match kind {
        LineType::Interval => session.agg.since(from),
        LineType::Summary => session.agg.window(),
    };
    let end = session.agg.latest_s();
    let line = RecordLine {
        record: RecordHeader {
            schema: RECORD_SCHEMA.to_string(),
            kind,
            seq,
            t_start_s: end - w.duration_s,
            t_end_s: end,
            unix_time_s: unix_now(),
        },
        summary: session.summarize(&w),
    };
    let mut bytes = serde_json::to_vec(&line)?;
    bytes.push(b'\n');
    out.write_all(&bytes)
        .map_err(|e| anyhow::anyhow!("writing {} failed: {e}", out.describe()))
}

pub async fn run(args: RecordArgs) -> Result<()> {
    let mut out = Output::open_in_place(&args.output)?;
    let opts = super::session_options(&args.session, false);
    let mut session = Session::start(&opts).await?;
    eprintln!(
        "reclaim-trace: recording to {} every {:.0?}{}; Ctrl-C stops",
        out.describe(),
        args.interval,
        args.duration
            .map(|d| format!(" for {d:.0?}"))
            .unwrap_or_default()
    );
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut mark = session.agg.mark();
    let mut seq = 0u64;
    let mut write_error = None;
    let stop = session
        .run(
            deadline,
            args.interval.max(Duration::from_millis(100)),
            |s| {
                seq += 1;
                if let Err(e) = write_line(&mut out, s, &mark, seq, LineType::Interval) {
                    write_error = Some(e);
                    return Ok(false);
                }
                mark = s.agg.mark();
                Ok(true)
            },
        )
        .await;
    // Whatever happened, end cleanly: the partial last interval and the whole-run line.
    let stopped = session.stop().await;
    let (stop, mut result) = match stop {
        Ok(s) => (Some(s), Ok(())),
        Err(e) => (None, Err(e)),
    };
    if write_error.is_none() && stopped.is_ok() {
        seq += 1;
        result = result
            .and_then(|()| write_line(&mut out, &session, &mark, seq, LineType::Interval))
            .and_then(|()| write_line(&mut out, &session, &mark, seq, LineType::Summary));
    }
    let exit = session.workload_exit.clone();
    let closed = session.close();
    if let Some(e) = write_error {
        return Err(e);
    }
    stopped?;
    result?;
    closed?;
    eprintln!(
        "reclaim-trace: {seq} intervals written to {}",
        out.describe()
    );
    if let Some(Stop::WorkloadExited) = stop {
        bail!(
            "the workload ended before the end of the recording: {}",
            exit.as_deref().unwrap_or("unknown reason")
        );
    }
    Ok(())
}
