//! Output files, opened before anything is attached so that a bad path fails early.
//!
//! A regular file is written under a temporary name next to it and renamed into place when
//! complete (`Output::finish`), so a run killed while writing leaves no file that looks
//! complete; the next run in that directory removes such leftovers and says so. Recordings
//! stream into their final path instead (a long recording must survive a kill): their last
//! line is the whole-run summary, and `report` says when it is missing.

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
    /// Written in place: a device or pipe (`/dev/stdout`, `/dev/full`), or a recording.
    File {
        file: File,
        path: PathBuf,
    },
    /// Written to `tmp`, renamed to `path` by `finish`.
    Staged {
        file: File,
        path: PathBuf,
        tmp: PathBuf,
    },
}

/// The temporary name of `path` while this process writes it: `.NAME.reclaim-trace-PID.tmp`.
fn staging_path(path: &Path, pid: u32) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.reclaim-trace-{pid}.tmp"))
}

/// Remove temporary files of `path` left by reclaim-trace processes that no longer run.
fn sweep_partial(path: &Path) {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.reclaim-trace-");
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = n
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tmp"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() && std::fs::remove_file(e.path()).is_ok() {
            eprintln!(
                "reclaim-trace: removed {}, a partial write of {} by process {pid}, which was \
                 killed before finishing",
                e.path().display(),
                path.display()
            );
        }
    }
}

impl Output {
    /// `-` is stdout; a regular file (or a new one) is staged under a temporary name and
    /// replaces `path` at `finish`; anything else is opened for writing now.
    pub fn open(path: &Path) -> Result<Output> {
        Self::open_with(path, true)
    }

    /// As `open`, writing a regular file in place (recordings: see the module comment).
    pub fn open_in_place(path: &Path) -> Result<Output> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, staged: bool) -> Result<Output> {
        if path.as_os_str() == "-" {
            return Ok(Output::Stdout);
        }
        let cannot = |e: io::Error| {
            BadInput(format!(
                "cannot write {}: {e}; choose a writable path (checked before tracing starts)",
                path.display()
            ))
        };
        let meta = std::fs::metadata(path);
        if let Ok(m) = &meta
            && m.is_dir()
        {
            return Err(cannot(io::Error::from(io::ErrorKind::IsADirectory)).into());
        }
        let regular = meta.as_ref().map_or(true, |m| m.is_file());
        if !(staged && regular) {
            let file = File::create(path).map_err(cannot)?;
            return Ok(Output::File {
                file,
                path: path.to_path_buf(),
            });
        }
        sweep_partial(path);
        let tmp = staging_path(path, std::process::id());
        let file = File::create(&tmp).map_err(cannot)?;
        Ok(Output::Staged {
            file,
            path: path.to_path_buf(),
            tmp,
        })
    }

    /// The output is complete: a staged file takes its final name.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Output::Staged { file, path, tmp } = self {
            file.sync_all()?;
            std::fs::rename(tmp, path)?;
        }
        Ok(())
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
            Output::File { file, .. } | Output::Staged { file, .. } => {
                file.write_all(bytes)?;
                file.flush()
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Output::Stdout => "stdout".into(),
            Output::File { path, .. } | Output::Staged { path, .. } => path.display().to_string(),
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
        o.write_all(&json).and_then(|()| o.finish()).map_err(|e| {
            anyhow::anyhow!(
                "writing the JSON summary to {} failed: {e}; is the disk full?",
                o.describe()
            )
        })?;
        if !o.is_stdout() {
            eprintln!("reclaim-trace: JSON summary written to {}", o.describe());
        }
    }
    Ok(())
}

impl Drop for Output {
    /// A staged file that was not finished is removed: it never takes the final name.
    fn drop(&mut self) {
        if let Output::Staged { tmp, .. } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_file_appears_only_when_finished() {
        let dir = std::env::temp_dir().join(format!("rt-output-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.json");
        std::fs::write(&path, "old\n").unwrap();
        let mut o = Output::open(&path).unwrap();
        o.write_all(b"new\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "old\n",
            "replaced early"
        );
        o.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        drop(o);
        // Dropped unfinished (an error, a panic): nothing replaces the file, nothing stays.
        let mut o = Output::open(&path).unwrap();
        o.write_all(b"partial").unwrap();
        drop(o);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        // A killed writer's leftover (its pid no longer runs) is removed by the next open.
        let stale = staging_path(&path, u32::MAX - 1);
        std::fs::write(&stale, "partial").unwrap();
        let o = Output::open(&path).unwrap();
        assert!(!stale.exists());
        drop(o);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directories_are_refused_and_devices_written_in_place() {
        let e = Output::open(Path::new("/tmp")).err().unwrap().to_string();
        assert!(
            e.contains("cannot write /tmp") && e.contains("irectory"),
            "{e}"
        );
        assert!(matches!(
            Output::open(Path::new("/dev/null")).unwrap(),
            Output::File { .. }
        ));
    }
}
