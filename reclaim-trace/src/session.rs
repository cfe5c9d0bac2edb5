//! A tracing session: checks, attach, optional workload, the event loop, and a clean end.
//!
//! One owner of state: the session's loop owns the aggregator; the ring-buffer reader task
//! sends it batches over a channel. Signals (SIGINT, SIGTERM) end the loop like the deadline
//! does, so the final summary is always produced and everything is detached and removed.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    aggregate::{Aggregator, Window},
    export::summary::{self, KernelInfo, Summary, SummaryContext, TracerInfo},
    kernel::{KernelFacts, Privileges, tracefs::Tracefs},
    probe::{
        RecordBatch, Tracer, TracerOptions, spawn_kernel_log, spawn_reader, stats::StatsGuard,
    },
    workload::{Workload, WorkloadOptions, cgroup::MemoryHierarchy, preflight},
};

#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    pub tracer: TracerOptions,
    pub workload: Option<WorkloadOptions>,
    /// Turn on kernel BPF run-time statistics for the session (restored at the end).
    pub bpf_stats: bool,
}

/// User + system CPU seconds of this process so far (all its threads; not the workload, which
/// is a separate process).
pub fn process_cpu_s() -> Option<f64> {
    // SAFETY: getrusage fills the struct we pass; zeroed is a valid initial value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// Refuse early, with the fix, when privileges are missing.
pub fn require_privileges(p: &Privileges, needs_admin: bool) -> Result<()> {
    if !p.can_trace() {
        bail!(
            "not permitted to load tracing programs (euid {}, CAP_SYS_ADMIN {}, CAP_BPF {}, \
             CAP_PERFMON {}): run as root, e.g. `sudo reclaim-trace ...` or `cargo xtask run -- ...`",
            p.euid,
            p.cap_sys_admin,
            p.cap_bpf,
            p.cap_perfmon
        );
    }
    if let Some(why) = Tracefs::denied() {
        bail!("{why}");
    }
    if needs_admin && !p.can_admin() {
        bail!(
            "the built-in workload creates a memory cgroup (and zram swap) and needs \
             CAP_SYS_ADMIN: run as root"
        );
    }
    Ok(())
}

/// Facts about the kernel, mounting tracefs if needed.
pub fn gather_facts() -> KernelFacts {
    let tracefs = Tracefs::find_or_mount();
    let mut facts = KernelFacts::gather(tracefs.as_ref());
    if facts.privileges.can_trace() {
        facts.fentry_supported = crate::probe::fentry_supported();
    }
    facts
}

/// What woke a `run_with` callback.
#[derive(Debug)]
pub enum Wake<T> {
    /// A fresh map snapshot was taken (every interval).
    Tick,
    /// An item arrived on the caller's input channel.
    Input(T),
}

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Deadline,
    Signal(&'static str),
    /// The caller's tick callback asked to stop.
    Requested,
    WorkloadExited,
}

/// How long `stop` waits after telling the programs to stop counting.
const STOP_SETTLE_MS: u64 = 20;

pub struct Session {
    pub facts: KernelFacts,
    tracer: Tracer,
    workload: Option<Workload>,
    pub agg: Aggregator,
    rx: mpsc::UnboundedReceiver<RecordBatch>,
    stop_tx: watch::Sender<bool>,
    reader: Option<JoinHandle<()>>,
    /// Forwards the programs' anomaly logs.
    kernel_log: Option<JoinHandle<()>>,
    clock: Instant,
    hierarchy: Option<MemoryHierarchy>,
    bpf_stats: Option<StatsGuard>,
    sigint: Signal,
    sigterm: Signal,
    pub workload_exit: Option<String>,
    /// Process CPU time when tracing began (after load and attach).
    cpu_at_attach: Option<f64>,
}

impl Session {
    /// Check, attach, then start the workload (attaching first: the whole workload is seen).
    pub async fn start(opts: &SessionOptions) -> Result<Session> {
        // Take over SIGINT/SIGTERM before creating anything that must be cleaned up.
        let sigint = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
        let sigterm = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
        let privileges = Privileges::current();
        require_privileges(&privileges, opts.workload.is_some())?;
        let facts = gather_facts();
        let hierarchy = match &opts.workload {
            Some(w) => Some(preflight(w)?),
            None => MemoryHierarchy::detect().ok(),
        };
        let stats = if opts.bpf_stats {
            StatsGuard::enable()
                .map_err(|e| log::warn!("BPF statistics unavailable: {e:#}"))
                .ok()
        } else {
            None
        };
        let mut tracer = Tracer::start(&facts, &opts.tracer)?;
        // Without tracefs the plan may still stand (fentry and raw tracepoints): say what is
        // missing. When it does not, the error above already carries this reason.
        if let Some(e) = &facts.tracefs_error {
            log::warn!("{e}");
        }
        let events = tracer.take_events()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let kernel_log = tracer
            .take_kernel_log()
            .map(|l| spawn_kernel_log(l, stop_rx.clone()))
            .transpose()?;
        let reader = spawn_reader(events, tx, stop_rx)?;
        let clock = Instant::now();
        let initial = tracer.snapshot()?;
        let cpu_at_attach = process_cpu_s();
        let agg = Aggregator::new(initial, 0.0);
        let workload = match (&opts.workload, &hierarchy) {
            (Some(w), Some(h)) => Some(Workload::start(w, h)?),
            _ => None,
        };
        Ok(Session {
            facts,
            tracer,
            workload,
            agg,
            rx,
            stop_tx,
            reader: Some(reader),
            kernel_log,
            clock,
            hierarchy,
            bpf_stats: stats,
            sigint,
            sigterm,
            workload_exit: None,
            cpu_at_attach,
        })
    }

    pub fn now_s(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// Whether kernel BPF run-time statistics are on (asked for, and the kernel agreed).
    pub fn bpf_stats_enabled(&self) -> bool {
        self.bpf_stats.is_some()
    }

    pub fn workload(&self) -> Option<&Workload> {
        self.workload.as_ref()
    }

    /// Take a map snapshot now, and have the kernel send its batched pass records.
    pub fn refresh(&mut self) -> Result<()> {
        let snap = self.tracer.snapshot()?;
        let now = self.now_s();
        self.agg.on_snapshot(snap, now);
        self.tracer.next_generation()
    }

    fn absorb(&mut self, batch: RecordBatch) {
        self.agg.on_records(&batch.records);
        if batch.decode_errors != 0 {
            self.agg.on_decode_errors(batch.decode_errors);
        }
    }

    /// Process records until `deadline` (or forever), a signal, the workload ending, or
    /// `on_tick` returning false; `on_tick` runs every `interval` after a fresh snapshot.
    pub async fn run(
        &mut self,
        deadline: Option<Instant>,
        interval: Duration,
        mut on_tick: impl FnMut(&mut Session) -> Result<bool>,
    ) -> Result<Stop> {
        // A channel that stays open and never yields: `run` has no other input.
        let (_keep_open, mut none) = mpsc::unbounded_channel::<std::convert::Infallible>();
        self.run_with(deadline, interval, &mut none, |s, wake| match wake {
            Wake::Tick => on_tick(s),
            Wake::Input(never) => match never {},
        })
        .await
    }

    /// Like `run`, and also wakes `on_wake` with each item of `input` as soon as it arrives
    /// (the dashboard's keys), between snapshots. A closed `input` is simply no longer polled.
    pub async fn run_with<T>(
        &mut self,
        deadline: Option<Instant>,
        interval: Duration,
        input: &mut mpsc::UnboundedReceiver<T>,
        mut on_wake: impl FnMut(&mut Session, Wake<T>) -> Result<bool>,
    ) -> Result<Stop> {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate
        let sleep_until = deadline.map(tokio::time::Instant::from_std);
        loop {
            let deadline_fut = async {
                match sleep_until {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(batch) = self.rx.recv() => self.absorb(batch),
                _ = ticker.tick() => {
                    self.refresh()?;
                    if let Some(w) = self.workload.as_mut()
                        && let Some((_, why)) = w.exited()
                    {
                        self.workload_exit = Some(why);
                        return Ok(Stop::WorkloadExited);
                    }
                    if !on_wake(self, Wake::Tick)? {
                        return Ok(Stop::Requested);
                    }
                }
                Some(item) = input.recv() => {
                    if !on_wake(self, Wake::Input(item))? {
                        return Ok(Stop::Requested);
                    }
                }
                _ = deadline_fut => return Ok(Stop::Deadline),
                _ = self.sigint.recv() => return Ok(Stop::Signal("SIGINT")),
                _ = self.sigterm.recv() => return Ok(Stop::Signal("SIGTERM")),
            }
        }
    }

    pub fn kernel_info(&self) -> KernelInfo {
        KernelInfo {
            release: self.facts.release.clone(),
            machine: self.facts.machine.clone(),
            probe_mode: self.tracer.plan.probe_mode().to_string(),
            online_cpus: self.facts.online_cpus,
            possible_cpus: self.facts.possible_cpus,
            hypervisor: self.facts.hypervisor.clone(),
            lru_gen: self.facts.lru_gen,
            invlpgb: self.facts.invlpgb,
        }
    }

    /// Memory cgroup id → path below the controller's mount (6 levels deep).
    pub fn cgroup_paths(&self) -> BTreeMap<u64, String> {
        self.hierarchy
            .as_ref()
            .map(|h| h.paths_by_id(6))
            .unwrap_or_default()
    }

    /// The tracer's own figures (pass counts and hot events are filled per window).
    pub fn tracer_info(&self) -> TracerInfo {
        TracerInfo {
            load_attach_s: self.tracer.load_attach_s,
            cpu_s: process_cpu_s()
                .zip(self.cpu_at_attach)
                .map(|(now, then)| now - then),
            traced_s: self.agg.latest_s(),
            programs: self.bpf_stats.as_ref().map(|_| self.tracer.program_stats()),
            ..Default::default()
        }
    }

    /// The summary of a window (the whole session: `self.agg.window()`).
    pub fn summarize(&self, w: &Window) -> Summary {
        let paths = self.cgroup_paths();
        summary::build(
            w,
            &SummaryContext {
                kernel: self.kernel_info(),
                plan: &self.tracer.plan,
                workload: self.workload.as_ref().map(|w| w.info.clone()),
                cgroup_paths: &paths,
                tracer: Some(self.tracer_info()),
            },
        )
    }

    /// Stop the workload, stop counting in the kernel, read what is left in the ring buffer
    /// and in the per-CPU batches, and take the final snapshot. The session's window is then
    /// complete and self-consistent; `close` detaches and cleans up.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(w) = self.workload.as_mut() {
            w.stop();
        }
        // On failure the summary is still written; the last batches may then miss a few passes
        // that the totals have.
        if let Err(e) = self.tracer.stop_counting() {
            log::warn!("{e:#}");
        }
        // A program that read CONTROL just before the write finishes its pass within
        // microseconds; after this nothing writes the batches or the totals.
        tokio::time::sleep(Duration::from_millis(STOP_SETTLE_MS)).await;
        let _ = self.stop_tx.send(true);
        if let Some(r) = self.reader.take() {
            let _ = r.await;
        }
        if let Some(l) = self.kernel_log.take() {
            let _ = l.await;
        }
        while let Ok(batch) = self.rx.try_recv() {
            self.absorb(batch);
        }
        match self.tracer.staged_records() {
            Ok((staged, errors)) => {
                self.agg.on_records(&staged);
                self.agg.on_decode_errors(errors);
            }
            Err(e) => log::warn!("the last pass records are missing: {e:#}"),
        }
        self.refresh()
    }

    /// Detach every program and remove the workload's cgroup and swap.
    pub fn close(self) -> Result<()> {
        let Session {
            tracer, workload, ..
        } = self;
        drop(tracer); // detaches every program
        match workload {
            Some(w) => w.cleanup(),
            None => Ok(()),
        }
    }

    /// `stop`, the summary of the whole session, `close`.
    pub async fn finish(mut self) -> Result<Summary> {
        self.stop().await?;
        // Resolve cgroup names while the workload's cgroup still exists.
        let summary = self.summarize(&self.agg.window());
        self.close()?;
        Ok(summary)
    }
}
