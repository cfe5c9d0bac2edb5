//! The reclaim generator. Runs in a child process (so that the tracer, which ignores its own
//! pid, sees it), inside the workload's memory cgroup.
//!
//! - `anon`: one shared private anonymous mapping (2–3× the memcg limit), `MADV_NOHUGEPAGE`;
//!   each thread, pinned to its own CPU, keeps writing a pseudo-random word into every page of
//!   its slice. PTEs are dirty (dirty flush before each pageout), the data is not zero and not
//!   same-filled (zram and the swap zeromap would otherwise skip the write), and every CPU of the
//!   mm is in its cpumask (the flush must reach them). Before each write the thread reads the
//!   word back and checks it is the one it wrote there one sweep earlier: a write that reclaim
//!   lost (written out, then freed as clean while a CPU could still store to it) shows up as a
//!   corrupt page, which is what a reclaim-flush patch must never cause.
//! - `file`: a clean shared file mapping read page by page: mapped clean folios, flushed in
//!   batches.
//! - `mixed`: half of each.

use std::{
    fs,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::export::summary::WorkloadResult;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Dirty anonymous memory: one flush per reclaimed folio on current kernels. Needs swap.
    Anon,
    /// Dirty anonymous memory in transparent huge pages (MADV_HUGEPAGE): large folios through
    /// reclaim, whole or split. Needs swap, and THP allowed for madvised memory.
    Thp,
    /// Clean mapped file pages: flushed in batches.
    File,
    /// Both.
    Mixed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Anon => "anon",
            Kind::Thp => "thp",
            Kind::File => "file",
            Kind::Mixed => "mixed",
        }
    }

    pub fn needs_swap(self) -> bool {
        matches!(self, Kind::Anon | Kind::Thp | Kind::Mixed)
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
    /// Run each thread as its own single-threaded process (`--procs`).
    #[serde(default)]
    pub procs: bool,
    /// Number of this process's first thread among all the workload's threads (a process of
    /// `--procs` runs one): it picks the thread's data and name.
    #[serde(default)]
    pub first_thread: u32,
    /// `thp`: the PMD size, which the mapping and every thread's slice are aligned to.
    #[serde(default)]
    pub huge_align: u64,
    /// One process of `--procs`: its writer runs on the main thread, the process's only one.
    #[serde(default)]
    pub single: bool,
    /// `--procs`: the cgroup.procs file of each process's own cgroup (`cgroup_procs` is the
    /// first, where the process that starts them waits).
    #[serde(default)]
    pub proc_cgroups: Vec<PathBuf>,
}

pub(super) struct Region {
    base: *mut u8,
    pub len: usize,
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

pub(super) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Anonymous memory in base pages, or (`huge_align` > 0) aligned to that size and advised
/// into transparent huge pages.
pub(super) fn map_anon(len: usize, huge_align: usize) -> Result<Region> {
    let map_len = len + huge_align;
    // SAFETY: anonymous mapping, no fd; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
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
    if huge_align == 0 {
        // Base pages: the anon workload's folios are pages, whatever THP's settings.
        // SAFETY: advice on our own mapping.
        unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
        return Ok(Region {
            base: p.cast(),
            len,
        });
    }
    // Trim to an aligned start, so that every huge page of the region can be a PMD one.
    let addr = p as usize;
    let start = addr.next_multiple_of(huge_align);
    // SAFETY: both pieces lie inside the mapping just made, which nothing else uses yet.
    unsafe {
        if start > addr {
            libc::munmap(p, start - addr);
        }
        let end = start + len;
        if addr + map_len > end {
            libc::munmap(end as *mut libc::c_void, addr + map_len - end);
        }
    }
    let base = start as *mut libc::c_void;
    // SAFETY: advice on our own mapping; a kernel that refuses it is reported.
    if unsafe { libc::madvise(base, len, libc::MADV_HUGEPAGE) } != 0 {
        bail!(
            "madvise(MADV_HUGEPAGE) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(Region {
        base: base.cast(),
        len,
    })
}

pub(super) fn map_file(path: &PathBuf, len: usize) -> Result<Region> {
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

pub(super) fn pin_to(cpu: u32) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity on the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The generator seed of workload thread `t` (a process of `--procs` runs thread `t` alone).
pub(super) fn thread_seed(t: u64) -> u64 {
    0x2545_f491_4f6c_dd1d ^ t.wrapping_mul(0x9e37_79b9)
}

/// xorshift64: cheap, never zero (from a non-zero state), different in every page.
fn next_word(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// What one thread did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ThreadOutcome {
    pub pages_touched: u64,
    /// Pages whose word was read back and compared (writers, from their second sweep on).
    pub pages_verified: u64,
    pub corrupt_pages: u64,
    /// The first mismatch, in words: where, what was written, what was read.
    pub first_corruption: Option<String>,
}

/// How often (in pages) a thread looks at the stop flag: under reclaim a page costs a swap-in
/// and a swap-out, so this keeps the stop within milliseconds.
const STOP_CHECK_PAGES: u64 = 256;

/// One thread's walk over its slice: the generator and what it has seen so far.
struct Sweeper {
    /// Generator state: the next word to write comes from here.
    x: u64,
    /// The generator state at the start of the previous complete sweep: replayed, it gives
    /// the words that sweep wrote, in the same order.
    last_sweep_start: Option<u64>,
    out: ThreadOutcome,
}

impl Sweeper {
    fn new(seed: u64) -> Sweeper {
        Sweeper {
            x: seed | 1,
            last_sweep_start: None,
            out: ThreadOutcome::default(),
        }
    }

    /// One pass over `range` of `region`, page by page: write (anon) or read (file). A writer
    /// first reads each page's word and compares it with what it wrote there one sweep
    /// before. With `discard` (the thp workload) it goes a huge page (`chunk` bytes) at a
    /// time: it checks the whole chunk, drops it (MADV_DONTNEED) and writes it again, so that
    /// the chunk is faulted in as a fresh huge page: swap-in brings base pages back, and
    /// without this every sweep after the first would reclaim base pages only. Returns false if
    /// `stop` cut the sweep short (then no later sweep compares against it).
    fn sweep(
        &mut self,
        region: &Region,
        range: std::ops::Range<usize>,
        how: Touch,
        stop: &dyn Fn() -> bool,
    ) -> bool {
        let page = page_size();
        let chunk = how.chunk.max(page);
        let mut previous = self.last_sweep_start.take();
        let start = self.x;
        let mut off = range.start;
        let mut next_check = self.out.pages_touched + STOP_CHECK_PAGES;
        while off + 8 <= range.end {
            let end = (off + chunk).min(range.end);
            // SAFETY (all accesses below): off..end lies in range, and range in the region,
            // whose mapping is live while `region` is borrowed; volatile so that the compiler
            // keeps every access.
            let word_at = |o: usize| unsafe { region.base.add(o).cast::<u64>() };
            let pages = (off..end).step_by(page).filter(|o| o + 8 <= end);
            if how.write {
                if let Some(prev) = previous.as_mut() {
                    for o in pages.clone() {
                        // SAFETY: see above.
                        let found = unsafe { std::ptr::read_volatile(word_at(o)) };
                        self.verify(o, found, next_word(prev));
                    }
                }
                if how.discard {
                    // SAFETY: advice on our own mapping; the chunk's data was checked above.
                    unsafe { libc::madvise(word_at(off).cast(), end - off, libc::MADV_DONTNEED) };
                }
                for o in pages {
                    // SAFETY: see above.
                    unsafe { std::ptr::write_volatile(word_at(o), next_word(&mut self.x)) };
                    self.out.pages_touched += 1;
                }
            } else {
                for o in pages {
                    // SAFETY: see above.
                    unsafe { std::ptr::read_volatile(word_at(o)) };
                    self.out.pages_touched += 1;
                }
            }
            off = end;
            if self.out.pages_touched >= next_check {
                next_check = self.out.pages_touched + STOP_CHECK_PAGES;
                if stop() {
                    return false;
                }
            }
        }
        self.last_sweep_start = Some(start);
        true
    }

    fn verify(&mut self, off: usize, found: u64, expected: u64) {
        self.out.pages_verified += 1;
        if found != expected {
            self.out.corrupt_pages += 1;
            self.out.first_corruption.get_or_insert_with(|| {
                format!(
                    "the page at byte offset {off:#x} of the mapping held {found:#018x} where \
                     this thread wrote {expected:#018x} one sweep before"
                )
            });
        }
    }
}

/// How a thread touches its slice.
#[derive(Clone, Copy, Debug)]
pub(super) struct Touch {
    /// Dirty the pages (else read them).
    pub write: bool,
    /// Check, drop and rewrite `chunk` bytes at a time (see `Sweeper::sweep`).
    pub discard: bool,
    pub chunk: usize,
}

/// Sweep until `stop` or `sweeps` passes over the slice.
pub(super) fn touch_loop(
    region: &Region,
    range: std::ops::Range<usize>,
    how: Touch,
    seed: u64,
    sweeps: Option<u64>,
    stop: &dyn Fn() -> bool,
) -> ThreadOutcome {
    let mut s = Sweeper::new(seed);
    let mut done = 0u64;
    while !stop() && sweeps.is_none_or(|n| done < n) {
        done += 1;
        if !s.sweep(region, range.clone(), how, stop) {
            break;
        }
    }
    s.out
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
    if spec.procs {
        return super::procs::run_manager(spec);
    }
    if spec.single {
        return super::procs::run_single(spec);
    }
    let page = (page_size() as u64).max(spec.huge_align);
    let threads = spec.threads.max(1) as usize;
    let (anon_len, file_len) = match spec.kind {
        Kind::Anon | Kind::Thp => (spec.size, 0),
        Kind::File => (0, spec.size),
        Kind::Mixed => (spec.size / 2, spec.size - spec.size / 2),
    };
    let round = |v: u64| (v / (page * threads as u64)) * page * threads as u64;
    let anon = (anon_len > 0)
        .then(|| map_anon(round(anon_len) as usize, spec.huge_align as usize))
        .transpose()?
        .map(Arc::new);
    let file = match (file_len > 0, &spec.file) {
        (true, Some(p)) => Some(Arc::new(map_file(p, round(file_len) as usize)?)),
        (true, None) => bail!("file workload without a data file"),
        _ => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_parent(stop.clone());
    let sweeps = spec.sweeps;
    let huge_align = spec.huge_align as usize;
    let mut handles = Vec::new();
    for i in 0..threads {
        let t = i + spec.first_thread as usize;
        let cpu = spec.cpus.get(i % spec.cpus.len().max(1)).copied();
        let (anon, file, stop) = (anon.clone(), file.clone(), stop.clone());
        let name = format!("rt-{}-{t}", spec.kind.as_str());
        handles.push(thread::Builder::new().name(name).spawn(move || {
            if let Some(cpu) = cpu {
                pin_to(cpu);
            }
            let seed = thread_seed(t as u64);
            // For `mixed`, even threads dirty anon memory and odd threads read the file.
            let target = match (&anon, &file) {
                (Some(a), Some(f)) => {
                    if i % 2 == 0 {
                        (a, true)
                    } else {
                        (f, false)
                    }
                }
                (Some(a), None) => (a, true),
                (None, Some(f)) => (f, false),
                (None, None) => return (false, ThreadOutcome::default()),
            };
            let (region, write) = target;
            let sharers = match (&anon, &file) {
                (Some(_), Some(_)) => threads.div_ceil(2).max(1),
                _ => threads,
            };
            let idx = match (&anon, &file) {
                (Some(_), Some(_)) => i / 2,
                _ => i,
            };
            let slice = region.len / sharers;
            let range = idx * slice..(idx + 1) * slice;
            let how = Touch {
                write,
                discard: write && huge_align > 0,
                chunk: huge_align,
            };
            let stop = || stop.load(Ordering::Relaxed);
            (write, touch_loop(region, range, how, seed, sweeps, &stop))
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
    let mut outcomes = Vec::new();
    for h in handles {
        outcomes.push(h.join().unwrap_or_default());
    }
    let result = WorkloadResult::from_threads(started.elapsed().as_secs_f64(), &outcomes);
    // The parent reads this one line when it stops the workload.
    println!("{}", serde_json::to_string(&result)?);
    if let Some(first) = &result.first_corruption {
        bail!(
            "data corruption: {} of {} pages read back did not hold what was written (first: \
             {first}); the kernel lost writes to memory under reclaim",
            result.corrupt_pages,
            result.pages_verified
        );
    }
    Ok(())
}

/// Stop when the parent says so: it closes our stdin (or dies, which closes it too).
pub(super) fn watch_parent(stop: Arc<AtomicBool>) {
    thread::spawn(move || {
        use std::io::Read as _;
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        stop.store(true, Ordering::Relaxed);
    });
}

impl WorkloadResult {
    /// Totals and rates from each thread's outcome (`true`: the thread wrote).
    pub fn from_threads(elapsed_s: f64, threads: &[(bool, ThreadOutcome)]) -> WorkloadResult {
        let rate = |n: u64| {
            if elapsed_s > 0.0 {
                n as f64 / elapsed_s
            } else {
                0.0
            }
        };
        let sum = |f: fn(&ThreadOutcome) -> u64, writers: Option<bool>| -> u64 {
            threads
                .iter()
                .filter(|(w, _)| writers.is_none_or(|x| x == *w))
                .map(|(_, o)| f(o))
                .sum()
        };
        WorkloadResult {
            elapsed_s,
            pages_written: sum(|o| o.pages_touched, Some(true)),
            pages_read: sum(|o| o.pages_touched, Some(false)),
            pages_per_s: rate(sum(|o| o.pages_touched, None)),
            pages_per_s_by_thread: threads.iter().map(|(_, o)| rate(o.pages_touched)).collect(),
            pages_verified: sum(|o| o.pages_verified, None),
            corrupt_pages: sum(|o| o.corrupt_pages, None),
            first_corruption: threads.iter().find_map(|(_, o)| o.first_corruption.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
