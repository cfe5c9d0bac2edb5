//! `reclaim-trace top`: the live dashboard (ratatui).
//!
//! - `model`: what one refresh shows (`Frame`), built from windows and summaries; no I/O.
//! - `app`: the state, keys → actions (pure), `update(action)` → effect for the runtime.
//! - `view`: widgets that only read the app.
//! - `sampler`: reads a frame out of the session; `terminal`: the guard that puts the
//!   terminal back on every exit path; `run`: the event loop.

pub mod app;
pub mod model;
pub mod run;
pub mod sampler;
pub mod terminal;
pub mod view;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod screens;

use ratatui::crossterm::event::KeyEvent;

/// Everything the dashboard reacts to. Ring-buffer data reaches the session's aggregator
/// directly; `Tick` says a fresh snapshot of it was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The interval elapsed and the session took a snapshot: sample and redraw.
    Tick,
    Key(KeyEvent),
    /// The terminal changed size: redraw.
    Resize,
    /// The controlling terminal went away (SIGHUP): stop without drawing.
    Hangup,
    /// Reading the terminal failed: stop, with this reason.
    InputFailed(String),
}
