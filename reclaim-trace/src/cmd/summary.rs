//! `reclaim-trace summary`: trace for a while, print the summary, write the JSON.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::output::Output;
use crate::{
    cli::SummaryArgs,
    export::text,
    probe::TracerOptions,
    session::{Session, SessionOptions, Stop},
};

pub async fn run(args: SummaryArgs) -> Result<()> {
    let mut out = args.json.as_deref().map(Output::open).transpose()?;
    let opts = SessionOptions {
        tracer: TracerOptions {
            mode: args.probe.probe_mode,
            extra_flags: 0,
        },
        workload: args.workload.map(|k| args.tuning.options(k, None)),
        bpf_stats: args.bpf_stats,
    };
    let mut session = Session::start(&opts).await?;
    eprintln!(
        "reclaim-trace: tracing for {:.0?} (probe mode {}{}); Ctrl-C stops early",
        args.duration,
        session.tracer().plan.probe_mode(),
        match session.workload() {
            Some(w) => format!(", workload {} in {}", w.info.kind, w.info.cgroup),
            None => String::new(),
        }
    );
    let deadline = Instant::now() + args.duration;
    let stop = session
        .run(Some(deadline), Duration::from_secs(1), |_| Ok(true))
        .await?;
    let workload_exit = session.workload_exit.clone();
    let summary = session.finish().await?;
    let rendered = text::render(&summary);
    if out.as_ref().is_some_and(Output::is_stdout) {
        eprint!("{rendered}");
    } else {
        print!("{rendered}");
    }
    if let Some(o) = out.as_mut() {
        let mut json = serde_json::to_vec_pretty(&summary)?;
        json.push(b'\n');
        o.write_all(&json).map_err(|e| {
            anyhow::anyhow!("writing the JSON summary to {} failed: {e}", o.describe())
        })?;
        if !o.is_stdout() {
            eprintln!("reclaim-trace: JSON summary written to {}", o.describe());
        }
    }
    match stop {
        Stop::Signal(sig) => eprintln!(
            "reclaim-trace: stopped early by {sig}; summary covers {:.1} s",
            summary.duration_s
        ),
        Stop::WorkloadExited => bail!(
            "the workload ended before the end of the run: {}",
            workload_exit.as_deref().unwrap_or("unknown reason")
        ),
        Stop::Deadline | Stop::Requested => {}
    }
    Ok(())
}
