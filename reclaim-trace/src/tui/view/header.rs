//! The top lines: kernel, elapsed time, drops, what tracing costs, and the probe tier of every
//! signal with the degraded ones marked.

use ratatui::{
    style::{Color, Modifier, Style},
    text::{Line, Span},
};

use super::fmt::{hms, pct, si};
use crate::{export::summary::PlanRow, tui::app::App};

/// Short names for the header (the Probes view spells them out).
pub fn short_signal(name: &str) -> &str {
    match name {
        "reclaim_pass" => "pass",
        "reclaim_context" => "ctx",
        "pageouts" => "pgout",
        "batched_unmaps" => "unmap",
        "dirty_flush" => "dirty",
        "flush" => "flush",
        "fanout_targets" => "tgt",
        "ipis" => "ipi",
        "remote_shootdowns" => "shoot",
        "stale_tlb_window" => "win",
        other => other,
    }
}

/// F, K, T, `-` (not observed), or B where a flush reaches CPUs by hardware broadcast (arm64).
pub fn tier_letter(row: &PlanRow) -> &'static str {
    if row.is_broadcast() {
        return "B";
    }
    match row.tier.as_str() {
        "fentry" => "F",
        "kprobe" => "K",
        "tracepoint" => "T",
        _ => "-",
    }
}

/// Red for a signal that is not observed at all, yellow for one that is observed less
/// precisely than the best tier would (it has a note), plain otherwise (a broadcast row too:
/// nothing is missing there).
pub fn plan_style(row: &PlanRow) -> Style {
    match (row.tier.as_str(), &row.note) {
        _ if row.is_broadcast() => Style::new().fg(Color::Green),
        ("none", _) => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        (_, Some(_)) => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Green),
    }
}

/// `reclaim-trace  00:01:03 · drops 0 · BPF 0.90% CPU, 41.5k runs/s · self 0.40%`
/// (the kernel is on the tabs line).
pub fn status_line(app: &App) -> Line<'static> {
    let f = &app.frame;
    let t = &f.total;
    let dim = Style::new().fg(Color::DarkGray);
    let sep = || Span::styled(" · ", dim);
    let mut spans = vec![Span::styled(
        " reclaim-trace ",
        Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
    )];
    if app.paused {
        spans.push(Span::styled(
            " PAUSED ",
            Style::new().black().on_yellow().bold(),
        ));
    }
    spans.push(Span::raw(" "));
    spans.push(Span::raw(hms(f.elapsed_s)));
    // After a reset the window is shorter than the session.
    if f.elapsed_s - t.duration_s > 1.5 {
        spans.push(Span::styled(
            format!(" (window {})", hms(t.duration_s)),
            dim,
        ));
    }
    spans.push(sep());
    let drops = t.drops.ringbuf + t.drops.decode_errors;
    spans.push(Span::styled(
        format!("drops {}", si(drops as f64)),
        if drops > 0 {
            Style::new().fg(Color::Red).bold()
        } else {
            Style::new()
        },
    ));
    spans.push(sep());
    let c = &f.cost;
    spans.push(if c.stats_enabled {
        Span::raw(format!(
            "BPF {} CPU, {} runs/s",
            pct(c.bpf_cpu_pct_now),
            si(c.bpf_runs_per_s_now)
        ))
    } else {
        Span::styled("BPF cost n/a (stats off)", dim)
    });
    if let Some(tool) = c.tool_cpu_pct_now {
        spans.push(sep());
        spans.push(Span::raw(format!("self {}", pct(tool))));
    }
    Line::from(spans)
}

/// `probes pass:T ctx:T! … unmap:-!` — `!` marks a degraded signal (see view 4); the count
/// of degraded signals follows when `width` leaves room for it.
pub fn probe_line(app: &App, width: u16) -> Line<'static> {
    let mut spans = vec![Span::styled("probes", Style::new().fg(Color::DarkGray))];
    for row in &app.frame.total.probe_plan {
        let mark = if row.note.is_some() { "!" } else { "" };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            format!("{}:{}{mark}", short_signal(&row.signal), tier_letter(row)),
            plan_style(row),
        ));
    }
    let degraded = app
        .frame
        .total
        .probe_plan
        .iter()
        .filter(|r| r.note.is_some())
        .count();
    let suffix = format!("  {degraded} degraded, see 4");
    let mut line = Line::from(spans);
    if degraded > 0 && line.width() + suffix.len() <= usize::from(width) {
        line.push_span(Span::styled(suffix, Style::new().fg(Color::Yellow)));
    }
    line
}
