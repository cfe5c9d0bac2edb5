//! The dashboard's state and how it changes: keys map to actions in a pure function,
//! `update(action)` changes the state and names the side effect (if any) for the runtime to
//! carry out. Rendering (`view`) only reads an `App`.

use std::{collections::VecDeque, path::Path};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::model::{Filter, Frame};

/// Intervals of ratio history kept for the sparkline (wider than any sensible terminal).
pub const HISTORY: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Overview,
    Contexts,
    Reclaimers,
    Probes,
}

impl View {
    pub const ALL: [View; 4] = [
        View::Overview,
        View::Contexts,
        View::Reclaimers,
        View::Probes,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Contexts => "Contexts",
            View::Reclaimers => "Reclaimers",
            View::Probes => "Probes",
        }
    }

    fn index(self) -> usize {
        View::ALL.iter().position(|&v| v == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> View {
        let n = View::ALL.len() as isize;
        View::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// Order of the reclaimer table (always descending; ties by cgroup, then command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Reclaimed,
    RateNow,
    Flushes,
    Ratio,
    Passes,
    Ipis,
}

impl SortKey {
    const ORDER: [SortKey; 6] = [
        SortKey::Reclaimed,
        SortKey::RateNow,
        SortKey::Flushes,
        SortKey::Ratio,
        SortKey::Passes,
        SortKey::Ipis,
    ];

    pub fn next(self) -> SortKey {
        let i = SortKey::ORDER.iter().position(|&k| k == self).unwrap_or(0);
        SortKey::ORDER[(i + 1) % SortKey::ORDER.len()]
    }

    pub fn name(self) -> &'static str {
        match self {
            SortKey::Reclaimed => "reclaimed",
            SortKey::RateNow => "folios/s",
            SortKey::Flushes => "flushes",
            SortKey::Ratio => "fl/folio",
            SortKey::Passes => "passes",
            SortKey::Ipis => "IPIs",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    TogglePause,
    Reset,
    NextView,
    PrevView,
    Show(View),
    CycleSort,
    Export,
    ToggleHelp,
    CloseHelp,
}

/// Side effects `update` asks the runtime for (it owns the session and the file system).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Quit,
    /// Restart the window: `Aggregator::reset`, then `App::after_reset` with a fresh frame.
    Reset,
    /// Write `app.frame.total` as summary JSON, then report with `App::exported`.
    Export,
}

/// A line at the bottom of the screen until the next one replaces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

#[derive(Clone, Debug)]
pub struct App {
    /// What the screen shows (frozen while paused).
    pub frame: Frame,
    /// Flushes per reclaimed folio of each interval, oldest first (`None`: nothing reclaimed).
    pub history: VecDeque<Option<f64>>,
    pub view: View,
    pub sort: SortKey,
    pub paused: bool,
    pub help: bool,
    pub status: Option<Status>,
    pub filter: Filter,
    pub interval_s: f64,
    /// While paused: the newest frame and the ratios of the intervals not yet shown.
    held: Option<(Frame, Vec<Option<f64>>)>,
}

/// Keys → actions. Pure: the same key in the same state always gives the same action.
pub fn action_for_key(app: &App, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        // Raw mode turns Ctrl-C into a key, not SIGINT.
        KeyCode::Char('c') if ctrl => Some(Action::Quit),
        KeyCode::Char('q') => Some(Action::Quit),
        _ if ctrl => None,
        // In the help screen every other key just closes it.
        _ if app.help => Some(Action::CloseHelp),
        KeyCode::Char('p') | KeyCode::Char(' ') => Some(Action::TogglePause),
        KeyCode::Char('r') => Some(Action::Reset),
        KeyCode::Tab => Some(Action::NextView),
        KeyCode::BackTab => Some(Action::PrevView),
        KeyCode::Char(c @ '1'..='4') => Some(Action::Show(View::ALL[c as usize - '1' as usize])),
        KeyCode::Char('s') => Some(Action::CycleSort),
        KeyCode::Char('e') => Some(Action::Export),
        KeyCode::Char('?') | KeyCode::Char('h') => Some(Action::ToggleHelp),
        _ => None,
    }
}

impl App {
    pub fn new(frame: Frame, filter: Filter, interval_s: f64) -> App {
        App {
            frame,
            history: VecDeque::with_capacity(HISTORY),
            view: View::Overview,
            sort: SortKey::Reclaimed,
            paused: false,
            help: false,
            status: None,
            filter,
            interval_s,
            held: None,
        }
    }

    pub fn update(&mut self, action: Action) -> Option<Effect> {
        match action {
            Action::Quit => return Some(Effect::Quit),
            Action::TogglePause => {
                self.paused = !self.paused;
                if !self.paused
                    && let Some((frame, ratios)) = self.held.take()
                {
                    for r in ratios {
                        self.push_history(r);
                    }
                    self.frame = frame;
                }
            }
            Action::Reset => return Some(Effect::Reset),
            Action::NextView => self.view = self.view.step(1),
            Action::PrevView => self.view = self.view.step(-1),
            Action::Show(v) => self.view = v,
            Action::CycleSort => {
                self.sort = self.sort.next();
                self.status = Some(Status {
                    text: format!("reclaimers sorted by {}", self.sort.name()),
                    error: false,
                });
            }
            Action::Export => return Some(Effect::Export),
            Action::ToggleHelp => self.help = !self.help,
            Action::CloseHelp => self.help = false,
        }
        None
    }

    /// A new interval's frame (held back while paused).
    pub fn ingest(&mut self, frame: Frame) {
        let r = frame.ratio_now();
        if self.paused {
            let held = self.held.get_or_insert_with(|| (frame.clone(), Vec::new()));
            held.0 = frame;
            held.1.push(r);
            return;
        }
        self.push_history(r);
        self.frame = frame;
    }

    /// After `Effect::Reset`: the fresh (empty) window is shown even while paused.
    pub fn after_reset(&mut self, frame: Frame) {
        self.history.clear();
        self.held = None;
        self.status = Some(Status {
            text: format!(
                "reset: counting from {} (elapsed)",
                super::view::fmt::hms(frame.elapsed_s)
            ),
            error: false,
        });
        self.frame = frame;
    }

    /// After `Effect::Export`: where the JSON went, or why it could not be written.
    pub fn exported(&mut self, result: Result<&Path, String>) {
        self.status = Some(match result {
            Ok(p) => Status {
                text: format!("summary JSON written to {}", p.display()),
                error: false,
            },
            Err(e) => Status {
                text: e,
                error: true,
            },
        });
    }

    fn push_history(&mut self, r: Option<f64>) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::fixtures;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn app() -> App {
        App::new(fixtures::populated(), Filter::default(), 1.0)
    }

    /// Feed keys through the pure mapping and `update`, collecting the effects.
    fn press(app: &mut App, codes: &[KeyCode]) -> Vec<Effect> {
        let mut effects = Vec::new();
        for &c in codes {
            if let Some(a) = action_for_key(app, key(c))
                && let Some(e) = app.update(a)
            {
                effects.push(e);
            }
        }
        effects
    }

    #[test]
    fn quit_keys_include_ctrl_c_because_raw_mode_swallows_sigint() {
        let a = app();
        assert_eq!(
            action_for_key(&a, key(KeyCode::Char('q'))),
            Some(Action::Quit)
        );
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action_for_key(&a, ctrl_c), Some(Action::Quit));
        // Ctrl with other letters does nothing (not `r`eset by accident on Ctrl-R).
        let ctrl_r = KeyEvent::new(KeyCode::Char('r'), KeyModifiers::CONTROL);
        assert_eq!(action_for_key(&a, ctrl_r), None);
        let release = KeyEvent {
            kind: KeyEventKind::Release,
            ..key(KeyCode::Char('q'))
        };
        assert_eq!(action_for_key(&a, release), None);
        let mut a = a;
        assert_eq!(press(&mut a, &[KeyCode::Char('q')]), vec![Effect::Quit]);
    }

    #[test]
    fn views_cycle_with_tab_and_jump_with_digits() {
        let mut a = app();
        assert_eq!(a.view, View::Overview);
        press(&mut a, &[KeyCode::Tab, KeyCode::Tab]);
        assert_eq!(a.view, View::Reclaimers);
        press(&mut a, &[KeyCode::Tab, KeyCode::Tab]);
        assert_eq!(a.view, View::Overview, "wraps around");
        press(&mut a, &[KeyCode::BackTab]);
        assert_eq!(a.view, View::Probes);
        press(&mut a, &[KeyCode::Char('2')]);
        assert_eq!(a.view, View::Contexts);
        assert_eq!(action_for_key(&a, key(KeyCode::Char('5'))), None);
    }

    #[test]
    fn sort_cycles_through_every_key_and_says_so() {
        let mut a = app();
        let mut seen = vec![a.sort];
        for _ in 0..SortKey::ORDER.len() {
            press(&mut a, &[KeyCode::Char('s')]);
            seen.push(a.sort);
        }
        assert_eq!(seen.first(), seen.last(), "back to the start");
        seen.pop();
        seen.dedup();
        assert_eq!(seen.len(), SortKey::ORDER.len());
        assert!(a.status.as_ref().unwrap().text.contains("reclaimed"));
    }

    #[test]
    fn help_opens_and_any_key_but_quit_closes_it() {
        let mut a = app();
        press(&mut a, &[KeyCode::Char('?')]);
        assert!(a.help);
        // `r` closes help instead of resetting.
        assert_eq!(press(&mut a, &[KeyCode::Char('r')]), vec![]);
        assert!(!a.help);
        press(&mut a, &[KeyCode::Char('?')]);
        assert_eq!(press(&mut a, &[KeyCode::Char('q')]), vec![Effect::Quit]);
    }

    #[test]
    fn reset_and_export_are_effects_for_the_runtime() {
        let mut a = app();
        assert_eq!(
            press(&mut a, &[KeyCode::Char('r'), KeyCode::Char('e')]),
            vec![Effect::Reset, Effect::Export]
        );
        a.exported(Ok(Path::new("/tmp/x.json")));
        assert_eq!(
            a.status.as_ref().unwrap().text,
            "summary JSON written to /tmp/x.json"
        );
        a.exported(Err("cannot write".into()));
        assert!(a.status.as_ref().unwrap().error);
    }

    #[test]
    fn pause_freezes_the_screen_and_resume_catches_up() {
        let mut a = App::new(fixtures::empty(), Filter::default(), 1.0);
        a.ingest(fixtures::populated());
        assert_eq!(a.history.len(), 1);
        press(&mut a, &[KeyCode::Char('p')]);
        assert!(a.paused);
        let mut newer = fixtures::populated();
        newer.elapsed_s += 2.0;
        a.ingest(fixtures::empty());
        a.ingest(newer.clone());
        assert_eq!(a.frame, fixtures::populated(), "frozen while paused");
        assert_eq!(a.history.len(), 1);
        press(&mut a, &[KeyCode::Char('p')]);
        assert_eq!(a.frame, newer);
        assert_eq!(a.history.len(), 3, "paused intervals are not lost");
        assert_eq!(
            a.history[1], None,
            "an interval without reclaim has no ratio"
        );
    }

    #[test]
    fn reset_clears_history_and_shows_the_fresh_window_even_when_paused() {
        let mut a = app();
        a.ingest(fixtures::populated());
        a.update(Action::TogglePause);
        a.ingest(fixtures::populated());
        a.after_reset(fixtures::empty());
        assert_eq!(a.frame, fixtures::empty());
        assert!(a.history.is_empty());
        a.update(Action::TogglePause);
        assert_eq!(
            a.frame,
            fixtures::empty(),
            "held frames from before the reset are dropped"
        );
    }

    #[test]
    fn history_is_bounded() {
        let mut a = app();
        for _ in 0..HISTORY + 10 {
            a.ingest(fixtures::populated());
        }
        assert_eq!(a.history.len(), HISTORY);
    }
}
