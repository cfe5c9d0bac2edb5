//! `cargo xtask screenshot`: run `reclaim-trace top` under the built-in anon workload in a
//! detached tmux pane, capture the screen with its colours and render it to `docs/top.png`
//! (xtask/src/ansi2png.py; python3-pil and fonts-dejavu-core come from `cargo xtask setup`).

use std::{
    fs,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::util::{is_root, run, workspace_root};

const COLS: &str = "100";
const ROWS: &str = "30";
/// The same lock as the live tests: the workload must not run beside another live run.
const LIVE_LOCK: &str = "/run/reclaim-trace-live.lock";
const LOCK_EX: i32 = 2;

unsafe extern "C" {
    fn flock(fd: i32, operation: i32) -> i32;
}

struct Server(String);

impl Server {
    fn tmux(&self, args: &[&str]) -> Result<String> {
        let o = Command::new("tmux")
            .args(["-L", &self.0, "-f", "/dev/null"])
            .args(args)
            .output()
            .context("cannot run tmux (cargo xtask setup installs it)")?;
        if !o.status.success() {
            bail!(
                "tmux {args:?} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

pub fn screenshot(bin: &Path, seconds: u64) -> Result<PathBuf> {
    if !is_root() {
        bail!(
            "the screenshot runs the tool with its workload and needs root: sudo cargo xtask screenshot"
        );
    }
    let lock = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(LIVE_LOCK)
        .with_context(|| format!("cannot open {LIVE_LOCK}"))?;
    eprintln!("xtask screenshot: waiting for {LIVE_LOCK}");
    // SAFETY: flock on a descriptor we own; blocks until other live runs are done.
    if unsafe { flock(lock.as_raw_fd(), LOCK_EX) } != 0 {
        bail!("flock {LIVE_LOCK}: {}", std::io::Error::last_os_error());
    }
    let server = Server(format!("rt-screenshot-{}", std::process::id()));
    let cmd = format!("{} top --workload anon --zram", bin.display());
    server.tmux(&["new-session", "-d", "-x", COLS, "-y", ROWS, &cmd])?;
    eprintln!("xtask screenshot: dashboard under load for {seconds} s");
    thread::sleep(Duration::from_secs(seconds));
    let capture = server.tmux(&["capture-pane", "-p", "-e"])?;
    if !capture.contains("flushes per reclaimed folio") {
        bail!("the dashboard is not on screen:\n{capture}");
    }
    server.tmux(&["send-keys", "q"])?;
    // Give it time to remove the workload before the server (and SIGHUP) goes.
    for _ in 0..50 {
        thread::sleep(Duration::from_millis(200));
        if server.tmux(&["list-panes"]).is_err() {
            break;
        }
    }
    drop(server);
    drop(lock);

    let root = workspace_root();
    let docs = root.join("docs");
    fs::create_dir_all(&docs).with_context(|| format!("cannot create {}", docs.display()))?;
    let ansi = std::env::temp_dir().join(format!("reclaim-trace-top-{}.ansi", std::process::id()));
    fs::write(&ansi, &capture).with_context(|| format!("cannot write {}", ansi.display()))?;
    let png = docs.join("top.png");
    // Debian's interpreter, the one python3-pil is installed for (a pyenv or venv python3 on
    // PATH would not see it).
    let r = run(Command::new("/usr/bin/python3")
        .arg(root.join("xtask/src/ansi2png.py"))
        .arg(&ansi)
        .args([COLS, ROWS])
        .arg(&png));
    let _ = fs::remove_file(&ansi);
    r.context(
        "rendering the capture failed (python3-pil and fonts-dejavu-core: cargo xtask setup)",
    )?;
    Ok(png)
}
