//! Recordings: one JSON line per interval (schema `reclaim-trace/record/v2`), each a complete
//! `reclaim-trace/summary/v2` of its interval plus a `record` header, ending with a line of
//! type `summary` for the whole run. Lines are flushed one by one: a killed run loses at most
//! the interval in progress.

use std::{
    io::{BufRead, BufReader, Cursor, Read as _},
    path::Path,
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::{
    compare::COMPARE_SCHEMA,
    summary::{SCHEMA, SCHEMA_V1, Summary},
};
use crate::error::BadInput;

pub const RECORD_SCHEMA: &str = "reclaim-trace/record/v2";
/// Recordings made before summary v2: read, their summaries converted.
const RECORD_SCHEMA_V1: &str = "reclaim-trace/record/v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineType {
    /// The counts of one interval.
    Interval,
    /// The whole run (the last line).
    Summary,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordHeader {
    pub schema: String,
    #[serde(rename = "type")]
    pub kind: LineType,
    /// 1, 2, ... for intervals; the number of intervals for the summary line.
    pub seq: u64,
    /// Seconds since tracing started.
    pub t_start_s: f64,
    pub t_end_s: f64,
    /// Wall-clock time at the end of the interval (Unix seconds).
    pub unix_time_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordLine {
    pub record: RecordHeader,
    #[serde(flatten)]
    pub summary: Summary,
}

/// A recording read back: its lines, and the lines that could not be used.
#[derive(Debug, Default)]
pub struct Recording {
    pub intervals: Vec<RecordLine>,
    pub summary: Option<RecordLine>,
    /// (line number, why) for every skipped line.
    pub skipped: Vec<(usize, String)>,
}

/// Is `schema` ours but newer than this build understands?
fn future_schema(schema: &str, ours: &str) -> bool {
    let (Some((fam, v)), Some((our_fam, our_v))) =
        (schema.rsplit_once("/v"), ours.rsplit_once("/v"))
    else {
        return false;
    };
    fam == our_fam && v.parse::<u32>().ok() > our_v.parse::<u32>().ok()
}

fn schema_error(path: &Path, found: &str) -> anyhow::Error {
    BadInput(format!(
        "{} uses schema {found}, newer than this reclaim-trace understands ({SCHEMA}, \
         {RECORD_SCHEMA}); use a newer reclaim-trace to read it",
        path.display()
    ))
    .into()
}

/// Check the schema of a parsed summary-like JSON value.
pub fn check_schema(path: &Path, v: &serde_json::Value) -> Result<()> {
    for (ptr, ours, older) in [
        ("/schema", SCHEMA, SCHEMA_V1),
        ("/record/schema", RECORD_SCHEMA, RECORD_SCHEMA_V1),
    ] {
        if let Some(s) = v.pointer(ptr).and_then(|s| s.as_str())
            && s != ours
            && s != older
        {
            if future_schema(s, ours) {
                return Err(schema_error(path, s));
            }
            if s == COMPARE_SCHEMA {
                return Err(BadInput(format!(
                    "{} is a reclaim-trace comparison (what `compare --json` writes), not a \
                     summary or recording",
                    path.display()
                ))
                .into());
            }
            return Err(BadInput(format!(
                "{}: schema {s} is not a reclaim-trace summary or recording",
                path.display()
            ))
            .into());
        }
    }
    Ok(())
}

pub fn read(path: &Path) -> Result<Recording> {
    let file = std::fs::File::open(path)
        .map_err(|e| BadInput(format!("cannot open {}: {e}", path.display())))?;
    parse(path, BufReader::new(file))
}

/// The longest line read. Recorded lines are tens of KB (a summary with its histograms and
/// cgroups); a longer line is skipped while it is read, so a file of any size is read in
/// bounded memory.
pub const MAX_LINE: usize = 16 << 20;

/// One line of a recording as read.
enum Line {
    Text(String),
    /// Longer than [`MAX_LINE`] (its length in bytes): skipped, not kept.
    TooLong(u64),
    NotUtf8,
}

/// The next line of `input` without its end of line, at most [`MAX_LINE`] bytes kept.
fn next_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<Line>> {
    buf.clear();
    let n = input
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > MAX_LINE {
        let mut len = buf.len() as u64;
        if buf.last() != Some(&b'\n') {
            loop {
                let avail = input.fill_buf()?;
                if avail.is_empty() {
                    break;
                }
                let (take, end) = match avail.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (avail.len(), false),
                };
                input.consume(take);
                len += take as u64;
                if end {
                    break;
                }
            }
        }
        return Ok(Some(Line::TooLong(len)));
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(Some(match String::from_utf8(std::mem::take(buf)) {
        Ok(s) => Line::Text(s),
        Err(_) => Line::NotUtf8,
    }))
}

/// The run a line belongs to, as far as its contents say: kernel, architecture and tier.
fn run_of(l: &RecordLine) -> (String, String, String) {
    let k = &l.summary.kernel;
    (k.release.clone(), k.machine.clone(), k.probe_mode.clone())
}

/// The recording in `input`, read line by line (`path` names it in messages): what [`read`]
/// does once the file is open, and what `cargo xtask fuzz` feeds from memory.
pub fn parse(path: &Path, mut input: impl BufRead) -> Result<Recording> {
    let mut rec = Recording::default();
    // The text read before the first record, kept (up to MAX_LINE) to say what a file that
    // holds no record is instead: a pretty-printed summary or comparison spans many lines.
    let mut before_records = Some(String::new());
    let mut first_run: Option<(usize, (String, String, String))> = None;
    let mut buf = Vec::new();
    let mut n = 0;
    while let Some(line) = next_line(&mut input, &mut buf)
        .with_context(|| format!("reading {} at line {}", path.display(), n + 1))?
    {
        n += 1;
        let line = match line {
            Line::Text(l) => l,
            Line::TooLong(len) => {
                before_records = None;
                rec.skipped.push((
                    n,
                    format!("{len} bytes long, over {MAX_LINE}: not a reclaim-trace record"),
                ));
                continue;
            }
            Line::NotUtf8 => {
                before_records = None;
                rec.skipped
                    .push((n, "not UTF-8 text: binary or corrupt".into()));
                continue;
            }
        };
        if let Some(doc) = &mut before_records {
            if doc.len() + line.len() < MAX_LINE {
                doc.push_str(&line);
                doc.push('\n');
            } else {
                before_records = None;
            }
        }
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                rec.skipped
                    .push((n, format!("not valid JSON ({e}): truncated or corrupt")));
                continue;
            }
        };
        check_schema(path, &v)?;
        let l = match serde_json::from_value::<RecordLine>(v) {
            Ok(mut l) => {
                l.summary.upgrade();
                l
            }
            Err(e) => {
                rec.skipped.push((n, format!("not a record line: {e}")));
                continue;
            }
        };
        before_records = None;
        check_same_run(path, &mut first_run, n, &l, &rec)?;
        match l.record.kind {
            LineType::Interval => rec.intervals.push(l),
            LineType::Summary => rec.summary = Some(l),
        }
    }
    if rec.intervals.is_empty() && rec.summary.is_none() {
        if let Some(kind) = before_records.as_deref().and_then(document_kind) {
            return Err(BadInput(format!(
                "{} is {kind}, not a recording: `report` reads what `record --output` writes",
                path.display()
            ))
            .into());
        }
        return Err(BadInput(format!(
            "{} contains no reclaim-trace records{}",
            path.display(),
            match rec.skipped.first() {
                Some((n, why)) => format!(" (line {n}: {why})"),
                None => " (the file is empty)".into(),
            }
        ))
        .into());
    }
    Ok(rec)
}

/// A recording is one run: its lines come from one kernel and tier, interval numbers rise,
/// and the whole-run line comes last. Anything else is recordings concatenated (or edited),
/// whose sum would be no run's figures.
fn check_same_run(
    path: &Path,
    first: &mut Option<(usize, (String, String, String))>,
    n: usize,
    l: &RecordLine,
    rec: &Recording,
) -> Result<()> {
    let run = run_of(l);
    let (first_n, first_run) = first.get_or_insert_with(|| (n, run.clone()));
    let why = if *first_run != run {
        format!(
            "line {n} is from kernel {} ({}, {} tier), line {first_n} from {} ({}, {} tier)",
            run.0, run.1, run.2, first_run.0, first_run.1, first_run.2
        )
    } else if rec.summary.is_some() {
        format!("line {n} follows the whole-run summary line")
    } else if let Some(prev) = rec.intervals.last()
        && l.record.kind == LineType::Interval
        && l.record.seq <= prev.record.seq
    {
        format!(
            "interval {} at line {n} follows interval {}",
            l.record.seq, prev.record.seq
        )
    } else {
        return Ok(());
    };
    Err(BadInput(format!(
        "{} mixes runs: {why}; a recording holds one run (split it, or `compare` the parts)",
        path.display()
    ))
    .into())
}

/// What a whole JSON document is, when it is one of ours that is not a recording.
fn document_kind(text: &str) -> Option<&'static str> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    match v.get("schema")?.as_str()? {
        s if s == SCHEMA || s == SCHEMA_V1 => {
            Some("a reclaim-trace summary (what `summary --json` writes)")
        }
        COMPARE_SCHEMA => Some("a reclaim-trace comparison (what `compare --json` writes)"),
        _ => None,
    }
}

/// A summary from a file that holds either one summary JSON or a recording.
pub fn load_summary(path: &Path) -> Result<(Summary, Vec<(usize, String)>)> {
    let cannot = |e: std::io::Error| BadInput(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let mut head = Vec::new();
    (&mut file)
        .take(MAX_LINE as u64 + 1)
        .read_to_end(&mut head)
        .map_err(cannot)?;
    if head.len() <= MAX_LINE
        && let Ok(text) = std::str::from_utf8(&head)
    {
        return parse_summary(path, text);
    }
    // Larger than a summary document (or not text): only a recording can be, read line by
    // line from what was read so far and the rest of the file.
    summary_of(parse(path, BufReader::new(Cursor::new(head).chain(file)))?)
}

/// [`load_summary`] of a file's `text` (`path` names it in messages).
pub fn parse_summary(path: &Path, text: &str) -> Result<(Summary, Vec<(usize, String)>)> {
    if text.trim().is_empty() {
        return Err(BadInput(format!("{} is empty", path.display())).into());
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        check_schema(path, &v)?;
        return match serde_json::from_value::<Summary>(v) {
            Ok(mut s) => {
                s.upgrade();
                Ok((s, vec![]))
            }
            Err(e) => Err(BadInput(format!(
                "{} is JSON but not a reclaim-trace summary: {e}",
                path.display()
            ))
            .into()),
        };
    }
    summary_of(parse(path, text.as_bytes())?)
}

/// The whole run of a recording read back, and the lines it skipped.
fn summary_of(rec: Recording) -> Result<(Summary, Vec<(usize, String)>)> {
    let summary = match (rec.summary, rec.intervals.is_empty()) {
        // A complete recording: its last line is the whole run.
        (Some(s), _) => s.summary,
        (None, false) => super::merge::merge_all(rec.intervals.iter().map(|l| &l.summary))
            .ok_or_else(|| anyhow::anyhow!("no intervals"))?,
        (None, true) => unreachable!("parse() rejects recordings without records"),
    };
    Ok((summary, rec.skipped))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::export::summary::tests::anon_summary;

    fn line(kind: LineType, seq: u64) -> String {
        serde_json::to_string(&RecordLine {
            record: RecordHeader {
                schema: RECORD_SCHEMA.into(),
                kind,
                seq,
                t_start_s: seq as f64 - 1.0,
                t_end_s: seq as f64,
                unix_time_s: 1.7e9,
            },
            summary: anon_summary(),
        })
        .unwrap()
    }

    fn file(contents: &str) -> tempfile_path::TempPath {
        let p = tempfile_path::TempPath::new();
        std::fs::File::create(&p.0)
            .unwrap()
            .write_all(contents.as_bytes())
            .unwrap();
        p
    }

    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                TempPath(std::env::temp_dir().join(format!(
                    "rt-record-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                )))
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn reads_intervals_and_skips_bad_lines_with_their_numbers() {
        let text = format!(
            "{}\n{}\n{{\"truncated\": \n\n{}\n{}",
            line(LineType::Interval, 1),
            line(LineType::Interval, 2),
            line(LineType::Interval, 3),
            &line(LineType::Interval, 4)[..100]
        );
        let f = file(&text);
        let r = read(&f.0).unwrap();
        assert_eq!(r.intervals.len(), 3);
        assert!(r.summary.is_none());
        let lines: Vec<usize> = r.skipped.iter().map(|s| s.0).collect();
        assert_eq!(lines, vec![3, 6]);
        let (s, skipped) = load_summary(&f.0).unwrap();
        assert_eq!(s.totals.passes, 3 * anon_summary().totals.passes);
        assert_eq!(skipped.len(), 2);
    }

    /// `parse` and `parse_summary` (what the fuzz targets feed) read from memory what `read`
    /// and `load_summary` read from the file.
    #[test]
    fn parsing_text_is_reading_its_file() {
        let text = format!(
            "{}\nnot json\n{}\n",
            line(LineType::Interval, 1),
            line(LineType::Interval, 2)
        );
        let f = file(&text);
        let (from_file, in_memory) = (read(&f.0).unwrap(), parse(&f.0, text.as_bytes()).unwrap());
        assert_eq!(from_file.intervals, in_memory.intervals);
        assert_eq!(from_file.skipped, in_memory.skipped);
        assert_eq!(
            load_summary(&f.0).unwrap(),
            parse_summary(&f.0, &text).unwrap()
        );
        // Not UTF-8: skipped, from memory as from the file.
        let bad = [line(LineType::Interval, 1).as_bytes(), b"\n\xff\n"].concat();
        let r = parse(&f.0, &bad[..]).unwrap();
        assert_eq!(r.intervals.len(), 1);
        assert_eq!(
            r.skipped,
            vec![(2, "not UTF-8 text: binary or corrupt".into())]
        );
    }

    /// A line over MAX_LINE is skipped while it is read (counted, not kept): the lines around
    /// it are read, and a file that is one huge line is "no records", in bounded memory.
    #[test]
    fn a_huge_line_is_skipped_not_kept() {
        let huge = "x".repeat(MAX_LINE + 10);
        let text = format!(
            "{}\n{huge}\n{}\n",
            line(LineType::Interval, 1),
            line(LineType::Interval, 2)
        );
        let r = parse(Path::new("r"), text.as_bytes()).unwrap();
        assert_eq!(r.intervals.len(), 2);
        let want = format!(
            "{} bytes long, over {MAX_LINE}: not a reclaim-trace record",
            MAX_LINE + 11
        );
        assert_eq!(r.skipped, vec![(2, want)]);
        // Without an end of line, and exactly at the limit (kept, then not JSON).
        let e = parse(Path::new("r"), huge.as_bytes()).unwrap_err();
        assert!(
            e.to_string().contains("(line 1: 16777226 bytes long"),
            "{e}"
        );
        let r = parse(Path::new("r"), &huge.as_bytes()[..MAX_LINE]).unwrap_err();
        assert!(r.to_string().contains("not valid JSON"), "{r}");
    }

    /// A summary or comparison given as a recording is named as what it is, compact or
    /// pretty-printed.
    #[test]
    fn other_documents_are_named() {
        let summary = anon_summary();
        for text in [
            serde_json::to_string(&summary).unwrap(),
            serde_json::to_string_pretty(&summary).unwrap(),
        ] {
            let e = parse(Path::new("s.json"), text.as_bytes()).unwrap_err();
            assert_eq!(
                e.to_string(),
                "s.json is a reclaim-trace summary (what `summary --json` writes), not a \
                 recording: `report` reads what `record --output` writes"
            );
        }
        let c = crate::export::compare::compare(("a", &summary), ("b", &summary), &[]).unwrap();
        let pretty = serde_json::to_string_pretty(&c).unwrap();
        let e = parse(Path::new("c.json"), pretty.as_bytes()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("c.json is a reclaim-trace comparison (what `compare --json` writes)"),
            "{e}"
        );
        let compact = serde_json::to_string(&c).unwrap();
        let e = parse(Path::new("c.json"), compact.as_bytes()).unwrap_err();
        assert!(
            e.to_string().contains("is a reclaim-trace comparison"),
            "{e}"
        );
        let e = parse_summary(Path::new("c.json"), &pretty).unwrap_err();
        assert!(
            e.to_string().contains("is a reclaim-trace comparison"),
            "{e}"
        );
    }

    /// Recordings concatenated (another kernel, intervals starting again, lines after the
    /// whole-run line) are refused, naming the lines.
    #[test]
    fn mixed_runs_are_refused() {
        let other = line(LineType::Interval, 2).replace("\"release\":\"", "\"release\":\"7.2.13-");
        let cases = [
            (
                format!("{}\n{other}\n", line(LineType::Interval, 1)),
                "line 2 is from kernel 7.2.13-",
            ),
            (
                format!(
                    "{}\n{}\n{}\n",
                    line(LineType::Interval, 1),
                    line(LineType::Interval, 2),
                    line(LineType::Interval, 1)
                ),
                "interval 1 at line 3 follows interval 2",
            ),
            (
                format!(
                    "{}\n{}\n{}\n",
                    line(LineType::Interval, 1),
                    line(LineType::Summary, 1),
                    line(LineType::Interval, 1)
                ),
                "line 3 follows the whole-run summary line",
            ),
        ];
        for (text, why) in cases {
            let e = parse(Path::new("m.jsonl"), text.as_bytes()).unwrap_err();
            assert!(
                e.to_string().starts_with("m.jsonl mixes runs: ") && e.to_string().contains(why),
                "{e}"
            );
            assert_eq!(crate::error::exit_code(&e), 2);
        }
    }

    #[test]
    fn the_summary_line_wins_when_present() {
        let f = file(&format!(
            "{}\n{}\n",
            line(LineType::Interval, 1),
            line(LineType::Summary, 1)
        ));
        let (s, _) = load_summary(&f.0).unwrap();
        assert_eq!(s, anon_summary());
    }

    #[test]
    fn empty_future_and_foreign_files_are_bad_input() {
        let empty = file("");
        let e = read(&empty.0).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        assert_eq!(crate::error::exit_code(&e), 2);

        let future = file(&line(LineType::Interval, 1).replace("record/v2", "record/v3"));
        let e = read(&future.0).unwrap_err();
        assert!(e.to_string().contains("newer"), "{e}");
        assert_eq!(crate::error::exit_code(&e), 2);

        let foreign = file("{\"schema\": \"something/else\"}\n");
        let e = load_summary(&foreign.0).unwrap_err();
        assert!(e.to_string().contains("not a reclaim-trace"), "{e}");

        let e = read(Path::new("/nonexistent/x.jsonl")).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("cannot open /nonexistent/x.jsonl"));
    }
}
