//! Whole-screen tests: the dashboard rendered into a ratatui `TestBackend` from synthetic
//! frames, compared with insta snapshots (`src/tui/snapshots/`), plus assertions on the
//! figures that must be on screen.

use ratatui::{Terminal, backend::TestBackend, buffer::Buffer, style::Color};

use super::{
    app::{Action, App, SortKey, View},
    fixtures,
    model::{Filter, Frame},
};

fn app_with(frame: Frame, history: &[Option<f64>]) -> App {
    let mut app = App::new(frame.clone(), Filter::default(), 1.0);
    for &r in history {
        let mut f = frame.clone();
        f.now.per_folio.flushes_per_reclaimed_folio = r;
        app.ingest(f);
    }
    app.frame = frame;
    app
}

/// A minute of history: the ratio near 1, dropping when batching kicks in, two idle seconds.
fn populated_app() -> App {
    let mut h: Vec<Option<f64>> = (0..40)
        .map(|i| Some(0.93 + 0.001 * (i % 7) as f64))
        .collect();
    h.extend([None, None]);
    h.extend((0..21).map(|i| Some(0.94 - 0.03 * i as f64)));
    app_with(fixtures::populated(), &h)
}

fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    t.draw(|f| f.render_widget(app, f.area())).expect("draw");
    t
}

fn text(buf: &Buffer) -> String {
    let a = buf.area;
    (a.top()..a.bottom())
        .map(|y| {
            (a.left()..a.right())
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The style of the first cell of the first occurrence of `needle` on screen.
fn fg_of(buf: &Buffer, needle: &str) -> Option<Color> {
    let a = buf.area;
    for y in a.top()..a.bottom() {
        let row: Vec<&str> = (a.left()..a.right())
            .map(|x| buf[(x, y)].symbol())
            .collect();
        let line: String = row.concat();
        if let Some(byte) = line.find(needle) {
            let col = line[..byte].chars().count() as u16;
            return buf[(a.left() + col, y)].fg.into();
        }
    }
    None
}

#[test]
fn empty() {
    let app = app_with(fixtures::empty(), &[]);
    let t = draw(&app, 80, 24);
    let s = text(t.backend().buffer());
    assert!(s.contains("flushes per reclaimed folio n/a now"), "{s}");
    assert!(s.contains("no reclaim seen yet"), "{s}");
    assert!(s.contains("no reclaim flushes yet"), "{s}");
    assert!(
        s.contains("memcg"),
        "every context is listed even when idle:\n{s}"
    );
    insta::assert_snapshot!(t.backend());
}

#[test]
fn populated() {
    let app = populated_app();
    let t = draw(&app, 80, 24);
    let s = text(t.backend().buffer());
    // Last interval: (9,590 memcg + 25 kswapd flushes) / (9,600 + 620 folios) = 0.941.
    assert!(s.contains("flushes per reclaimed folio 0.941 now"), "{s}");
    assert!(s.contains("0.941 since start"), "{s}");
    assert!(s.contains("reclaimed  10.2k folios/s"), "{s}");
    assert!(s.contains("flushes    9.62k /s"), "{s}");
    // Histograms: exact batch fill (kprobe tier) and targets next to candidates.
    assert!(s.contains("batch fill: folios per flush ─"), "{s}");
    assert!(!s.contains("estimate"), "{s}");
    assert!(s.contains("target  cand."), "{s}");
    assert!(s.contains("busiest cpu1 3.10k/s"), "{s}");
    assert!(s.contains("BPF 1.05% CPU, 41.5k runs/s"), "{s}");
    assert!(
        !s.contains('!'),
        "no degraded signal in a precise plan:\n{s}"
    );
    insta::assert_snapshot!(t.backend());
}

#[test]
fn broadcast_flushes_show_their_reach_not_a_histogram() {
    let app = app_with(fixtures::broadcast(), &[Some(0.94)]);
    let t = draw(&app, 80, 24);
    let s = text(t.backend().buffer());
    assert!(s.contains("TLB flush reach: broadcast (no IPIs)"), "{s}");
    assert!(s.contains("all 4 CPUs · no-IPI"), "{s}");
    assert!(!s.contains("IPI fan-out"), "{s}");
    assert!(!s.contains("target  cand."), "no per-CPU chart:\n{s}");
    // Broadcast rows are not missing signals: B, and nothing counted as degraded.
    assert!(s.contains("tgt:B") && s.contains("shoot:B"), "{s}");
    assert!(!s.contains("degraded"), "{s}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn populated_tall_terminal_adds_top_reclaimers() {
    let app = populated_app();
    let t = draw(&app, 120, 40);
    let s = text(t.backend().buffer());
    assert!(s.contains("/reclaim-trace-4242"), "{s}");
    assert!(s.contains("/system.slice/postgresql.service"), "{s}");
    assert!(
        s.contains("id 303"),
        "an unresolved cgroup shows its id:\n{s}"
    );
    insta::assert_snapshot!(t.backend());
}

#[test]
fn degraded_probe_plan() {
    let app = app_with(fixtures::degraded(), &[Some(0.94)]);
    let t = draw(&app, 80, 24);
    let buf = t.backend().buffer();
    let s = text(buf);
    assert!(s.contains("unmap:-!"), "{s}");
    assert!(s.contains("dirty:T!"), "{s}");
    assert!(s.contains("pass:T "), "{s}");
    assert!(!s.contains("degraded, see 4"), "no room at 80 columns");
    let wide = text(draw(&app, 110, 30).backend().buffer());
    assert!(wide.contains("4 degraded, see 4"), "{wide}");
    assert!(
        s.contains("≈ estimate"),
        "batch fill says it is estimated:\n{s}"
    );
    assert!(s.contains("drops 12"), "{s}");
    assert_eq!(
        fg_of(buf, "unmap:-!"),
        Some(Color::Red),
        "unobservable is red"
    );
    assert_eq!(
        fg_of(buf, "flush:T!"),
        Some(Color::Yellow),
        "degraded is yellow"
    );
    assert_eq!(fg_of(buf, "drops 12"), Some(Color::Red));
    insta::assert_snapshot!(t.backend());
}

#[test]
fn probes_view_shows_anomalies_in_red_only_when_there_are_some() {
    let mut frame = fixtures::degraded();
    let mut app = app_with(frame.clone(), &[]);
    app.update(Action::Show(View::Probes));
    let s = text(draw(&app, 80, 24).backend().buffer());
    assert!(!s.contains("anomalies"), "{s}");
    frame.total.anomalies.insert("episode_left_open".into(), 3);
    let mut app = app_with(frame, &[]);
    app.update(Action::Show(View::Probes));
    let t = draw(&app, 80, 24);
    let s = text(t.backend().buffer());
    assert!(
        s.contains("kernel-side anomalies: episode_left_open 3 (-v logs them)"),
        "{s}"
    );
    assert_eq!(
        fg_of(t.backend().buffer(), "kernel-side anomalies"),
        Some(Color::Red)
    );
}

#[test]
fn degraded_probes_view_gives_the_reasons_and_the_cost() {
    let mut app = app_with(fixtures::degraded(), &[]);
    app.update(Action::Show(View::Probes));
    let t = draw(&app, 80, 24);
    let s = text(t.backend().buffer());
    assert!(s.contains("! batched_unmaps: not observable"), "{s}");
    assert!(s.contains("drops: ring buffer 12"), "{s}");
    assert!(s.contains("tlb_flush"), "{s}");
    assert!(s.contains("225"), "9 ms over 40k runs = 225 ns/run:\n{s}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn probes_view_shows_the_stale_tlb_window_where_it_is_measured() {
    let mut app = populated_app();
    app.update(Action::Show(View::Probes));
    let s = text(draw(&app, 100, 30).backend().buffer());
    // Bucket 13 holds windows below 2^13 ns.
    assert!(s.contains("unmap→flush p50 8.2µs"), "{s}");
    assert!(s.contains("written before flush 0"), "{s}");
    assert!(s.contains("folios: counted one by one"), "{s}");
    let mut app = app_with(fixtures::degraded(), &[]);
    app.update(Action::Show(View::Probes));
    let s = text(draw(&app, 100, 30).backend().buffer());
    assert!(s.contains("stale-TLB window: not measured"), "{s}");
}

#[test]
fn help() {
    let mut app = populated_app();
    app.update(Action::ToggleHelp);
    let t = draw(&app, 80, 24);
    let s = text(t.backend().buffer());
    for (key, what) in super::view::help::KEYS {
        assert!(s.contains(key), "{key} missing:\n{s}");
        assert!(
            s.contains(&what[..20.min(what.len())]),
            "{what} missing:\n{s}"
        );
    }
    insta::assert_snapshot!(t.backend());
}

#[test]
fn narrow_terminal() {
    let app = populated_app();
    let t = draw(&app, 60, 20);
    let s = text(t.backend().buffer());
    assert!(s.contains("fl/folio 0.941 now, 0.941 total"), "{s}");
    assert!(s.contains("10.2k folios/s  9.62k fl/s"), "{s}");
    assert!(s.contains("60x20 < 80x24: compact"), "{s}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn contexts_view_has_a_total_row() {
    let mut app = populated_app();
    app.update(Action::Show(View::Contexts));
    let t = draw(&app, 100, 24);
    let s = text(t.backend().buffer());
    assert!(s.contains("pageouts"), "wide enough for more columns:\n{s}");
    let all = s
        .lines()
        .find(|l| l.trim_start().starts_with("all"))
        .expect("all row");
    assert!(all.contains("0.941"), "{all}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn reclaimers_view_sorted_and_filtered() {
    let mut app = populated_app();
    app.update(Action::Show(View::Reclaimers));
    app.sort = SortKey::Ratio;
    app.filter = Filter {
        cgroup: None,
        pid: Some(87),
    };
    let t = draw(&app, 80, 24);
    let s = text(t.backend().buffer());
    assert!(s.contains("fl/folio▼"), "{s}");
    assert!(s.contains("kswapd0"), "{s}");
    assert!(!s.contains("postgres"), "filtered out:\n{s}");
    assert!(s.contains("filter pid 87: 1 of 4 shown"), "{s}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn status_line_shows_where_the_export_went() {
    let mut app = populated_app();
    app.exported(Ok(std::path::Path::new("/root/reclaim-trace-top-1.json")));
    let s = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        s.lines()
            .last()
            .is_some_and(|l| l.contains("summary JSON written to /root/reclaim-trace-top-1.json")),
        "{s}"
    );
}

#[test]
fn paused_and_reset_are_visible() {
    let mut app = populated_app();
    app.update(Action::TogglePause);
    let mut f = fixtures::empty();
    f.elapsed_s = 125.0;
    app.after_reset(f);
    let s = text(draw(&app, 80, 24).backend().buffer());
    assert!(s.contains(" PAUSED "), "{s}");
    assert!(s.contains("00:02:05 (window 00:00:01)"), "{s}");
    assert!(s.contains("reset: counting from 00:02:05"), "{s}");
}

#[test]
fn no_size_panics_in_any_view() {
    let frames = [
        fixtures::empty(),
        fixtures::populated(),
        fixtures::degraded(),
    ];
    for frame in frames {
        let mut app = app_with(frame, &[Some(1.0), None, Some(0.5)]);
        for view in View::ALL {
            app.update(Action::Show(view));
            for help in [false, true] {
                app.help = help;
                for w in (0..=130).step_by(7) {
                    for h in (0..=45).step_by(3) {
                        draw(&app, w, h);
                    }
                }
            }
        }
    }
}
