//! The `?` screen: keys, and how to read the header.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::{Color, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Widget, Wrap},
};

/// Keys and what they do (the README's key table says the same).
pub const KEYS: [(&str, &str); 8] = [
    (
        "q, Ctrl-C",
        "quit (the workload and its cgroup/swap are removed)",
    ),
    ("p, space", "pause the display (tracing goes on)"),
    ("r", "reset: count from now"),
    ("tab, shift-tab", "next / previous view"),
    ("1 2 3 4", "overview, contexts, reclaimers, probes & cost"),
    ("s", "cycle the reclaimer sort order"),
    ("e", "write the shown totals as summary JSON (path below)"),
    ("?, h", "this help (any key closes it)"),
];

fn lines() -> Vec<Line<'static>> {
    let key = Style::new().fg(Color::Cyan).bold();
    let mut v: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>15}  "), key),
                Span::raw(*what),
            ])
        })
        .collect();
    v.push(Line::raw(""));
    for text in [
        "probes: T tracepoint, K kprobe, F fentry, - not observable; ! degraded (view 4)",
        "flushes per reclaimed folio = (dirty + batch flushes) / folios reclaimed; the chart \
         shows one column per interval, blank when nothing was reclaimed",
        "BPF: run time of the tracer's programs (kernel BPF stats, on only while running)",
    ] {
        v.push(Line::styled(text, Style::new().fg(Color::Gray)));
    }
    v
}

/// A centred box over whatever is below it.
pub struct Help;

impl Widget for Help {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let w = area.width.min(78);
        let h = area.height.min(17);
        let popup = Rect {
            x: area.x + (area.width - w) / 2,
            y: area.y + (area.height - h) / 2,
            width: w,
            height: h,
        };
        Clear.render(popup, buf);
        Paragraph::new(lines())
            .wrap(Wrap { trim: false })
            .block(
                Block::new()
                    .borders(Borders::ALL)
                    .title(" reclaim-trace top: keys ")
                    .border_style(Style::new().fg(Color::Cyan)),
            )
            .render(popup, buf);
    }
}
