//! Recordings: one JSON line per interval (schema `reclaim-trace/record/v2`), each a complete
//! `reclaim-trace/summary/v2` of its interval plus a `record` header, ending with a line of
//! type `summary` for the whole run. Lines are flushed one by one: a killed run loses at most
//! the interval in progress.

use std::{
    io::{BufRead, BufReader},
    path::Path,
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::summary::{SCHEMA, SCHEMA_V1, Summary};
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

/// The recording in `input`, read line by line (`path` names it in messages): what [`read`]
/// does once the file is open, and what `cargo xtask fuzz` feeds from memory.
pub fn parse(path: &Path, input: impl BufRead) -> Result<Recording> {
    let mut rec = Recording::default();
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("reading {} at line {n}", path.display()))?;
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
        match serde_json::from_value::<RecordLine>(v).map(|mut l| {
            l.summary.upgrade();
            l
        }) {
            Ok(l) if l.record.kind == LineType::Interval => rec.intervals.push(l),
            Ok(l) => rec.summary = Some(l),
            Err(e) => rec.skipped.push((n, format!("not a record line: {e}"))),
        }
    }
    if rec.intervals.is_empty() && rec.summary.is_none() {
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

/// A summary from a file that holds either one summary JSON or a recording.
pub fn load_summary(path: &Path) -> Result<(Summary, Vec<(usize, String)>)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))?;
    parse_summary(path, &text)
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
    let rec = parse(path, text.as_bytes())?;
    let summary = match (&rec.summary, rec.intervals.is_empty()) {
        // A complete recording: its last line is the whole run.
        (Some(s), _) => s.summary.clone(),
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
        // Not UTF-8: an error from memory as from the file.
        let bad = [line(LineType::Interval, 1).as_bytes(), b"\n\xff\n"].concat();
        let e = parse(&f.0, &bad[..]).unwrap_err();
        assert!(format!("{e:#}").contains("at line 2"), "{e:#}");
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
