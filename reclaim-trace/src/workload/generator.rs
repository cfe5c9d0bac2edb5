//! The reclaim generator. Runs in a child process (so that the tracer, which ignores its own
//! pid, sees it), inside the workload's memory cgroup.
//!
//! - `anon`: one shared private anonymous mapping (2–3× the memcg limit), `MADV_NOHUGEPAGE`;
//!   each thread, pinned to its own CPU, keeps writing a pseudo-random word into every page of
//!   its slice. PTEs are dirty (dirty flush before each pageout), the data is not zero and not
//!   same-filled (zram and the swap zeromap would otherwise skip the write), and every CPU of the
//!   mm is in its cpumask (the flush must reach them).
//! - `file`: a clean shared file mapping read page by page: mapped clean folios, flushed in
//!   batches.
//! - `mixed`: half of each.

use std::{
    fs,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Dirty anonymous memory: one flush per reclaimed folio on current kernels. Needs swap.
    Anon,
    /// Clean mapped file pages: flushed in batches.
    File,
    /// Both.
    Mixed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Anon => "anon",
            Kind::File => "file",
            Kind::Mixed => "mixed",
        }
    }

    pub fn needs_swap(self) -> bool {
        matches!(self, Kind::Anon | Kind::Mixed)
    }

    pub fn needs_file(self) -> bool {
        matches!(self, Kind::File | Kind::Mixed)
    }
}

/// What the child runs; passed as JSON on its command line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildSpec {
    pub kind: Kind,
    pub threads: u32,
    /// Total bytes touched (split between anon and file for `mixed`).
    pub size: u64,
    pub cpus: Vec<u32>,
    /// cgroup.procs (or tasks) file to join before touching memory.
    pub cgroup_procs: PathBuf,
    pub file: Option<PathBuf>,
    /// Stop after this long (None: until killed).
    pub duration_s: Option<f64>,
    /// Stop after this many sweeps over each thread's slice (None: no limit).
    #[serde(default)]
    pub sweeps: Option<u64>,
}

struct Region {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is shared by design; threads touch disjoint slices.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base/len come from a successful mmap.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

fn map_anon(len: usize) -> Result<Region> {
    // SAFETY: anonymous mapping, no fd; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        bail!(
            "mmap of {len} anonymous bytes failed: {}",
            std::io::Error::last_os_error()
        );
    }
    // Base pages: one folio per page keeps folios == pages in the kernel's counts.
    // SAFETY: advice on our own mapping.
    unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
    Ok(Region {
        base: p.cast(),
        len,
    })
}

fn map_file(path: &PathBuf, len: usize) -> Result<Region> {
    let f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    use std::os::fd::AsRawFd as _;
    // SAFETY: read-only shared mapping of an open file; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        bail!(
            "mmap of {} failed: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    // Random access: no readahead beyond the page touched, so the fault rate follows the
    // reclaim rate.
    // SAFETY: advice on our own mapping.
    unsafe { libc::madvise(p, len, libc::MADV_RANDOM) };
    Ok(Region {
        base: p.cast(),
        len,
    })
}

fn pin_to(cpu: u32) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity on the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Touch `range` of `region` page by page until `stop` (or `sweeps` passes over it): write
/// (anon) or read (file).
fn touch_loop(
    region: &Region,
    range: std::ops::Range<usize>,
    write: bool,
    seed: u64,
    sweeps: Option<u64>,
    stop: &AtomicBool,
    touched: &AtomicU64,
) {
    let page = page_size();
    let mut x = seed | 1;
    let mut n = 0u64;
    let mut done = 0u64;
    while !stop.load(Ordering::Relaxed) && sweeps.is_none_or(|s| done < s) {
        done += 1;
        let mut off = range.start;
        while off + 8 <= range.end {
            // xorshift64: cheap, never zero, different in every page.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // SAFETY: off + 8 <= range.end <= region.len; the mapping is live while `region`
            // is borrowed; volatile so the compiler keeps every access.
            unsafe {
                let p = region.base.add(off).cast::<u64>();
                if write {
                    std::ptr::write_volatile(p, x);
                } else {
                    std::ptr::read_volatile(p);
                }
            }
            off += page;
            n += 1;
            if n.is_multiple_of(4096) {
                touched.fetch_add(4096, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    return;
                }
            }
        }
    }
}

/// Create the data file of the `file` workload: `size` bytes of non-zero data, written back
/// and dropped from the page cache so that the child's faults charge it to the workload's memcg.
pub fn create_data_file(path: &PathBuf, size: u64) -> Result<()> {
    use std::io::Write as _;
    let mut f = fs::File::create(path).with_context(|| {
        format!(
            "cannot create the file workload's data file {}",
            path.display()
        )
    })?;
    let mut buf = vec![0u8; 1 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_ne_bytes());
    }
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])
            .with_context(|| format!("cannot write {} (disk full?)", path.display()))?;
        left -= n as u64;
    }
    f.sync_all()?;
    use std::os::fd::AsRawFd as _;
    // SAFETY: advice on an open fd.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    Ok(())
}

/// Entry point of the child process.
pub fn run_child(spec: &ChildSpec) -> Result<()> {
    // Die with the parent, whatever kills it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // The command name the tracer shows for this process's passes.
    // SAFETY: prctl with a valid NUL-terminated name.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"rt-workload".as_ptr()) };
    fs::write(&spec.cgroup_procs, std::process::id().to_string()).with_context(|| {
        format!(
            "cannot join the workload cgroup ({})",
            spec.cgroup_procs.display()
        )
    })?;
    let page = page_size() as u64;
    let threads = spec.threads.max(1) as usize;
    let (anon_len, file_len) = match spec.kind {
        Kind::Anon => (spec.size, 0),
        Kind::File => (0, spec.size),
        Kind::Mixed => (spec.size / 2, spec.size - spec.size / 2),
    };
    let round = |v: u64| (v / (page * threads as u64)) * page * threads as u64;
    let anon = (anon_len > 0)
        .then(|| map_anon(round(anon_len) as usize))
        .transpose()?
        .map(Arc::new);
    let file = match (file_len > 0, &spec.file) {
        (true, Some(p)) => Some(Arc::new(map_file(p, round(file_len) as usize)?)),
        (true, None) => bail!("file workload without a data file"),
        _ => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sweeps = spec.sweeps;
    let touched = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..threads {
        let cpu = spec.cpus.get(t % spec.cpus.len().max(1)).copied();
        let (anon, file, stop, touched) =
            (anon.clone(), file.clone(), stop.clone(), touched.clone());
        let name = format!("rt-{}-{t}", spec.kind.as_str());
        handles.push(thread::Builder::new().name(name).spawn(move || {
            if let Some(cpu) = cpu {
                pin_to(cpu);
            }
            let seed = 0x2545_f491_4f6c_dd1d ^ (t as u64).wrapping_mul(0x9e37_79b9);
            // For `mixed`, even threads dirty anon memory and odd threads read the file.
            let target = match (&anon, &file) {
                (Some(a), Some(f)) => {
                    if t % 2 == 0 {
                        (a, true)
                    } else {
                        (f, false)
                    }
                }
                (Some(a), None) => (a, true),
                (None, Some(f)) => (f, false),
                (None, None) => return,
            };
            let (region, write) = target;
            let sharers = match (&anon, &file) {
                (Some(_), Some(_)) => threads.div_ceil(2).max(1),
                _ => threads,
            };
            let idx = match (&anon, &file) {
                (Some(_), Some(_)) => t / 2,
                _ => t,
            };
            let slice = region.len / sharers;
            let range = idx * slice..(idx + 1) * slice;
            touch_loop(region, range, write, seed, sweeps, &stop, &touched);
        })?);
    }
    let started = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(10));
        if handles.iter().all(|h| h.is_finished()) {
            break;
        }
        if let Some(d) = spec.duration_s
            && started.elapsed().as_secs_f64() >= d
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}
