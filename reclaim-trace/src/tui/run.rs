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
    let mut session = session;
    let mut guard = match TerminalGuard::enter() {
        Ok(g) => g,
        Err(e) => {
            terminal::restore();
            let _ = session.finish().await;
            return Err(e);
        }
    };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop_input = Arc::new(AtomicBool::new(false));
    let mut outcome = terminal::spawn_input(tx.clone(), stop_input.clone());
    // Closing the terminal sends SIGHUP, whose default action would kill us before cleanup.
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            let tx = tx.clone();
            tokio::spawn(async move {
                if hup.recv().await.is_some() {
                    let _ = tx.send(Event::Hangup);
                }
            });
        }
        Err(e) => log::warn!("cannot handle SIGHUP: {e}"),
    }
    drop(tx);

    let mut sampler = Sampler::new(&session);
    let mut app = App::new(
        sampler.sample(&session),
        opts.filter.clone(),
        opts.interval.as_secs_f64(),
    );
    let mut quit_reason: Option<String> = None;
    // Fault injection for the live test that checks that a panic restores the terminal and
    // removes the workload: panic at the N-th refresh.
    let panic_at: Option<u64> = std::env::var("RECLAIM_TRACE_TEST_PANIC_AFTER")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut refreshes = 0u64;
    let mut stop = Stop::Requested;
    if outcome.is_ok() {
        outcome = guard
            .terminal
            .draw(|f| f.render_widget(&app, f.area()))
            .map(|_| ())
            .context("cannot draw the dashboard");
    }
    if outcome.is_ok() {
        let looped = session
            .run_with(None, opts.interval, &mut rx, |s, wake| {
                let event = match wake {
                    Wake::Tick => Event::Tick,
                    Wake::Input(e) => e,
                };
                let effect = match event {
                    Event::Tick => {
                        refreshes += 1;
                        if panic_at == Some(refreshes) {
                            panic!("injected by RECLAIM_TRACE_TEST_PANIC_AFTER={refreshes}");
                        }
                        app.ingest(sampler.sample(s));
                        None
                    }
                    Event::Key(k) => action_for_key(&app, k).and_then(|a| app.update(a)),
                    Event::Resize => None,
                    Event::Hangup => {
                        quit_reason = Some("the terminal went away (SIGHUP)".into());
                        return Ok(false);
                    }
                    Event::InputFailed(e) => {
                        quit_reason = Some(format!("reading the terminal failed: {e}"));
                        return Ok(false);
                    }
                };
                match effect {
                    Some(Effect::Quit) => return Ok(false),
                    Some(Effect::Reset) => {
                        s.agg.reset();
                        sampler.reset(s);
                        app.after_reset(sampler.sample(s));
                    }
                    Some(Effect::Export) => {
                        let r = export(&app.frame.total, &opts.export_dir);
                        app.exported(r.as_deref().map_err(Clone::clone));
                    }
                    None => {}
                }
                guard
                    .terminal
                    .draw(|f| f.render_widget(&app, f.area()))
                    .context("cannot draw the dashboard")?;
                Ok(true)
            })
            .await;
        match looped {
            Ok(s) => stop = s,
            Err(e) => outcome = Err(e),
        }
    }

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
