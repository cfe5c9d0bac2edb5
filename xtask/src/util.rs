//! Small helpers: running commands loudly, finding the workspace.

use std::{
    ffi::OsString,
    path::PathBuf,
    process::{Command, Output},
};

use anyhow::{Context as _, Result, bail};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Run, inheriting stdio; fail with the command line on a non-zero exit.
pub fn run(c: &mut Command) -> Result<()> {
    let status = c.status().with_context(|| format!("cannot start {c:?}"))?;
    if !status.success() {
        bail!("{c:?} failed ({status})");
    }
    Ok(())
}

/// Run and capture; `Ok(None)` when the program does not exist.
pub fn capture(c: &mut Command) -> Result<Option<Output>> {
    match c.output() {
        Ok(o) => Ok(Some(o)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot start {c:?}")),
    }
}

pub fn stdout_of(c: &mut Command) -> Option<String> {
    let o = capture(c).ok()??;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A `cargo` command for the stable toolchain with bpf-linker on PATH.
pub fn cargo(env: &crate::setup::Env) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    c.current_dir(workspace_root()).env("PATH", &env.path);
    c
}
