//! `reclaim-trace summary`: trace for a while, print the summary, write the JSON.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::output::Output;
use crate::{
    cli::SummaryArgs,
    export::text,
    session::{Session, Stop},
};

pub async fn run(args: SummaryArgs) -> Result<()> {
    let mut out = args.json.as_deref().map(Output::open).transpose()?;
    let opts = super::session_options(&args.session, args.bpf_stats);
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
    super::output::emit_summary(&rendered, &summary, out.as_mut())?;
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
    if let Some(e) = summary
        .workload
        .as_ref()
        .and_then(|w| w.result.as_ref())
        .and_then(|r| r.corruption())
    {
        bail!(e);
    }
    Ok(())
}
