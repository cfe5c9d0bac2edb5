//! The headline: flushes per reclaimed folio now, its recent history, and the rates.

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Paragraph, Sparkline, SparklineBar, Widget},
};

use super::fmt::{ratio, si};
use crate::tui::app::App;

/// Sparkline values are ratios × 1000 (integers); the top of the chart is at least 1.0.
const SCALE: f64 = 1000.0;

/// The last `width` intervals, and the value at full height.
pub fn spark_data(app: &App, width: usize) -> (Vec<SparklineBar>, u64) {
    let skip = app.history.len().saturating_sub(width);
    let vals: Vec<Option<u64>> = app
        .history
        .iter()
        .skip(skip)
        .map(|r| r.map(|r| (r.max(0.0) * SCALE).round() as u64))
        .collect();
    let max = vals
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(SCALE as u64);
    (vals.into_iter().map(SparklineBar::from).collect(), max)
}

/// `1s`, `2.5s`, `500ms`.
fn interval(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else {
        format!("{s}s")
    }
}

fn ratio_lines(app: &App) -> Vec<Line<'static>> {
    let f = &app.frame;
    let big = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    let dim = Style::new().fg(Color::DarkGray);
    let now = match f.ratio_now() {
        Some(r) => Span::styled(format!("{r:.3}"), big),
        None => Span::styled("n/a", dim),
    };
    let total = &f.total.per_folio;
    let first = Line::from(vec![
        Span::styled("flushes per reclaimed folio ", Style::new().bold()),
        now,
        Span::styled(" now", dim),
    ]);
    if f.ratio_now().is_none() && total.flushes_per_reclaimed_folio.is_none() {
        return vec![
            first,
            Line::styled("no reclaim seen yet (try --workload anon --zram)", dim),
        ];
    }
    // The split of the figure above: deferred flushes send the IPIs (and are what batching
    // changes), immediate ones are local.
    let pf = if f.ratio_now().is_some() {
        &f.now.per_folio
    } else {
        total
    };
    let split = Line::raw(format!(
        "= {} deferred + {} immediate",
        ratio(pf.deferred_flushes_per_reclaimed_folio),
        ratio(pf.immediate_flushes_per_reclaimed_folio)
    ));
    let (_, max) = spark_data(app, usize::MAX);
    let folios = if f.total.folios_exact {
        "folios exact"
    } else if f.total.folios_counted() {
        "folios not exact"
    } else {
        "folios = pages"
    };
    let third = Line::from(vec![
        Span::raw(format!(
            "{} since start",
            ratio(total.flushes_per_reclaimed_folio)
        )),
        Span::styled(
            format!(
                " · {folios} · 1 col/{}, top {:.2}",
                interval(app.interval_s),
                max as f64 / SCALE
            ),
            dim,
        ),
    ]);
    vec![first, split, third]
}

fn rate_lines(app: &App) -> Vec<Line<'static>> {
    let r = &app.frame.now.rates;
    let row = |label: &str, v: f64, unit: &str| {
        Line::from(vec![
            Span::styled(format!("{label:<10}"), Style::new().fg(Color::DarkGray)),
            Span::styled(format!("{:>6}", si(v)), Style::new().bold()),
            Span::raw(format!(" {unit}")),
        ])
    };
    vec![
        row("reclaimed", r.folios_reclaimed_per_s, "folios/s"),
        row("flushes", r.flushes_per_s, "/s"),
        row("IPIs", r.ipis_per_s, "/s"),
        row("passes", r.passes_per_s, "/s"),
    ]
}

pub struct Headline<'a>(pub &'a App);

impl Widget for Headline<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let [left, right] = Layout::horizontal([Constraint::Min(20), Constraint::Length(27)])
            .spacing(2)
            .areas(area);
        let [text, chart] =
            Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(left);
        Paragraph::new(ratio_lines(app)).render(text, buf);
        let (data, max) = spark_data(app, usize::from(chart.width));
        Sparkline::default()
            .data(data)
            .max(max)
            .style(Style::new().fg(Color::Cyan))
            .render(chart, buf);
        Paragraph::new(rate_lines(app)).render(right, buf);
    }
}

/// Two lines for small terminals.
pub fn compact_lines(app: &App) -> Vec<Line<'static>> {
    let f = &app.frame;
    let r = &f.now.rates;
    vec![
        Line::from(vec![
            Span::styled("fl/folio ", Style::new().bold()),
            Span::styled(
                ratio(f.ratio_now()),
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                " now, {} total",
                ratio(f.total.per_folio.flushes_per_reclaimed_folio)
            )),
        ]),
        Line::raw(format!(
            "{} folios/s  {} fl/s  {} IPI/s",
            si(r.folios_reclaimed_per_s),
            si(r.flushes_per_s),
            si(r.ipis_per_s)
        )),
    ]
}
