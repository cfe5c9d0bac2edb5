//! Reclaim contexts (kswapd, direct, memcg, proactive, reclaim_pages, other): passes,
//! reclaimed folios, flushes and their ratio since start, and the reclaim rate now.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::{Color, Style},
    widgets::Widget,
};

use super::{
    fmt::{count, ratio, si},
    table::{Col, NumTable, Val, col, val},
};
use crate::{
    aggregate::CONTEXT_NAMES,
    export::summary::{Summary, Totals},
    tui::{app::App, model::per_s},
};

const COLS: [Col; 11] = [
    col("context", 13, 0),
    col("passes", 7, 0),
    col("reclaimed", 9, 0),
    col("flushes", 8, 0),
    col("fl/folio", 8, 0),
    col("folios/s", 8, 1),
    col("IPIs", 7, 2),
    col("pageouts", 8, 3),
    col("dirty fl", 8, 4),
    col("batch fl", 8, 4),
    col("targets", 8, 5),
];

fn cells(name: &str, t: &Totals, rate: f64) -> Vec<Val> {
    let dim = t.passes == 0;
    let style = if dim {
        Style::new().fg(Color::DarkGray)
    } else {
        Style::new()
    };
    let r = t.flushes_per_reclaimed_folio();
    [
        name.to_string(),
        count(t.passes),
        count(t.folios_reclaimed),
        count(t.flushes),
        ratio(r),
        si(rate),
        count(t.ipis),
        count(t.pageouts),
        count(t.dirty_flushes),
        count(t.batch_flushes),
        count(t.fanout_targets),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, s)| {
        let v = val(s).styled(style);
        if i == 4 && !dim {
            v.styled(Style::new().fg(Color::Cyan))
        } else {
            v
        }
    })
    .collect()
}

fn rate(now: &Summary, name: &str) -> f64 {
    now.by_context
        .get(name)
        .map_or(0.0, |c| per_s(c.totals.folios_reclaimed, now.duration_s))
}

/// One row per context in the kernel's order, then (with `total_row`) the sum.
pub fn rows(app: &App, total_row: bool) -> Vec<Vec<Val>> {
    let f = &app.frame;
    let mut rows: Vec<Vec<Val>> = CONTEXT_NAMES
        .iter()
        .map(|&name| {
            let t = f
                .total
                .by_context
                .get(name)
                .map(|c| c.totals.clone())
                .unwrap_or_default();
            cells(name, &t, rate(&f.now, name))
        })
        .collect();
    if total_row {
        rows.push(cells(
            "all",
            &f.total.totals,
            f.now.rates.folios_reclaimed_per_s,
        ));
    }
    rows
}

pub struct Contexts<'a> {
    pub app: &'a App,
    pub total_row: bool,
}

impl Widget for Contexts<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        NumTable {
            cols: &COLS,
            text_cols: 1,
            rows: rows(self.app, self.total_row),
            sorted_by: None,
        }
        .render(area, buf);
    }
}
