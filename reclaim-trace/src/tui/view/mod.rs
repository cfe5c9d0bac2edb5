//! Rendering: `impl Widget for &App`. Reads the app, never changes it. 80x24 and up get the
//! full layout; anything smaller gets a compact one that shows less, never panics.

pub mod contexts;
pub mod cpus;
pub mod fmt;
pub mod header;
pub mod headline;
pub mod help;
pub mod hist;
pub mod probes;
pub mod reclaimers;
pub mod table;

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Paragraph, Widget},
};

use self::{
    contexts::Contexts, headline::Headline, help::Help, probes::Probes, reclaimers::Reclaimers,
};
use super::app::{App, View};

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            compact(self, area, buf);
        } else {
            full(self, area, buf);
        }
        if self.help {
            Help.render(area, buf);
        }
    }
}

fn tabs_line(app: &App, width: u16) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, v) in View::ALL.iter().enumerate() {
        let style = if *v == app.view {
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Gray)
        };
        spans.push(Span::styled(format!(" {} {} ", i + 1, v.title()), style));
        spans.push(Span::raw(" "));
    }
    let mut line = Line::from(spans);
    // Then as much of this as fits, most important first.
    let k = &app.frame.total.kernel;
    let mut extra = Vec::new();
    if app.filter.is_active() {
        extra.push(format!("filter {}", app.filter.describe()));
    }
    extra.push(format!("{} · {} CPUs", k.release, k.online_cpus));
    if let Some(w) = &app.frame.total.workload {
        extra.push(format!("workload {} ×{}", w.kind, w.threads));
    }
    let dim = Style::new().fg(Color::DarkGray);
    for (i, e) in extra.into_iter().enumerate() {
        let sep = if i == 0 { "" } else { " · " };
        if line.width() + sep.len() + e.chars().count() > usize::from(width) {
            break;
        }
        line.push_span(Span::styled(format!("{sep}{e}"), dim));
    }
    line
}

fn footer_line(app: &App) -> Line<'static> {
    match &app.status {
        Some(s) => Line::styled(
            s.text.clone(),
            if s.error {
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                Style::new().fg(Color::Green)
            },
        ),
        None => Line::styled(
            "q quit · p pause · r reset · tab/1-4 views · s sort · e export JSON · ? help",
            Style::new().fg(Color::DarkGray),
        ),
    }
}

fn full(app: &App, area: Rect, buf: &mut Buffer) {
    let [status, probes, tabs, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    header::status_line(app).render(status, buf);
    header::probe_line(app, probes.width).render(probes, buf);
    tabs_line(app, tabs.width).render(tabs, buf);
    footer_line(app).render(footer, buf);
    match app.view {
        View::Overview => overview(app, body, buf),
        View::Contexts => {
            let [table, _, cpus] = Layout::vertical([
                Constraint::Length(9),
                Constraint::Length(1),
                Constraint::Length(2),
            ])
            .areas(body);
            Contexts {
                app,
                total_row: true,
            }
            .render(table, buf);
            shootdowns(app, cpus, buf);
        }
        View::Reclaimers => {
            let [head, table] =
                Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(body);
            Paragraph::new(headline::compact_lines(app)).render(head, buf);
            Reclaimers(app).render(table, buf);
        }
        View::Probes => Probes(app).render(body, buf),
    }
}

/// Headline, the two histograms side by side, contexts, the heat row; top reclaimers when
/// the terminal is tall enough.
fn overview(app: &App, area: Rect, buf: &mut Buffer) {
    // Rows the fixed parts need: headline 4, histograms 6, contexts 7, heat row 2.
    let spare = area.height.saturating_sub(4 + 6 + 7 + 2);
    let reclaimer_rows = if spare >= 6 { spare.min(12) } else { 0 };
    let [head, hists, contexts, reclaimers, cpus] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(6),
        Constraint::Length(7),
        Constraint::Length(reclaimer_rows),
        Constraint::Length(2),
    ])
    .areas(area);
    Headline(app).render(head, buf);
    let [left, right] = Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)])
        .spacing(1)
        .areas(hists);
    hist::render_batch_fill(app, left, buf);
    hist::render_fanout(app, right, buf);
    Contexts {
        app,
        total_row: false,
    }
    .render(contexts, buf);
    if reclaimer_rows > 0 {
        let [_, table] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(reclaimers);
        Reclaimers(app).render(table, buf);
    }
    shootdowns(app, cpus, buf);
}

fn shootdowns(app: &App, area: Rect, buf: &mut Buffer) {
    if app.frame.total.ipi_fanout.source == crate::export::summary::IpiFanout::BROADCAST {
        Paragraph::new(vec![Line::styled(
            "remote TLB shootdowns: none sent (arm64 broadcasts its TLBIs in hardware)",
            Style::new().fg(Color::White).bold(),
        )])
        .render(area, buf);
        return;
    }
    let per_s = app.frame.shootdowns_per_s();
    Paragraph::new(vec![
        cpus::title_line(&per_s),
        cpus::heat_line(&per_s, area.width),
    ])
    .render(area, buf);
}

/// Small terminals: one status line, the headline in two lines, then as much of the current
/// view's table as fits, and the keys.
fn compact(app: &App, area: Rect, buf: &mut Buffer) {
    let [status, head, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    header::status_line(app).render(status, buf);
    Paragraph::new(headline::compact_lines(app)).render(head, buf);
    match app.view {
        View::Overview | View::Contexts => Contexts {
            app,
            total_row: false,
        }
        .render(body, buf),
        View::Reclaimers => Reclaimers(app).render(body, buf),
        View::Probes => {
            let [probes, rest] =
                Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(body);
            Paragraph::new(header::probe_line(app, probes.width))
                .wrap(ratatui::widgets::Wrap { trim: true })
                .render(probes, buf);
            Probes(app).render(rest, buf);
        }
    }
    let keys = match &app.status {
        Some(_) => footer_line(app),
        None => Line::styled(
            format!(
                "q p r e ? · {}x{} < {MIN_WIDTH}x{MIN_HEIGHT}: compact",
                area.width, area.height
            ),
            Style::new().fg(Color::DarkGray),
        ),
    };
    keys.render(footer, buf);
}
