//! Batch-fill and IPI fan-out histograms as horizontal bars. Rows are the non-empty buckets;
//! when they do not fit, buckets are merged into power-of-two ranges (1, 2, 3-4, 5-8, …), and
//! what still does not fit is merged into the last row.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::{Color, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Widget},
};
use reclaim_trace_common::{HIST_BUCKETS, bucket_of, bucket_upper_bound};

use super::fmt::{count, si};
use crate::{
    aggregate::hist::{Bucket, Le},
    export::summary::IpiFanout,
    tui::app::App,
};

/// One bar row: values `lo..=hi` (`hi == u64::MAX`: open-ended), a count per series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistRow {
    pub lo: u64,
    pub hi: u64,
    pub counts: Vec<u64>,
}

impl HistRow {
    pub fn label(&self) -> String {
        match (self.lo, self.hi) {
            (lo, hi) if lo == hi => lo.to_string(),
            (lo, u64::MAX) => format!("≥{lo}"),
            (lo, hi) => format!("{lo}-{hi}"),
        }
    }
}

fn bucket_range(le: Le) -> (u64, u64) {
    let idx = match le {
        Le::Inf(_) => HIST_BUCKETS - 1,
        Le::Value(v) => bucket_of(v),
    };
    let lo = if idx == 0 {
        0
    } else {
        bucket_upper_bound(idx - 1) + 1
    };
    (lo, bucket_upper_bound(idx))
}

/// The power-of-two range holding `lo..=hi`: 0, 1, 2, 3-4, 5-8, 9-16, …
fn pow2_range(lo: u64, hi: u64) -> (u64, u64) {
    if hi <= 2 || hi == u64::MAX {
        return (lo, hi);
    }
    let bits = 64 - (hi - 1).leading_zeros();
    ((1u64 << (bits - 1)) + 1, 1u64 << bits)
}

fn merge_into(rows: &mut Vec<HistRow>, lo: u64, hi: u64, counts: &[u64]) {
    match rows.last_mut() {
        Some(last) if last.lo == lo || last.hi >= lo => {
            last.hi = last.hi.max(hi);
            for (a, b) in last.counts.iter_mut().zip(counts) {
                *a += b;
            }
        }
        _ => rows.push(HistRow {
            lo,
            hi,
            counts: counts.to_vec(),
        }),
    }
}

/// Rows for up to `max_rows` lines from one or more histograms over the same buckets.
pub fn rows(series: &[&[Bucket]], max_rows: usize) -> Vec<HistRow> {
    if max_rows == 0 {
        return Vec::new();
    }
    let mut exact: Vec<HistRow> = Vec::new();
    let mut ranges: Vec<(u64, u64)> = series
        .iter()
        .flat_map(|s| {
            s.iter()
                .filter(|b| b.count != 0)
                .map(|b| bucket_range(b.le))
        })
        .collect();
    ranges.sort_unstable();
    ranges.dedup();
    for (lo, hi) in ranges {
        let counts = series
            .iter()
            .map(|s| {
                s.iter()
                    .filter(|b| bucket_range(b.le) == (lo, hi))
                    .map(|b| b.count)
                    .sum()
            })
            .collect();
        exact.push(HistRow { lo, hi, counts });
    }
    if exact.len() <= max_rows {
        return exact;
    }
    let mut grouped = Vec::new();
    for r in &exact {
        let (lo, hi) = pow2_range(r.lo, r.hi);
        merge_into(&mut grouped, lo, hi, &r.counts);
    }
    if grouped.len() > max_rows {
        let tail = grouped.split_off(max_rows - 1);
        let mut last = tail[0].clone();
        for r in &tail[1..] {
            last.hi = last.hi.max(r.hi);
            for (a, b) in last.counts.iter_mut().zip(&r.counts) {
                *a += b;
            }
        }
        last.hi = u64::MAX;
        grouped.push(last);
    }
    grouped
}

/// `width` cells of bar for `v` out of `max`, in eighths; a non-zero count shows at least ▏.
pub fn bar(v: u64, max: u64, width: usize) -> String {
    if max == 0 || width == 0 || v == 0 {
        return " ".repeat(width);
    }
    let eighths = ((v as f64 / max as f64) * (width * 8) as f64)
        .round()
        .max(1.0) as usize;
    let eighths = eighths.min(width * 8);
    let partial = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"][eighths % 8];
    let s = format!("{}{partial}", "█".repeat(eighths / 8));
    let used = eighths / 8 + usize::from(!partial.is_empty());
    s + &" ".repeat(width - used)
}

struct Panel<'a> {
    title: String,
    stats: Line<'static>,
    /// (column name, buckets); the first series gets the bars.
    series: Vec<(&'a str, &'a [Bucket])>,
    empty: &'a str,
}

impl Widget for Panel<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let block = Block::new()
            .borders(Borders::TOP)
            .border_style(Style::new().fg(Color::DarkGray))
            .title(Span::styled(
                self.title,
                Style::new().fg(Color::White).bold(),
            ));
        let inner = block.inner(area);
        block.render(area, buf);
        let mut lines = vec![self.stats];
        let two = self.series.len() > 1;
        let header = usize::from(two);
        let lists: Vec<&[Bucket]> = self.series.iter().map(|s| s.1).collect();
        let rows = rows(&lists, usize::from(inner.height).saturating_sub(1 + header));
        if rows.is_empty() {
            lines.push(Line::styled(self.empty, Style::new().fg(Color::DarkGray)));
        } else {
            let label_w = rows
                .iter()
                .map(|r| r.label().chars().count())
                .max()
                .unwrap_or(1);
            let extra = if two { 7 } else { 0 };
            let bar_w = usize::from(inner.width).saturating_sub(label_w + 1 + 7 + extra);
            let max = rows.iter().map(|r| r.counts[0]).max().unwrap_or(0);
            if two {
                lines.push(Line::styled(
                    format!(
                        "{:>label_w$} {:<bar_w$} {:>6} {:>6}",
                        "", "", self.series[0].0, self.series[1].0
                    ),
                    Style::new().fg(Color::DarkGray),
                ));
            }
            for r in &rows {
                let mut spans = vec![
                    Span::styled(
                        format!("{:>label_w$} ", r.label()),
                        Style::new().fg(Color::DarkGray),
                    ),
                    Span::styled(bar(r.counts[0], max, bar_w), Style::new().fg(Color::Cyan)),
                    Span::raw(format!(" {:>6}", count(r.counts[0]))),
                ];
                if two {
                    spans.push(Span::raw(format!(" {:>6}", count(r.counts[1]))));
                }
                lines.push(Line::from(spans));
            }
        }
        Paragraph::new(lines).render(inner, buf);
    }
}

fn stats_line(
    mean: Option<f64>,
    p50: Option<u64>,
    p99: Option<u64>,
    max: Option<u64>,
    extra: String,
) -> Line<'static> {
    let u = |v: Option<u64>| match v {
        Some(u64::MAX) => "inf".to_string(),
        Some(v) => v.to_string(),
        None => "-".to_string(),
    };
    Line::styled(
        format!(
            "mean {} p50 {} p99 {} max {}{extra}",
            mean.map_or_else(|| "-".into(), |m| format!("{m:.2}")),
            u(p50),
            u(p99),
            u(max)
        ),
        Style::new().fg(Color::Gray),
    )
}

/// Folios per flush (an estimate in the tracepoint tier, and the title says so).
pub fn render_batch_fill(app: &App, area: Rect, buf: &mut Buffer) {
    let b = &app.frame.total.batch_fill;
    Panel {
        title: if b.exact {
            " batch fill: folios per flush ".into()
        } else {
            " batch fill: folios/flush ≈ estimate ".into()
        },
        stats: stats_line(
            b.stats.mean,
            b.stats.p50,
            b.stats.p99,
            b.stats.max,
            String::new(),
        ),
        series: vec![("flushes", &b.stats.histogram)],
        empty: "no reclaim flushes yet",
    }
    .render(area, buf);
}

/// CPUs per flush: real targets, with the batch's candidate CPUs beside them when known.
pub fn render_fanout(app: &App, area: Rect, buf: &mut Buffer) {
    let f = &app.frame.total.ipi_fanout;
    if f.source == IpiFanout::BROADCAST {
        // arm64: nothing per CPU to chart; say how the flushes reach the CPUs instead.
        let cpus = f.broadcast_cpus.unwrap_or(0);
        Panel {
            title: " TLB flush reach: broadcast (no IPIs) ".into(),
            stats: Line::from(format!(
                "all {cpus} CPUs · no-IPI {} · IPIs {}",
                si(f.flushes_without_ipi as f64),
                si(app.frame.total.totals.ipis as f64)
            )),
            series: vec![],
            empty: "TLBI sent at unmap; flush = wait",
        }
        .render(area, buf);
        return;
    }
    let (title, first) = match f.source.as_str() {
        "csd_queue_cpu" => (" IPI fan-out: CPUs per flush ", "target"),
        "batch_cpumask" => (" IPI fan-out: candidate CPUs per flush ", "cand."),
        _ => (" IPI fan-out: not observable here ", "-"),
    };
    let mut series = vec![(first, f.stats.histogram.as_slice())];
    if f.source == "csd_queue_cpu"
        && let Some(c) = &f.candidates
    {
        series.push(("cand.", c.histogram.as_slice()));
    }
    Panel {
        title: title.into(),
        stats: stats_line(
            f.stats.mean,
            f.stats.p50,
            f.stats.p99,
            f.stats.max,
            format!(" no-IPI {}", si(f.flushes_without_ipi as f64)),
        ),
        series,
        empty: "no reclaim flushes yet",
    }
    .render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Histogram;

    fn buckets(values: &[(u64, u64)]) -> Vec<Bucket> {
        let mut h = Histogram::default();
        for &(v, n) in values {
            h.record(v, n);
        }
        h.to_buckets()
    }

    fn labels(rows: &[HistRow]) -> Vec<String> {
        rows.iter().map(HistRow::label).collect()
    }

    #[test]
    fn buckets_that_fit_are_shown_exactly() {
        let b = buckets(&[(1, 90), (3, 5), (100, 2), (1 << 40, 1)]);
        let r = rows(&[&b], 8);
        assert_eq!(labels(&r), ["1", "3", "65-128", "≥8193"]);
        assert_eq!(r[0].counts, [90]);
    }

    #[test]
    fn too_many_buckets_merge_into_power_of_two_ranges_then_into_the_tail() {
        let b = buckets(&[
            (0, 1),
            (1, 10),
            (2, 20),
            (3, 30),
            (4, 40),
            (7, 70),
            (31, 310),
        ]);
        let r = rows(&[&b], 6);
        assert_eq!(labels(&r), ["0", "1", "2", "3-4", "5-8", "17-32"]);
        assert_eq!(r[3].counts, [70]);
        let r = rows(&[&b], 3);
        assert_eq!(labels(&r), ["0", "1", "≥2"]);
        assert_eq!(r[2].counts, [20 + 30 + 40 + 70 + 310]);
        assert_eq!(
            r.iter().map(|r| r.counts[0]).sum::<u64>(),
            481,
            "nothing is lost"
        );
        assert!(rows(&[&b], 0).is_empty());
    }

    #[test]
    fn two_series_share_rows() {
        let targets = buckets(&[(1, 100), (2, 5)]);
        let candidates = buckets(&[(2, 100), (3, 5)]);
        let r = rows(&[&targets, &candidates], 5);
        assert_eq!(labels(&r), ["1", "2", "3"]);
        assert_eq!(r[0].counts, [100, 0]);
        assert_eq!(r[1].counts, [5, 100]);
        assert_eq!(r[2].counts, [0, 5]);
    }

    #[test]
    fn bars_scale_in_eighths_and_never_hide_a_non_zero_count() {
        assert_eq!(bar(10, 10, 4), "████");
        assert_eq!(bar(5, 10, 4), "██  ");
        assert_eq!(bar(1, 1000, 4), "▏   ");
        assert_eq!(bar(0, 10, 3), "   ");
        assert_eq!(bar(3, 0, 2), "  ");
        assert_eq!(bar(11, 10, 2), "██", "clamped");
    }
}
