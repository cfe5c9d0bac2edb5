//! The dashboard's event loop around a session: every event goes through `App::update` (keys
//! via the pure `action_for_key`); the effects that need the session or the file system are
//! carried out here. The session is finished on every path out of the loop.

use std::{
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, anyhow};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use super::{
    Event,
    app::{App, Effect, action_for_key},
    model::Filter,
    sampler::Sampler,
    terminal::{self, TerminalGuard},
};
use crate::{
    export::summary::Summary,
    session::{Session, SessionOptions, Stop, Wake},
};

pub struct TopOptions {
    pub session: SessionOptions,
    pub interval: Duration,
    pub filter: Filter,
    /// Where `e` writes summary JSON files (absolute).
    pub export_dir: PathBuf,
}

/// Write `summary` to a new file in `dir`; the path, or what went wrong and what to do.
pub fn export(summary: &Summary, dir: &Path) -> Result<PathBuf, String> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut json = serde_json::to_vec_pretty(summary)
        .map_err(|e| format!("cannot encode the summary as JSON: {e}"))?;
    json.push(b'\n');
    for n in 0..100 {
        let name = match n {
            0 => format!("reclaim-trace-top-{secs}.json"),
            n => format!("reclaim-trace-top-{secs}-{n}.json"),
        };
        let path = dir.join(name);
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&path);
        match file {
            Ok(mut f) => {
                return f.write_all(&json).map(|_| path.clone()).map_err(|e| {
                    format!("writing {} failed: {e}; is the disk full?", path.display())
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(format!(
                    "cannot write {}: {e}; start top with --export-dir DIR (a writable directory)",
                    path.display()
                ));
            }
        }
    }
    Err(format!(
        "{} already holds 100 exports from this second; try again",
        dir.display()
    ))
}

/// What ended the dashboard, for the line printed after the terminal is restored.
fn describe(stop: &Stop, quit_reason: Option<&str>) -> String {
    match (stop, quit_reason) {
        (Stop::Requested, Some(why)) => why.to_string(),
        (Stop::Requested, None) => "quit".into(),
        (Stop::Signal(s), _) => format!("stopped by {s}"),
        (Stop::WorkloadExited, _) => "the workload ended".into(),
        (Stop::Deadline, _) => "deadline".into(),
    }
}

pub async fn run(opts: TopOptions) -> Result<()> {
    let (mut session, mut guard) = start(&opts).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop_input = Arc::new(AtomicBool::new(false));
    let mut outcome = terminal::spawn_input(tx.clone(), stop_input.clone());
    forward_hangup(tx);

    let mut sampler = Sampler::new(&session);
    let app = App::new(
        sampler.sample(&session),
        opts.filter.clone(),
        opts.interval.as_secs_f64(),
    );
    let mut dash = Dashboard {
        app,
        sampler,
        guard: &mut guard,
        export_dir: &opts.export_dir,
        quit_reason: None,
        refreshes: 0,
        // Fault injection for the live test that checks that a panic restores the terminal
        // and removes the workload: panic at the N-th refresh.
        panic_at: std::env::var("RECLAIM_TRACE_TEST_PANIC_AFTER")
            .ok()
            .and_then(|v| v.parse().ok()),
    };
    let mut stop = Stop::Requested;
    if outcome.is_ok() {
        outcome = dash.draw();
    }
    if outcome.is_ok() {
        let looped = session
            .run_with(None, opts.interval, &mut rx, |s, wake| {
                dash.on_wake(s, wake)
            })
            .await;
        match looped {
            Ok(s) => stop = s,
            Err(e) => outcome = Err(e),
        }
    }
    let quit_reason = dash.quit_reason.take();

    stop_input.store(true, Ordering::Relaxed);
    drop(guard); // the terminal is back before the (slow) workload cleanup
    let workload_exit = session.workload_exit.clone();
    let mut err = io::stderr();
    let _ = writeln!(
        err,
        "reclaim-trace top: {} after {:.0} s; removing what the session created…",
        describe(&stop, quit_reason.as_deref()),
        session.now_s()
    );
    let finished = session.finish().await;
    outcome?;
    finished?;
    if stop == Stop::WorkloadExited {
        return Err(anyhow!(
            "the workload ended while the dashboard ran: {}",
            workload_exit.as_deref().unwrap_or("unknown reason")
        ));
    }
    Ok(())
}

/// Start the session and take over the terminal, undoing the first if the second fails.
async fn start(opts: &TopOptions) -> Result<(Session, TerminalGuard)> {
    // Divert stderr first: warnings while attaching, and the workload child (which inherits
    // stderr), must not write over the dashboard. They are replayed after it ends.
    if let Err(e) = terminal::divert_stderr() {
        log::warn!("{e:#}; log lines may show through the dashboard");
    }
    let session = match Session::start(&opts.session).await {
        Ok(s) => s,
        Err(e) => {
            terminal::undivert_stderr();
            return Err(e);
        }
    };
    match TerminalGuard::enter() {
        Ok(g) => Ok((session, g)),
        Err(e) => {
            terminal::restore();
            let _ = session.finish().await;
            Err(e)
        }
    }
}

/// Closing the terminal sends SIGHUP, whose default action would kill us before cleanup:
/// turn it into an event.
fn forward_hangup(tx: mpsc::UnboundedSender<Event>) {
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                if hup.recv().await.is_some() {
                    let _ = tx.send(Event::Hangup);
                }
            });
        }
        Err(e) => log::warn!("cannot handle SIGHUP: {e}"),
    }
}

/// The dashboard between wakes of the session loop.
struct Dashboard<'a> {
    app: App,
    sampler: Sampler,
    guard: &'a mut TerminalGuard,
    export_dir: &'a Path,
    /// Why the user's side ended the loop, when it was not a key (SIGHUP, a terminal error).
    quit_reason: Option<String>,
    refreshes: u64,
    panic_at: Option<u64>,
}

impl Dashboard<'_> {
    fn draw(&mut self) -> Result<()> {
        let app = &self.app;
        self.guard
            .terminal
            .draw(|f| f.render_widget(app, f.area()))
            .map(|_| ())
            .context("cannot draw the dashboard")
    }

    /// One wake of the loop: a fresh snapshot or an input event. `false` ends the loop.
    fn on_wake(&mut self, s: &mut Session, wake: Wake<Event>) -> Result<bool> {
        let event = match wake {
            Wake::Tick => Event::Tick,
            Wake::Input(e) => e,
        };
        let effect = match event {
            Event::Tick => {
                self.refreshes += 1;
                if self.panic_at == Some(self.refreshes) {
                    panic!(
                        "injected by RECLAIM_TRACE_TEST_PANIC_AFTER={}",
                        self.refreshes
                    );
                }
                self.app.ingest(self.sampler.sample(s));
                None
            }
            Event::Key(k) => action_for_key(&self.app, k).and_then(|a| self.app.update(a)),
            Event::Resize => None,
            Event::Hangup => {
                self.quit_reason = Some("the terminal went away (SIGHUP)".into());
                return Ok(false);
            }
            Event::InputFailed(e) => {
                self.quit_reason = Some(format!("reading the terminal failed: {e}"));
                return Ok(false);
            }
        };
        match effect {
            Some(Effect::Quit) => return Ok(false),
            Some(Effect::Reset) => {
                s.agg.reset();
                self.sampler.reset(s);
                self.app.after_reset(self.sampler.sample(s));
            }
            Some(Effect::Export) => {
                let r = export(&self.app.frame.total, self.export_dir);
                self.app.exported(r.as_deref().map_err(Clone::clone));
            }
            None => {}
        }
        self.draw()?;
        Ok(true)
    }
}
