//! Top reclaimers by memory cgroup, process and command: filtered (`--cgroup`, `--pid`),
//! sorted by the key `s` cycles through.

use std::cmp::Ordering;

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    text::Line,
    widgets::{Paragraph, Widget},
};

use super::{
    fmt::{count, ratio, si},
    table::{Col, NumTable, Val, col, val},
};
use crate::{
    export::summary::Totals,
    tui::{
        app::{App, SortKey},
        model::Reclaimer,
    },
};

const COLS: [Col; 9] = [
    col("cgroup", 18, 0),
    col("command", 15, 0),
    col("pid", 7, 1),
    col("passes", 7, 3),
    // Headings leave room for the sort marker.
    col("reclaimed", 10, 0),
    col("folios/s", 9, 1),
    col("flushes", 8, 2),
    col("fl/folio", 9, 0),
    col("IPIs", 7, 2),
];

fn sort_col(k: SortKey) -> usize {
    match k {
        SortKey::Passes => 3,
        SortKey::Reclaimed => 4,
        SortKey::RateNow => 5,
        SortKey::Flushes => 6,
        SortKey::Ratio => 7,
        SortKey::Ipis => 8,
    }
}

fn key_cmp(k: SortKey, a: &Reclaimer, b: &Reclaimer) -> Ordering {
    let (x, y) = (&a.totals, &b.totals);
    match k {
        SortKey::Reclaimed => x.folios_reclaimed.cmp(&y.folios_reclaimed),
        SortKey::RateNow => a.folios_per_s_now.total_cmp(&b.folios_per_s_now),
        SortKey::Flushes => x.flushes.cmp(&y.flushes),
        // No ratio (nothing reclaimed) sorts last.
        SortKey::Ratio => match (a.ratio(), b.ratio()) {
            (Some(p), Some(q)) => p.total_cmp(&q),
            (p, q) => p.is_some().cmp(&q.is_some()),
        },
        SortKey::Passes => x.passes.cmp(&y.passes),
        SortKey::Ipis => x.ipis.cmp(&y.ipis),
    }
}

/// The rows shown: those the filter lets through, largest first by `app.sort`, then by
/// cgroup, command and pid so that the order is stable between refreshes.
pub fn visible(app: &App) -> Vec<&Reclaimer> {
    let mut v: Vec<&Reclaimer> = app
        .frame
        .reclaimers
        .iter()
        .filter(|r| app.filter.matches(r))
        .collect();
    v.sort_by(|a, b| {
        key_cmp(app.sort, b, a)
            .then_with(|| a.cgroup_label().cmp(&b.cgroup_label()))
            .then_with(|| a.comm.cmp(&b.comm))
            .then_with(|| a.tgid.cmp(&b.tgid))
    });
    v
}

fn cells(r: &Reclaimer) -> Vec<Val> {
    let t = &r.totals;
    vec![
        val(r.cgroup_label()),
        val(r.comm.clone()),
        val(r.tgid.to_string()),
        val(count(t.passes)),
        val(count(t.folios_reclaimed)),
        val(si(r.folios_per_s_now)),
        val(count(t.flushes)),
        val(ratio(r.ratio())).styled(Style::new().fg(Color::Cyan)),
        val(count(t.ipis)),
    ]
}

/// `4 reclaimers` or, filtered, `filter pid 42: 1 of 4 shown · 9.50k folios, 0.996 fl/folio`.
pub fn caption(app: &App, shown: &[&Reclaimer]) -> String {
    let all = app.frame.reclaimers.len();
    if !app.filter.is_active() {
        return format!("{all} reclaimers · sorted by {} (s)", app.sort.name());
    }
    let sum = shown.iter().fold(Totals::default(), |mut acc, r| {
        acc.folios_reclaimed += r.totals.folios_reclaimed;
        acc.flushes += r.totals.flushes;
        acc
    });
    format!(
        "filter {}: {} of {all} shown · {} folios, {} fl/folio · sorted by {} (s)",
        app.filter.describe(),
        shown.len(),
        count(sum.folios_reclaimed),
        ratio(sum.flushes_per_reclaimed_folio()),
        app.sort.name()
    )
}

pub struct Reclaimers<'a>(pub &'a App);

impl Widget for Reclaimers<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let shown = visible(app);
        let [table_area, caption_area] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
        let dim = Style::new().fg(Color::DarkGray);
        if shown.is_empty() {
            let why = if app.frame.reclaimers.is_empty() {
                "no reclaim passes seen yet"
            } else {
                "no reclaimer matches the filter yet"
            };
            Paragraph::new(Line::styled(why, dim)).render(table_area, buf);
        } else {
            NumTable {
                cols: &COLS,
                text_cols: 2,
                rows: shown.iter().map(|r| cells(r)).collect(),
                sorted_by: Some(sort_col(app.sort)),
            }
            .render(table_area, buf);
        }
        Paragraph::new(Line::styled(caption(app, &shown), dim)).render(caption_area, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::{fixtures, model::Filter};

    fn order(app: &App) -> Vec<&str> {
        visible(app).iter().map(|r| r.comm.as_str()).collect()
    }

    #[test]
    fn sorting_is_descending_and_stable() {
        let mut a = App::new(fixtures::populated(), Filter::default(), 1.0);
        assert_eq!(order(&a), ["reclaim-trace", "kswapd0", "postgres", "gone"]);
        a.sort = SortKey::Ratio;
        // gone 1.000, reclaim-trace 0.996, postgres 0.900, kswapd0 0.040
        assert_eq!(order(&a), ["gone", "reclaim-trace", "postgres", "kswapd0"]);
        a.sort = SortKey::RateNow;
        assert_eq!(order(&a)[0], "reclaim-trace");
    }

    #[test]
    fn filters_hide_rows_and_the_caption_sums_what_is_shown() {
        let filter = Filter {
            cgroup: Some("/system.slice".into()),
            pid: None,
        };
        let a = App::new(fixtures::populated(), filter, 1.0);
        let shown = visible(&a);
        assert_eq!(order(&a), ["postgres"]);
        let c = caption(&a, &shown);
        assert!(
            c.starts_with("filter cgroup /system.slice: 1 of 4 shown"),
            "{c}"
        );
        assert!(c.contains("6.30k folios, 0.900 fl/folio"), "{c}");
        let by_pid = Filter {
            cgroup: None,
            pid: Some(87),
        };
        let a = App::new(fixtures::populated(), by_pid, 1.0);
        assert_eq!(order(&a), ["kswapd0"]);
    }
}
