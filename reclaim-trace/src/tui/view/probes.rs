//! The probe plan (which source every signal comes from, degraded ones marked, with why), the
//! stale-TLB window and folio exactness, and what tracing costs: BPF run time per program,
//! drops, program errors.

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    text::{Line, Span},
    widgets::{Paragraph, Widget},
};

use super::{
    fmt::{count, ns, pct},
    header::plan_style,
    table::{Col, NumTable, col, val},
};
use crate::tui::app::App;

const COST_COLS: [Col; 5] = [
    col("BPF program", 26, 0),
    col("runs", 8, 0),
    col("run time", 9, 0),
    col("ns/run", 8, 1),
    col("CPU now", 8, 0),
];

fn plan_lines(app: &App) -> Vec<Line<'static>> {
    let plan = &app.frame.total.probe_plan;
    let mut lines: Vec<Line> = plan
        .iter()
        .map(|r| {
            let mark = if r.note.is_some() { "!" } else { " " };
            Line::from(vec![
                Span::styled(format!("{mark} {:<18}", r.signal), plan_style(r)),
                Span::styled(format!("{:<11}", r.tier), plan_style(r)),
                Span::raw(r.source.clone()),
            ])
        })
        .collect();
    for r in plan {
        if let Some(note) = &r.note {
            lines.push(Line::styled(
                format!("! {}: {note}", r.signal),
                Style::new().fg(Color::Yellow),
            ));
        }
    }
    lines
}

/// What the channel lost and what the programs did not expect: red when anything.
fn drops_lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.frame.total;
    let errors: u64 = t.program_errors.values().sum();
    let anomalies: Vec<String> = t
        .anomalies
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|(kind, n)| format!("{kind} {}", count(*n)))
        .collect();
    let style = |bad: bool| {
        if bad {
            Style::new().fg(Color::Red)
        } else {
            Style::new().fg(Color::Gray)
        }
    };
    let mut lines = vec![Line::styled(
        format!(
            "drops: ring buffer {} · decode errors {} · flush records {} · program errors {}",
            count(t.drops.ringbuf),
            count(t.drops.decode_errors),
            count(t.drops.flush_records),
            count(errors)
        ),
        style(t.drops.ringbuf + t.drops.decode_errors + errors > 0),
    )];
    // A line only when there is something to say: the view is full on 24 rows.
    if !anomalies.is_empty() {
        lines.push(Line::styled(
            format!(
                "kernel-side anomalies: {} (-v logs them)",
                anomalies.join(", ")
            ),
            style(true),
        ));
    }
    lines
}

/// The stale-TLB window per written-out folio (the question a dirty-flush batching patch's
/// review asks), where the precise tier measures it, and whether folios are exact.
fn window_lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.frame.total;
    let dim = Style::new().fg(Color::Gray);
    let folios = Line::styled(
        if t.folios_exact {
            "folios: counted one by one, every pass adds up".to_string()
        } else if t.folios_counted() {
            format!(
                "folios: not exact, {} pages in {} passes did not add up",
                count(t.totals.unmatched_pages),
                count(t.totals.unmatched_passes)
            )
        } else {
            "folios: not counted on this kernel, base pages stand in".to_string()
        },
        dim,
    );
    let (Some(w), Some(f)) = (&t.unflushed_window_ns, &t.flush_to_pageout_ns) else {
        let mut l = folios;
        l.spans.push(Span::styled(
            " · stale-TLB window: not measured in this tier",
            dim,
        ));
        return vec![l];
    };
    let q = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| ns(v as f64));
    let before = t.totals.pageouts_before_flush;
    let window = Line::from(vec![
        Span::raw(format!(
            "stale-TLB window: unmap→flush p50 {} p99 {}, →pageout p50 {} · ",
            q(w.p50),
            q(w.p99),
            q(f.p50)
        )),
        Span::styled(
            format!("written before flush {}", count(before)),
            if before > 0 {
                Style::new().fg(Color::Red).bold()
            } else {
                Style::new().fg(Color::Green)
            },
        ),
        Span::styled(
            format!(" · read-only {}", count(t.totals.pageouts_readonly_pending)),
            dim,
        ),
    ]);
    vec![folios, window]
}

fn cost_caption(app: &App) -> Line<'static> {
    let c = &app.frame.cost;
    if !c.stats_enabled {
        return Line::styled(
            "BPF run-time statistics are off (kernel.bpf_stats_enabled could not be set)",
            Style::new().fg(Color::DarkGray),
        );
    }
    Line::raw(format!(
        "BPF total: {} runs, {} ({} of one CPU now){}",
        count(c.bpf_run_count),
        ns(c.bpf_run_time_ns as f64),
        pct(c.bpf_cpu_pct_now),
        c.tool_cpu_pct_now
            .map_or_else(String::new, |p| format!(" · this process {} now", pct(p)))
    ))
}

pub struct Probes<'a>(pub &'a App);

impl Widget for Probes<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let plan = plan_lines(app);
        // The window lines give way to the cost table (header and two rows) on short screens.
        let mut window = window_lines(app);
        let drops = drops_lines(app);
        let fixed = plan.len() as u16 + 1 + drops.len() as u16 + 1 + 3;
        if area.height < fixed + window.len() as u16 {
            window.clear();
        }
        let [plan_area, drops_area, window_area, caption_area, cost_area] = Layout::vertical([
            Constraint::Length(plan.len() as u16 + 1),
            Constraint::Length(drops.len() as u16),
            Constraint::Length(window.len() as u16),
            Constraint::Length(1),
            Constraint::Min(0),
        ])
        .areas(area);
        let mut head = vec![Line::styled(
            "probe plan (! degraded; full reasons: reclaim-trace doctor)",
            Style::new().fg(Color::White).bold(),
        )];
        head.extend(plan);
        Paragraph::new(head).render(plan_area, buf);
        Paragraph::new(drops).render(drops_area, buf);
        Paragraph::new(window).render(window_area, buf);
        Paragraph::new(cost_caption(app)).render(caption_area, buf);
        let rows = app
            .frame
            .cost
            .programs
            .iter()
            .map(|p| {
                vec![
                    val(p.name.clone()),
                    val(count(p.run_count)),
                    val(ns(p.run_time_ns as f64)),
                    val(p
                        .ns_per_run()
                        .map_or_else(|| "-".into(), |v| format!("{v:.0}"))),
                    val(pct(p.cpu_pct_now)),
                ]
            })
            .collect();
        NumTable {
            cols: &COST_COLS,
            text_cols: 1,
            rows,
            sorted_by: None,
        }
        .render(cost_area, buf);
    }
}
