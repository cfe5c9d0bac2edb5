//! The built-in reclaim workload: a fresh memory cgroup, optional zram swap, and a child
//! process that pushes memory through reclaim. Everything it creates is removed on every exit
//! path (normal, error, Ctrl-C, SIGTERM, panic); what a SIGKILL leaves is swept at next start.

pub mod cgroup;
pub mod generator;
mod procs;
pub mod thp;
pub mod zram;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

pub use self::generator::Kind;
use self::{
    cgroup::{Cgroup, MemoryHierarchy},
    generator::ChildSpec,
    zram::ZramSwap,
};
use crate::{
    error::BadInput,
    export::summary::{WorkloadInfo, WorkloadResult},
};

/// Name prefix of the cgroups the tool creates (`reclaim-trace-<pid>`).
const CGROUP_PREFIX: &str = "reclaim-trace-";
/// TMPFS_MAGIC from statfs(2): files there are shmem, not clean page cache.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    pub kind: Kind,
    pub threads: Option<u32>,
    pub memcg_limit: u64,
    /// Bytes touched; default 2.5× the limit.
    pub size: Option<u64>,
    pub zram: bool,
    /// Directory for the file workload's data (must be on a disk-backed filesystem).
    pub file_dir: Option<PathBuf>,
    pub duration: Option<Duration>,
    /// Stop after this many sweeps over each thread's share of the memory.
    pub sweeps: Option<u64>,
    /// Separate single-threaded processes instead of threads of one.
    pub procs: bool,
}

impl WorkloadOptions {
    pub fn size(&self) -> u64 {
        self.size.unwrap_or(self.memcg_limit / 2 * 5)
    }

    fn threads(&self, online: &[u32]) -> u32 {
        self.threads
            .unwrap_or_else(|| online.len().clamp(2, 16) as u32)
    }
}

/// Most workload threads (or processes): more than any machine this runs on has CPUs for.
const MAX_THREADS: u32 = 4096;

/// What must hold before anything is attached or created.
pub fn preflight(opts: &WorkloadOptions) -> Result<MemoryHierarchy> {
    if opts.threads == Some(0) {
        return Err(BadInput("--threads must be at least 1".into()).into());
    }
    let threads = opts.threads(&online_cpus());
    if threads > MAX_THREADS {
        return Err(BadInput(format!(
            "--threads {threads} is more than {MAX_THREADS}: give at most one per CPU you want busy"
        ))
        .into());
    }
    if opts.procs && opts.kind == Kind::Mixed {
        return Err(BadInput(
            "--procs runs one kind of writer per process: use it with --workload anon, thp or file"
                .into(),
        )
        .into());
    }
    if opts.kind == Kind::Thp {
        let t = thp::madvise_sizes(Path::new(thp::THP_DIR))?;
        let need = t.pmd_bytes * u64::from(threads);
        if opts.size() < need {
            return Err(BadInput(format!(
                "--size ({} MiB) leaves less than one {} KiB huge page per thread ({threads} threads): raise --size or lower --threads",
                opts.size() >> 20,
                t.pmd_bytes >> 10
            ))
            .into());
        }
    }
    if opts.size() < 4 * (1 << 20) || opts.memcg_limit < 4 * (1 << 20) {
        return Err(BadInput("--size and --memcg-limit must be at least 4M".into()).into());
    }
    if opts.size() <= opts.memcg_limit {
        return Err(BadInput(format!(
            "--size ({} MiB) must exceed --memcg-limit ({} MiB), or nothing is reclaimed",
            opts.size() >> 20,
            opts.memcg_limit >> 20
        ))
        .into());
    }
    if opts.kind.needs_swap() && !opts.zram && zram::usable_swaps().is_empty() {
        let others = if zram::active_swaps().is_empty() {
            ""
        } else {
            " (the active swap is another reclaim-trace's zram, removed when that one ends)"
        };
        bail!(
            "no swap is active{others}, so anonymous memory cannot be reclaimed: add --zram to \
             set up a temporary zram swap device (removed on exit), enable swap yourself \
             (swapon), or use --workload file"
        );
    }
    if opts.kind.needs_file() {
        data_dir(opts)?;
    }
    zram::sweep_stale();
    let h = MemoryHierarchy::detect()?;
    sweep_stale_cgroups(&h);
    Ok(h)
}

/// A directory on a disk-backed filesystem for the file workload.
fn data_dir(opts: &WorkloadOptions) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match &opts.file_dir {
        Some(d) => vec![d.clone()],
        None => vec!["/var/tmp".into(), "/tmp".into(), std::env::temp_dir()],
    };
    for d in &candidates {
        match fs_magic(d) {
            Some(m) if m != TMPFS_MAGIC && m != RAMFS_MAGIC => return Ok(d.clone()),
            _ => continue,
        }
    }
    let what = match &opts.file_dir {
        Some(d) => format!(
            "{} is not a directory on a disk-backed filesystem",
            d.display()
        ),
        None => "/var/tmp and /tmp are on tmpfs (or missing)".into(),
    };
    Err(BadInput(format!(
        "{what}: the file workload needs page cache that can be dropped, not shmem; pass \
         --file-dir DIR on a disk filesystem"
    ))
    .into())
}

fn fs_magic(p: &Path) -> Option<i64> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs is plain data; valid path pointer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_type as i64)
}

fn sweep_stale_cgroups(h: &MemoryHierarchy) {
    let Ok(rd) = fs::read_dir(&h.mount) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(CGROUP_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // `--procs` made one child cgroup per process: they go first.
        if let Ok(children) = fs::read_dir(e.path()) {
            for c in children.flatten().filter(|c| c.path().is_dir()) {
                let _ = fs::remove_dir(c.path());
            }
        }
        let _ = fs::remove_dir(e.path());
        if !e.path().exists() {
            log::warn!(
                "removed cgroup {}, left behind by reclaim-trace pid {pid} (killed before it \
                 could clean up)",
                e.path().display()
            );
        }
    }
}

fn online_cpus() -> Vec<u32> {
    fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| crate::kernel::parse_cpu_list(s.trim()))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![0])
}

/// How long a stopping workload may take to finish the page it is on and report.
const CHILD_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running workload. Fields drop in order: child first, then cgroups, file and zram.
pub struct Workload {
    child: Option<Child>,
    /// `--procs`: one cgroup per process, inside `cgroup` (removed before it).
    proc_cgroups: Vec<Cgroup>,
    pub cgroup: Cgroup,
    data_file: Option<PathBuf>,
    pub zram: Option<ZramSwap>,
    pub info: WorkloadInfo,
}

impl Workload {
    pub fn start(opts: &WorkloadOptions, h: &MemoryHierarchy) -> Result<Workload> {
        let cpus = online_cpus();
        let threads = opts.threads(&cpus);
        let size = opts.size();
        // Another reclaim-trace's zram swap is not ours to rely on: it goes when that run ends.
        let zram = if opts.kind.needs_swap() && opts.zram && zram::usable_swaps().is_empty() {
            Some(ZramSwap::setup(size * 2).context("setting up zram swap")?)
        } else {
            None
        };
        let swap = match &zram {
            Some(z) => format!("zram{} ({} MiB, created for this run)", z.dev, z.size >> 20),
            None => zram::usable_swaps().join(", "),
        };
        let cgroup = Cgroup::create(
            h,
            &format!("{CGROUP_PREFIX}{}", std::process::id()),
            opts.memcg_limit,
        )?;
        let data_file = if opts.kind.needs_file() {
            let p = data_dir(opts)?.join(format!("reclaim-trace-{}.data", std::process::id()));
            let file_size = match opts.kind {
                Kind::Mixed => size - size / 2,
                _ => size,
            };
            generator::create_data_file(&p, file_size)?;
            Some(p)
        } else {
            None
        };
        let proc_cgroups = if opts.procs {
            proc_cgroups(h, &cgroup, threads, opts.memcg_limit)?
        } else {
            Vec::new()
        };
        let thp = if opts.kind == Kind::Thp {
            Some(thp::madvise_sizes(Path::new(thp::THP_DIR))?)
        } else {
            None
        };
        let spec = ChildSpec {
            kind: opts.kind,
            threads,
            size,
            cpus: cpus.clone(),
            cgroup_procs: proc_cgroups.first().unwrap_or(&cgroup).procs_file(),
            proc_cgroups: proc_cgroups.iter().map(Cgroup::procs_file).collect(),
            file: data_file.clone(),
            duration_s: opts.duration.map(|d| d.as_secs_f64()),
            sweeps: opts.sweeps,
            procs: opts.procs,
            first_thread: 0,
            huge_align: thp.as_ref().map_or(0, |t| t.pmd_bytes),
            single: false,
        };
        let child = spawn_child(&spec, None)?;
        let info = WorkloadInfo {
            kind: opts.kind.as_str().to_string(),
            threads,
            processes: if opts.procs { threads } else { 1 },
            thp_sizes_kb: thp.map(|t| t.sizes_kb).unwrap_or_default(),
            size_bytes: size,
            memcg_limit_bytes: opts.memcg_limit,
            cgroup: cgroup.path.display().to_string(),
            cgroup_version: h.version,
            swap,
            result: None,
        };
        Ok(Workload {
            child: Some(child),
            proc_cgroups,
            cgroup,
            data_file,
            zram,
            info,
        })
    }

    /// How the child ended, if it has (it should not before `stop` unless it was given a
    /// fixed amount of work): (exited successfully, description).
    pub fn exited(&mut self) -> Option<(bool, String)> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(st)) => Some((st.success(), self.why_ended(st))),
            _ => None,
        }
    }

    /// Why the generator ended: for a SIGKILL, whether its memory cgroup's OOM killer did it
    /// (and how full swap was), someone outside, or the group was removed under it.
    fn why_ended(&self, st: std::process::ExitStatus) -> String {
        use std::os::unix::process::ExitStatusExt as _;
        if st.signal() != Some(libc::SIGKILL) {
            return describe_exit(st);
        }
        let cg = self.cgroup.path.display();
        match self.cgroup.oom_kills() {
            None => format!(
                "killed by SIGKILL, and its memory cgroup {cg} is gone: removed from outside \
                 during the run"
            ),
            Some(0) => format!(
                "killed by SIGKILL from outside (not the OOM killer of its memory cgroup {cg}: \
                 oom_kill 0)"
            ),
            Some(n) => format!(
                "OOM-killed by its memory cgroup ({cg}: oom_kill {n}){}: give it more swap \
                 (--zram sets up a device sized for the workload) or a smaller --size",
                match self.cgroup.swap_fails() {
                    Some(f) if f > 0 => format!(", {f} swap allocations failed: swap is full"),
                    _ => String::new(),
                }
            ),
        }
    }

    /// Stop the generator (reclaim stops with it) and read what it achieved into
    /// `info.result`. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        drop(c.stdin.take());
        let deadline = std::time::Instant::now() + CHILD_STOP_TIMEOUT;
        while matches!(c.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if matches!(c.try_wait(), Ok(None)) {
            log::warn!(
                "the workload did not stop within {} s of being asked: killed, its throughput is \
                 not known",
                CHILD_STOP_TIMEOUT.as_secs()
            );
            let _ = c.kill();
        }
        let status = c.wait().ok();
        self.info.result = child_result(&mut c);
        if self.info.result.is_none() && status.is_some_and(|s| s.success()) {
            log::warn!("the workload ended without saying what it did");
        }
    }

    /// Stop and remove everything; errors are reported, never left silently.
    pub fn cleanup(mut self) -> Result<()> {
        self.stop();
        let mut errors = Vec::new();
        for c in &mut self.proc_cgroups {
            if let Err(e) = c.remove() {
                errors.push(format!("{e:#}"));
            }
        }
        if let Err(e) = self.cgroup.remove() {
            errors.push(format!("{e:#}"));
        }
        if let Some(p) = self.data_file.take() {
            let _ = fs::remove_file(p);
        }
        if let Some(z) = self.zram.as_mut()
            && let Err(e) = z.teardown()
        {
            errors.push(format!("{e:#}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("cleanup incomplete: {}", errors.join("; "))
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop();
        if let Some(p) = self.data_file.take() {
            let _ = fs::remove_file(p);
        }
        // cgroup and zram clean themselves up in their own Drop, in field order.
    }
}

/// Run `spec` in a new process of this executable (`__workload-child`), pinned to `cpu` from
/// before its exec when given (see procs.rs). Closing its stdin tells it to stop; it then
/// prints what it did as one line of JSON.
fn spawn_child(spec: &ChildSpec, cpu: Option<u32>) -> Result<Child> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().context("cannot find this program's executable")?;
    let mut cmd = Command::new(exe);
    if let Some(cpu) = cpu {
        // SAFETY: sched_setaffinity is async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu as usize, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
    }
    cmd.arg("__workload-child")
        .arg(serde_json::to_string(spec)?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start a workload process")
}

/// What a child that has exited said it did (its last line of JSON), if anything.
fn child_result(c: &mut Child) -> Option<WorkloadResult> {
    use std::io::Read as _;
    let mut out = String::new();
    if let Some(mut o) = c.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    out.lines().find_map(|l| serde_json::from_str(l).ok())
}

/// `--procs`: a memory cgroup per process inside the workload's, each limited to its share of
/// the limit, so that every process reclaims its own memory only (as N independent
/// single-threaded programs would), never another process's.
fn proc_cgroups(h: &MemoryHierarchy, parent: &Cgroup, n: u32, limit: u64) -> Result<Vec<Cgroup>> {
    let inside = MemoryHierarchy {
        version: h.version,
        mount: parent.path.clone(),
    };
    (0..n)
        .map(|i| Cgroup::create(&inside, &format!("proc-{i}"), limit / u64::from(n)))
        .collect()
}

pub fn describe_exit(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (st.code(), st.signal()) {
        (_, Some(9)) => {
            "killed by SIGKILL (the OOM killer? swap may be too small for --size)".to_string()
        }
        (_, Some(sig)) => format!("killed by signal {sig}"),
        (Some(code), _) => format!("exited with status {code}"),
        _ => "ended".to_string(),
    }
}
