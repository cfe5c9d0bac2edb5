//! Remote TLB shootdowns received per CPU (the victims of everyone's flushes) as a heat row.

use ratatui::{
    style::{Color, Style},
    text::{Line, Span},
};

use super::fmt::si;

const SHADES: [&str; 8] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];

/// Shade and colour for `v` of `max` (a zero is a dim dot, never a bar).
fn heat(v: f64, max: f64) -> Span<'static> {
    if v <= 0.0 || max <= 0.0 {
        return Span::styled("·", Style::new().fg(Color::DarkGray));
    }
    let level = ((v / max) * 8.0).ceil().clamp(1.0, 8.0) as usize - 1;
    let color = match level {
        0..=1 => Color::Blue,
        2..=3 => Color::Cyan,
        4..=5 => Color::Yellow,
        _ => Color::Red,
    };
    Span::styled(SHADES[level], Style::new().fg(color))
}

/// `cpu0 ▅ 1.90k  cpu1 █ 3.10k …` when every CPU fits with its figure, else one shade per CPU
/// (CPUs folded together, showing the busiest, when there are more CPUs than columns).
pub fn heat_line(per_s: &[f64], width: u16) -> Line<'static> {
    let width = usize::from(width);
    if per_s.is_empty() {
        return Line::styled("no per-CPU data", Style::new().fg(Color::DarkGray));
    }
    let max = per_s.iter().copied().fold(0.0, f64::max);
    const CELL: usize = 15; // "cpu12 ▅ 3.10k  "
    let mut spans = Vec::new();
    if per_s.len() * CELL <= width {
        for (cpu, &v) in per_s.iter().enumerate() {
            spans.push(Span::styled(
                format!("cpu{cpu} "),
                Style::new().fg(Color::DarkGray),
            ));
            spans.push(heat(v, max));
            spans.push(Span::raw(format!(" {:<6} ", si(v))));
        }
        return Line::from(spans);
    }
    let label = format!("cpu0-{} ", per_s.len() - 1);
    let room = width.saturating_sub(label.len());
    let per_cell = if per_s.len() <= room {
        1
    } else {
        // Leave room for the " (N CPUs per cell)" note.
        per_s.len().div_ceil(room.saturating_sub(20).max(1))
    };
    spans.push(Span::styled(label, Style::new().fg(Color::DarkGray)));
    for group in per_s.chunks(per_cell) {
        spans.push(heat(group.iter().copied().fold(0.0, f64::max), max));
    }
    if per_cell > 1 {
        spans.push(Span::styled(
            format!(" ({per_cell} CPUs per cell)"),
            Style::new().fg(Color::DarkGray),
        ));
    }
    Line::from(spans)
}

/// The heading: what the row shows, the total rate and the busiest CPU.
pub fn title_line(per_s: &[f64]) -> Line<'static> {
    let total: f64 = per_s.iter().sum();
    let busiest = per_s
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .filter(|(_, v)| **v > 0.0);
    let mut text = format!("remote TLB shootdowns received per CPU: {}/s", si(total));
    if let Some((cpu, v)) = busiest {
        text.push_str(&format!(" · busiest cpu{cpu} {}/s", si(*v)));
    }
    Line::styled(text, Style::new().fg(Color::White).bold())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(l: &Line) -> String {
        l.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn few_cpus_show_figures_many_cpus_fold_into_shades() {
        let l = heat_line(&[1900.0, 3100.0, 0.0], 80);
        assert_eq!(text(&l).trim_end(), "cpu0 ▅ 1.90k  cpu1 █ 3.10k  cpu2 · 0");
        let many: Vec<f64> = (0..64).map(|c| c as f64).collect();
        let l = heat_line(&many, 40);
        let t = text(&l);
        assert!(t.starts_with("cpu0-63 "), "{t}");
        assert!(t.ends_with(" (6 CPUs per cell)"), "{t}");
        assert!(t.chars().count() <= 40, "fits: {t}");
        assert!(t.contains('█'), "the busiest group is full height: {t}");
        assert_eq!(text(&heat_line(&[], 10)), "no per-CPU data");
        // A zero-width line still renders (the compact layout may give none).
        let _ = heat_line(&many, 0);
    }

    #[test]
    fn title_names_the_busiest_cpu() {
        assert_eq!(
            text(&title_line(&[1.0, 5.0])),
            "remote TLB shootdowns received per CPU: 6/s · busiest cpu1 5/s"
        );
        assert!(!text(&title_line(&[0.0, 0.0])).contains("busiest"));
    }
}
