//! Boot a kernel under qemu (software emulation) and read the report /init writes on ttyS1.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::initramfs::MARK;

/// Guest vCPUs: the workload runs one thread per CPU, so flushes fan out to up to 3 others.
pub const VCPUS: u32 = 4;
/// Guest memory (MiB): the workload's cgroup is capped far below; the rest is headroom for the
/// initramfs (a tmpfs) and zram.
pub const MEMORY_MIB: u32 = 2048;

pub struct Boot<'a> {
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    pub disk: Option<&'a Path>,
    pub work: &'a Path,
    pub timeout: Duration,
}

/// The guest's report: sections by name, exit code of the measured run, errors it raised.
#[derive(Debug, Default)]
pub struct Report {
    pub sections: BTreeMap<String, String>,
    pub exit: Option<i32>,
    pub errors: Vec<String>,
    /// /init started (its first mark): the guest kernel booted.
    pub booted: bool,
    pub done: bool,
    pub console: PathBuf,
    pub wall_s: f64,
}

impl Report {
    pub fn parse(text: &str) -> Report {
        let mut r = Report::default();
        let mut current: Option<(String, String)> = None;
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(m) = line.strip_prefix(MARK) {
                let (word, rest) = m.split_once(' ').unwrap_or((m, ""));
                match word {
                    "begin" => current = Some((rest.to_string(), String::new())),
                    "end" => {
                        if let Some((name, body)) = current.take() {
                            r.sections.insert(name, body.trim_end().to_string());
                        }
                    }
                    "exit" => r.exit = rest.trim().parse().ok(),
                    "error" => r.errors.push(rest.to_string()),
                    "boot" => r.booted = true,
                    "done" => r.done = true,
                    _ => {}
                }
                continue;
            }
            if let Some((_, body)) = current.as_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        r
    }

    pub fn section(&self, name: &str) -> Result<&str> {
        self.sections
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the guest's report has no `{name}` section"))
    }
}

/// The guest kernel died before /init ran: nothing of reclaim-trace had run yet.
#[derive(Debug)]
pub struct BootCrash {
    pub console: PathBuf,
    tail: String,
}

impl std::fmt::Display for BootCrash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the guest kernel stopped before /init ran; console ({}):\n{}",
            self.console.display(),
            self.tail
        )
    }
}

impl std::error::Error for BootCrash {}

/// Boot, wait for poweroff (or the timeout), return the report.
pub fn boot(b: &Boot<'_>) -> Result<Report> {
    let console = b.work.join("console.log");
    let data = b.work.join("report.txt");
    let _ = fs::remove_file(&console);
    let _ = fs::remove_file(&data);
    let mut c = Command::new("qemu-system-x86_64");
    // KVM hangs or faults on these machines (DESIGN.md §8): software emulation, multi-threaded.
    c.args(["-accel", "tcg,thread=multi", "-cpu", "max"])
        .args(["-smp", &VCPUS.to_string(), "-m", &MEMORY_MIB.to_string()])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(b.vmlinuz)
        .arg("-initrd")
        .arg(b.initramfs)
        // no_timer_check: under TCG on a busy host, 6.1.192's IO-APIC timer check can time
        // out and panic ("IO-APIC + timer doesn't work!"); the PIT is fine, the check is not.
        .args([
            "-append",
            "console=ttyS0 rdinit=/init panic=-1 loglevel=4 mitigations=off no_timer_check",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", data.display()));
    if let Some(d) = b.disk {
        c.arg("-drive").arg(format!(
            "file={},if=virtio,format=raw,cache=unsafe",
            d.display()
        ));
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = c
        .spawn()
        .context("cannot start qemu-system-x86_64: run `cargo xtask setup` (qemu-system-x86)")?;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if started.elapsed() > b.timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the guest did not power off within {} s; its console is in {}:\n{}",
                b.timeout.as_secs(),
                console.display(),
                tail(&console, 30)
            );
        }
        thread::sleep(Duration::from_millis(200));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut stderr);
    }
    if !status.success() {
        bail!(
            "qemu failed ({status}): {}\nconsole ({}):\n{}",
            stderr.trim(),
            console.display(),
            tail(&console, 30)
        );
    }
    let text = fs::read_to_string(&data).unwrap_or_default();
    let mut r = Report::parse(&text);
    r.console = console.clone();
    r.wall_s = started.elapsed().as_secs_f64();
    if !r.booted {
        return Err(BootCrash {
            console: console.clone(),
            tail: tail(&console, 40),
        }
        .into());
    }
    if !r.done {
        bail!(
            "the guest stopped before finishing its report; console ({}):\n{}",
            console.display(),
            tail(&console, 40)
        );
    }
    Ok(r)
}

/// The last `n` lines of a file.
pub fn tail(p: &Path, n: usize) -> String {
    let t = fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A sparse raw disk with an empty ext4 filesystem (the file workload refuses tmpfs).
pub fn make_disk(path: &Path, size_mib: u64) -> Result<()> {
    let _ = fs::remove_file(path);
    let f = fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.set_len(size_mib << 20)?;
    drop(f);
    crate::util::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
            .arg(path),
    )
    .context("mkfs.ext4 failed (package e2fsprogs: run `cargo xtask setup`)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_sections_survive_crlf_and_noise() {
        let r = Report::parse(
            "junk\r\n@@rt boot\r\n@@rt begin vmstat_before\r\npgsteal_anon 5\r\n\r\n@@rt end \
             vmstat_before\r\n@@rt error insmod x: nope\n@@rt exit 0\n@@rt done\n",
        );
        assert_eq!(r.section("vmstat_before").unwrap(), "pgsteal_anon 5");
        assert_eq!(r.exit, Some(0));
        assert_eq!(r.errors, vec!["insmod x: nope".to_string()]);
        assert!(r.booted && r.done);
        assert!(r.section("nope").is_err());
        // A kernel that dies before /init leaves no boot mark.
        let crashed = Report::parse("[    2.97] Oops: int3: 0000 [#1] SMP NOPTI\n");
        assert!(!crashed.booted && !crashed.done);
    }
}
