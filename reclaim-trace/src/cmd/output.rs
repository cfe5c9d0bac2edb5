//! Output files, opened before anything is attached so that a bad path fails early.

use std::{
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
};

use anyhow::Result;
use serde::Serialize;

use crate::error::BadInput;

pub enum Output {
    Stdout,
    File { file: File, path: PathBuf },
}

impl Output {
    /// `-` is stdout; anything else is created (truncated) now.
    pub fn open(path: &Path) -> Result<Output> {
        if path.as_os_str() == "-" {
            return Ok(Output::Stdout);
        }
        match File::create(path) {
            Ok(file) => Ok(Output::File {
                file,
                path: path.to_path_buf(),
            }),
            Err(e) => Err(BadInput(format!(
                "cannot write {}: {e}; choose a writable path (checked before tracing starts)",
                path.display()
            ))
            .into()),
        }
    }

    pub fn is_stdout(&self) -> bool {
        matches!(self, Output::Stdout)
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => {
                let mut o = io::stdout().lock();
                o.write_all(bytes)?;
                o.flush()
            }
            Output::File { file, .. } => {
                file.write_all(bytes)?;
                file.flush()
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Output::Stdout => "stdout".into(),
            Output::File { path, .. } => path.display().to_string(),
        }
    }
}

/// Print a summary's text (to stderr when the JSON goes to stdout, so that the two stay
/// apart) and write its JSON to `out`.
pub fn emit_summary(
    rendered: &str,
    summary: &impl Serialize,
    out: Option<&mut Output>,
) -> Result<()> {
    if out.as_ref().is_some_and(|o| o.is_stdout()) {
        eprint!("{rendered}");
    } else {
        print!("{rendered}");
    }
    if let Some(o) = out {
        let mut json = serde_json::to_vec_pretty(summary)?;
        json.push(b'\n');
        o.write_all(&json).map_err(|e| {
            anyhow::anyhow!("writing the JSON summary to {} failed: {e}", o.describe())
        })?;
        if !o.is_stdout() {
            eprintln!("reclaim-trace: JSON summary written to {}", o.describe());
        }
    }
    Ok(())
}
