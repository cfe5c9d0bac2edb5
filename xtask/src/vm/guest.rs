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
use crate::arch::Arch;

/// Guest vCPUs: the workload runs one thread per CPU, so flushes fan out to up to 3 others.
pub const VCPUS: u32 = 4;
/// Guest memory (MiB): the workload's cgroup is capped far below; the rest is headroom for the
/// initramfs (a tmpfs) and zram.
pub const MEMORY_MIB: u32 = 2048;

pub struct Boot<'a> {
    pub arch: Arch,
    pub vmlinuz: &'a Path,
    /// vCPUs.
    pub smp: u32,
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

/// The guest kernel dies or hangs before /init runs (nothing of reclaim-trace has run yet), or
/// dies later of a stray int3 in kernel text it is patching (`PatchTrap`): emulation, not the
/// tool. Any of these is booted again.
#[derive(Debug)]
pub struct EarlyBootFailure {
    console: PathBuf,
    how: Early,
    tail: String,
}

#[derive(Debug)]
enum Early {
    /// qemu exited (panic=-1, -no-reboot).
    Crashed,
    /// No /init within `INIT_DEADLINE`: where its vCPUs were, and the monitor's whole register
    /// dump (when it answered).
    Hung {
        cpus: String,
        registers: Option<PathBuf>,
    },
    /// "Oops: int3" with the trap in kernel text, not in a BPF program, after /init ran: see
    /// `is_patch_trap`.
    PatchTrap { rip: String },
}

impl EarlyBootFailure {
    /// Keep this boot's console (and register dump) as `console-boot-{crash,hang}-N.log`
    /// (`hang-registers-N.txt`), out of the next boot's way; say what happened and where they are.
    pub fn keep(mut self, n: u32) -> String {
        let what = match self.how {
            Early::Crashed => "crash",
            Early::Hung { .. } => "hang",
            Early::PatchTrap { .. } => "int3",
        };
        let kept = self
            .console
            .with_file_name(format!("console-boot-{what}-{n}.log"));
        if fs::rename(&self.console, &kept).is_ok() {
            self.console = kept;
        }
        if let Early::Hung {
            registers: Some(r), ..
        } = &mut self.how
        {
            let kept = r.with_file_name(format!("hang-registers-{n}.txt"));
            if fs::rename(&*r, &kept).is_ok() {
                *r = kept;
            }
        }
        self.headline()
    }

    fn headline(&self) -> String {
        let what = match &self.how {
            Early::Crashed => "the guest kernel crashed before /init ran".to_string(),
            Early::PatchTrap { rip } => format!(
                "the guest kernel died of a stray int3 in kernel text it was patching ({rip}), \
                 not in a BPF program: emulation (see guest::is_patch_trap)"
            ),
            Early::Hung { cpus, registers } => format!(
                "the guest kernel hung before /init ran (no sign of /init after {} s, normally \
                 under 10 s); its vCPUs were at:\n{cpus}{}",
                INIT_DEADLINE.as_secs(),
                registers.as_ref().map_or(String::new(), |r| format!(
                    "\n(all registers in {})",
                    r.display()
                ))
            ),
        };
        format!("{what}\nconsole: {}", self.console.display())
    }
}

impl std::fmt::Display for EarlyBootFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tail.trim().is_empty() {
            // loglevel=4: a boot that goes wrong without an oops prints nothing at all.
            write!(f, "{} (empty)", self.headline())
        } else {
            write!(f, "{}; its last lines:\n{}", self.headline(), self.tail)
        }
    }
}

impl std::error::Error for EarlyBootFailure {}

/// How long the kernel may take to start /init (5–8 s under TCG here). Past it the boot is
/// taken as hung, its vCPUs' whereabouts are read from the monitor, and it is booted again
/// (`vm::run_with_retries`) instead of waiting out the run's whole timeout. A guest can hang
/// silently at loglevel=4 this early; the known cause, the clocksource watchdog deadlocking
/// with stop_machine, is kept away by `tsc=reliable` (see `qemu_command`, and
/// docs/internals.md, "xtask notes").
pub const INIT_DEADLINE: Duration = Duration::from_secs(60);

/// One boot's files in its work folder: the console (ttyS0), the report /init writes (ttyS1)
/// and the qemu monitor's socket.
struct BootFiles {
    console: PathBuf,
    data: PathBuf,
    monitor: PathBuf,
}

impl BootFiles {
    /// The paths in `work`, with what an earlier boot left there removed.
    fn fresh(work: &Path) -> BootFiles {
        let f = BootFiles {
            console: work.join("console.log"),
            data: work.join("report.txt"),
            monitor: work.join("monitor.sock"),
        };
        for p in [&f.console, &f.data, &f.monitor] {
            let _ = fs::remove_file(p);
        }
        f
    }
}

/// Boot, wait for poweroff (or the timeout), return the report.
pub fn boot(b: &Boot<'_>) -> Result<Report> {
    let files = BootFiles::fresh(b.work);
    let started = Instant::now();
    let (qemu, package) = b.arch.qemu();
    let mut child = qemu_command(b, &files)
        .spawn()
        .with_context(|| format!("cannot start {qemu}: run `cargo xtask setup` ({package})"))?;
    let status = wait_for_poweroff(b, &files, &mut child, started)?;
    let _ = fs::remove_file(&files.monitor);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut stderr);
    }
    let console = &files.console;
    if !status.success() {
        bail!(
            "qemu failed ({status}): {}\nconsole ({}):\n{}",
            stderr.trim(),
            console.display(),
            tail(console, 30)
        );
    }
    let mut r = finished_report(&files)?;
    r.wall_s = started.elapsed().as_secs_f64();
    Ok(r)
}

/// The device /init writes its report to (see `qemu_command`).
pub fn report_device(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "/dev/ttyS1",
        Arch::Arm64 => "/dev/hvc0",
    }
}

/// The qemu command line of a boot: software emulation, the kernel and initramfs, the console
/// and the report channel into `files`, the monitor on its socket, the disk if any.
fn qemu_command(b: &Boot<'_>, files: &BootFiles) -> Command {
    let mut c = Command::new(b.arch.qemu().0);
    match b.arch {
        Arch::Amd64 => {
            // KVM hangs or faults on these machines (docs/kernels.md): software emulation,
            // multi-threaded.
            c.args(["-accel", "tcg,thread=multi", "-cpu", "max"]);
        }
        Arch::Arm64 => {
            // Debian's arm64 vmlinuz (6.12.118) is an uncompressed Image: -kernel boots it as
            // is, no EFI stub. pauth-impdef: QEMU's default pointer-authentication algorithm (QARMA5) is costly
            // to emulate and Debian's arm64 kernel signs every return address; the
            // implementation-defined one is architecturally the same to the guest.
            c.args(["-M", "virt", "-accel", "tcg,thread=multi"])
                .args(["-cpu", "max,pauth-impdef=on"]);
        }
    }
    c.args(["-smp", &b.smp.to_string(), "-m", &MEMORY_MIB.to_string()])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(b.vmlinuz)
        .arg("-initrd")
        .arg(b.initramfs)
        .args(["-append", &kernel_command_line(b.arch)])
        // The monitor is only used when the guest hangs: where were its vCPUs?
        .arg("-monitor")
        .arg(format!(
            "unix:{},server=on,wait=off",
            files.monitor.display()
        ))
        .arg("-serial")
        .arg(format!("file:{}", files.console.display()));
    match b.arch {
        Arch::Amd64 => {
            c.arg("-serial")
                .arg(format!("file:{}", files.data.display()));
        }
        // The virt machine has one serial port (the console): the report goes to a virtio
        // console, /dev/hvc0 in the guest.
        Arch::Arm64 => {
            c.args(["-device", "virtio-serial-pci", "-chardev"])
                .arg(format!("file,id=report,path={}", files.data.display()))
                .args(["-device", "virtconsole,chardev=report"]);
        }
    }
    if let Some(d) = b.disk {
        c.arg("-drive").arg(format!(
            "file={},if=none,id=disk,format=raw,cache=unsafe",
            d.display()
        ));
        c.args(["-device", "virtio-blk-pci,drive=disk"]);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// The guest kernel's command line.
fn kernel_command_line(arch: Arch) -> String {
    // nokaslr: a hung guest's instruction pointers are the same in every boot.
    let common = "rdinit=/init panic=-1 loglevel=4 mitigations=off nokaslr";
    match arch {
        // no_timer_check: under TCG on a busy host, 6.1.192's IO-APIC timer check can time
        // out and panic ("IO-APIC + timer doesn't work!"); the PIT is fine, the check is not.
        // tsc=reliable: no clocksource watchdog, which can deadlock with stop_machine at boot
        // under TCG (7.2.13; see INIT_DEADLINE); TCG's TSC follows the host's clock on every
        // vCPU, so there is nothing to watch.
        Arch::Amd64 => format!("console=ttyS0 {common} no_timer_check tsc=reliable"),
        // The PL011 of the virt machine; the arch timer needs no watchdog.
        Arch::Arm64 => format!("console=ttyAMA0 {common}"),
    }
}

/// Wait for qemu to exit (the guest powers off). A guest whose /init has not started within
/// `INIT_DEADLINE` is stopped as hung (an `EarlyBootFailure`), one still running after the
/// boot's timeout is stopped and fails.
fn wait_for_poweroff(
    b: &Boot<'_>,
    files: &BootFiles,
    child: &mut std::process::Child,
    started: Instant,
) -> Result<std::process::ExitStatus> {
    let console = &files.console;
    let mut init_seen = false;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if !init_seen {
            init_seen = fs::read_to_string(&files.data).is_ok_and(|t| Report::parse(&t).booted);
            if !init_seen && started.elapsed() > INIT_DEADLINE {
                let registers = b.work.join("hang-registers.txt");
                let cpus = vcpu_locations(&files.monitor, &registers);
                stop(child, &files.monitor);
                return Err(EarlyBootFailure {
                    console: console.clone(),
                    how: Early::Hung {
                        cpus,
                        registers: registers.exists().then_some(registers),
                    },
                    tail: tail(console, 20),
                }
                .into());
            }
        }
        if started.elapsed() > b.timeout {
            stop(child, &files.monitor);
            bail!(
                "the guest did not power off within {} s; its console is in {}:\n{}",
                b.timeout.as_secs(),
                console.display(),
                tail(console, 30)
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// The report of a guest that powered off: an `EarlyBootFailure` if /init never ran or the
/// kernel died of a stray int3 in text it was patching, an error if the report is unfinished.
fn finished_report(files: &BootFiles) -> Result<Report> {
    let console = &files.console;
    let text = fs::read_to_string(&files.data).unwrap_or_default();
    let mut r = Report::parse(&text);
    r.console = console.clone();
    if !r.booted {
        return Err(EarlyBootFailure {
            console: console.clone(),
            how: Early::Crashed,
            tail: tail(console, 40),
        }
        .into());
    }
    if !r.done {
        if let Some(rip) = is_patch_trap(&fs::read_to_string(console).unwrap_or_default()) {
            return Err(EarlyBootFailure {
                console: console.clone(),
                how: Early::PatchTrap { rip },
                tail: tail(console, 40),
            }
            .into());
        }
        bail!(
            "the guest stopped before finishing its report; console ({}):\n{}",
            console.display(),
            tail(console, 40)
        );
    }
    Ok(r)
}

/// The RIP line of an "Oops: int3" whose trap is in kernel text and not in a BPF program.
///
/// Under TCG, the kernel's text patching can race multi-threaded emulation: while the tool
/// enables its tracepoints, another vCPU can run a site whose static key is being flipped
/// (e.g. `__smp_call_single_queue`, the `csd_queue_cpu` tracepoint's) and trap on the int3
/// that text_poke_bp plants there. That is emulation, the race behind the early-boot oopses
/// `vm::run_with_retries` boots again, and is retried the same way. A trap in a BPF program
/// (`bpf_prog_` in the RIP) or any other oops is the run's own failure.
pub fn is_patch_trap(console: &str) -> Option<String> {
    let oops = console.find("Oops: int3")?;
    let rip = console[oops..]
        .lines()
        .find(|l| l.contains("RIP: 0010:"))?
        .split("RIP: 0010:")
        .nth(1)?
        .trim()
        .to_string();
    (!rip.contains("bpf_prog_")).then_some(rip)
}

/// Stop a guest that is still running (hung, or out of time) and remove its monitor socket.
fn stop(qemu: &mut std::process::Child, monitor: &Path) {
    let _ = qemu.kill();
    let _ = qemu.wait();
    let _ = fs::remove_file(monitor);
}

/// Ask the qemu monitor for every vCPU's registers; keep the whole dump in `keep` and return
/// one line per vCPU with its instruction pointer. The guest runs with `nokaslr`, so these are
/// link addresses: `/proc/kallsyms` of any other boot of the same kernel names them (Debian's
/// System.map is a placeholder; the real one is in the -dbg package).
fn vcpu_locations(monitor: &Path, keep: &Path) -> String {
    let dump = match monitor_command(monitor, "info registers -a") {
        Ok(d) => d,
        Err(e) => return format!("  (the qemu monitor did not answer: {e:#})"),
    };
    let _ = fs::write(keep, &dump);
    let lines: Vec<String> = rips(&dump)
        .into_iter()
        .map(|(cpu, rip, halted)| {
            format!(
                "  cpu{cpu} at {rip:#x}{}",
                if halted { " (halted)" } else { "" }
            )
        })
        .collect();
    if lines.is_empty() {
        "  (no instruction pointer in the monitor's answer)".to_string()
    } else {
        lines.join("\n")
    }
}

fn monitor_command(path: &Path, cmd: &str) -> Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .with_context(|| format!("cannot connect to {}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.write_all(format!("{cmd}\n").as_bytes())?;
    // A greeting and a prompt, the echoed command, the answer, the next prompt.
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(5);
    let prompts = |o: &[u8]| o.windows(7).filter(|w| w == b"(qemu) ").count();
    while prompts(&out) < 2 && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `(vCPU, RIP, halted)` from `info registers -a` ("CPU#1" headers, then a line
/// "RIP=ffffffff81... RFL=... HLT=1"; arm64's "PC=ffff8000... X00=..." has no halt flag).
fn rips(dump: &str) -> Vec<(u32, u64, bool)> {
    let mut cpu = 0;
    let mut out = Vec::new();
    for line in dump.lines() {
        let line = line.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        if let Some(n) = line.strip_prefix("CPU#") {
            cpu = n
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or(cpu);
        }
        // amd64 "RIP=...", arm64 a line starting "PC=...".
        if let Some(rest) = line.split("RIP=").nth(1).or(line.strip_prefix("PC=")) {
            let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
            if let Ok(rip) = u64::from_str_radix(&hex, 16) {
                out.push((cpu, rip, rest.contains("HLT=1")));
            }
        }
    }
    out
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
    fn a_stray_int3_in_kernel_text_is_emulation_one_in_bpf_code_is_not() {
        let seen = "[    8.833984] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n\
            [    8.834298] CPU: 3 UID: 0 PID: 192 Comm: reclaim-trace Not tainted\n\
            [    8.834532] RIP: 0010:__smp_call_single_queue+0x11/0x110\n";
        assert_eq!(
            is_patch_trap(seen).as_deref(),
            Some("__smp_call_single_queue+0x11/0x110")
        );
        let in_bpf = seen.replace("__smp_call_single_queue", "bpf_prog_3f2a_tlb_flush");
        assert_eq!(is_patch_trap(&in_bpf), None);
        let other = seen.replace("Oops: int3", "Oops: general protection fault");
        assert_eq!(is_patch_trap(&other), None);
    }

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

    #[test]
    fn hung_vcpus_are_read_from_the_monitor() {
        // QEMU 7.2.22's `info registers -a` (two vCPUs, trimmed; the echoed command is
        // redrawn with escape sequences).
        let dump = "QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) \
                    i\x1b[K\x1b[Dinfo registers -a\x1b[K\r\n\r\nCPU#0\r\nRAX=000000000000000f \
                    RBX=000000000000001d\r\nRIP=ffffffff8120a1c4 RFL=00000292 [--S-A--] CPL=0 \
                    II=0 A20=1 SMM=0 HLT=1\r\nES =0000 0000000000000000\r\n\r\nCPU#1\r\n\
                    RIP=ffffffff81117ff3 RFL=00000006 [-----P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\r\n\
                    (qemu) ";
        assert_eq!(
            rips(dump),
            vec![
                (0, 0xffff_ffff_8120_a1c4, true),
                (1, 0xffff_ffff_8111_7ff3, false)
            ]
        );
    }
}
