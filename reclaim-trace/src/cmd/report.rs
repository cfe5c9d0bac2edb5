//! `reclaim-trace report`: the summary of a recording, without a kernel.

use anyhow::Result;

use super::output::Output;
use crate::{
    cli::ReportArgs,
    export::{merge::merge_all, record, text},
};

pub fn run(args: ReportArgs) -> Result<()> {
    let mut out = args.json.as_deref().map(Output::open).transpose()?;
    let rec = record::read(&args.file)?;
    for (line, why) in &rec.skipped {
        eprintln!(
            "reclaim-trace: {}:{line}: {why}; skipped",
            args.file.display()
        );
    }
    // The totals are the sum of the interval lines; the final line (if the recording ended
    // cleanly) must agree with them.
    let summary = match merge_all(rec.intervals.iter().map(|l| &l.summary)) {
        Some(s) => {
            match &rec.summary {
                Some(fin) if fin.summary.totals != s.totals => eprintln!(
                    "reclaim-trace: warning: the intervals of {} do not add up to its final \
                     summary line (lines lost?); reporting the sum of the intervals",
                    args.file.display()
                ),
                Some(_) => {}
                None => eprintln!(
                    "reclaim-trace: {} has no final summary line (the recording was killed?); \
                     reporting the {} intervals it has",
                    args.file.display(),
                    rec.intervals.len()
                ),
            }
            s
        }
        None => rec
            .summary
            .as_ref()
            .map(|l| l.summary.clone())
            .ok_or_else(|| anyhow::anyhow!("no records"))?,
    };
    let rendered = format!(
        "recording {}: {} intervals{}\n{}",
        args.file.display(),
        rec.intervals.len(),
        if rec.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} lines skipped", rec.skipped.len())
        },
        text::render(&summary)
    );
    super::output::emit_summary(&rendered, &summary, out.as_mut())?;
    Ok(())
}
