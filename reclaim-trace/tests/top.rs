//! `reclaim-trace top` in a real terminal: tmux runs the real binary with the built-in anon
//! workload; the screen is read with `capture-pane`. Checks the figures on screen, the `e`
//! export, the keys, and that every way out (q, Ctrl-C, SIGTERM, SIGINT, a panic) leaves the
//! terminal usable and removes the cgroup, the zram swap and the BPF programs.
//! Run as root by `cargo xtask test` (tmux is installed by `cargo xtask setup`).

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use common::*;

/// A private tmux server with one 100x30 pane; killed on drop (SIGHUP to what still runs).
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Start `top ARGS` in a pane; after it exits the pane prints its exit status and the
    /// terminal settings (`stty -a`) and stays open.
    fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Tmux {
        let t = Tmux {
            socket: format!("rt-{name}-{}", std::process::id()),
        };
        let mut cmd = String::new();
        for (k, v) in env {
            cmd.push_str(&format!("{k}={v} "));
        }
        cmd.push_str(BIN);
        cmd.push_str(" top");
        for a in args {
            cmd.push_str(&format!(" '{a}'"));
        }
        let script = format!("{cmd}; echo TOP-EXIT=$?; stty -a; sleep 600");
        t.tmux(&[
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            "sh",
            "-c",
            &script,
        ]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux (cargo xtask setup installs it)");
        assert!(
            o.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J"])
    }

    fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", keys]);
    }

    fn format(&self, f: &str) -> String {
        self.tmux(&["display-message", "-p", f]).trim().to_string()
    }

    /// Poll the screen until `ok` holds; fail with the last screen after `secs`.
    fn wait_for(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; screen:\n{s}"
            );
            thread::sleep(Duration::from_millis(300));
        }
    }

    /// The reclaim-trace process in the pane (a child of the pane's shell).
    fn top_pid(&self) -> i32 {
        self.find_top_pid()
            .expect("reclaim-trace running in the pane")
    }

    /// As `top_pid`, without failing (also called from `drop`, maybe while unwinding).
    fn find_top_pid(&self) -> Option<i32> {
        let o = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(["display-message", "-p", "#{pane_pid}"])
            .output()
            .ok()?;
        let shell: i32 = String::from_utf8_lossy(&o.stdout).trim().parse().ok()?;
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .find(|pid| {
                fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                    let after = st.rsplit_once(") ").map_or("", |x| x.1);
                    st.contains("(reclaim-trace)")
                        && after.split_whitespace().nth(1) == Some(&shell.to_string())
                })
            })
    }
}

/// Kill the tmux server, and wait (bounded) for a reclaim-trace still running in the pane to
/// finish its cleanup (SIGHUP): a test that failed mid-run must not leave its workload cgroup
/// and zram device to the next test's "nothing left behind" check.
impl Drop for Tmux {
    fn drop(&mut self) {
        let top = self.find_top_pid();
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
        if let Some(pid) = top {
            let start = Instant::now();
            while Path::new(&format!("/proc/{pid}")).exists()
                && start.elapsed() < Duration::from_secs(20)
            {
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn tmux_available() -> bool {
    let ok = Command::new("tmux").arg("-V").output().is_ok();
    if !ok {
        assert!(
            std::env::var("RECLAIM_TRACE_LIVE").as_deref() != Ok("require"),
            "tmux is missing: run `cargo xtask setup`"
        );
        skipped("tmux is not installed (cargo xtask setup installs it)");
    }
    ok
}

/// `29.5k` → 29500.
fn parse_si(s: &str) -> Option<f64> {
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        'G' => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

/// The token after `prefix` on the screen.
fn after<'a>(screen: &'a str, prefix: &str) -> Option<&'a str> {
    screen
        .lines()
        .find_map(|l| l.split_once(prefix))
        .and_then(|(_, rest)| rest.split_whitespace().next())
}

/// The ratio now and the reclaimed folios/s of the headline.
fn headline(screen: &str) -> (Option<f64>, Option<f64>) {
    let ratio = after(screen, "flushes per reclaimed folio ").and_then(|t| t.parse().ok());
    let rate = screen
        .lines()
        .find_map(|l| l.split_once(" folios/s").map(|x| x.0))
        .and_then(|l| l.split_whitespace().last())
        .and_then(parse_si);
    (ratio, rate)
}

fn under_load(screen: &str) -> bool {
    matches!(headline(screen), (Some(r), Some(f)) if r > 0.0 && f > 0.0)
}

/// After top ended: the normal screen is back, the cursor shows, the tty is cooked again.
fn assert_terminal_restored(t: &Tmux, how: &str) -> String {
    let s = t.wait_for(&format!("top to exit after {how}"), 60, |s| {
        s.contains("TOP-EXIT=") && s.contains("icanon")
    });
    assert_eq!(
        t.format("#{alternate_on}"),
        "0",
        "{how}: still on the alternate screen"
    );
    assert_eq!(t.format("#{cursor_flag}"), "1", "{how}: cursor hidden");
    let stty: Vec<&str> = s.split_whitespace().collect();
    for flag in ["icanon", "echo", "isig", "opost"] {
        assert!(
            stty.contains(&flag) && !stty.contains(&format!("-{flag}").as_str()),
            "{how}: tty not restored ({flag}):\n{s}"
        );
    }
    assert!(
        !s.contains("flushes per reclaimed folio"),
        "{how}: the dashboard is still on screen:\n{s}"
    );
    s
}

fn exit_status(screen: &str) -> Option<i32> {
    after(screen, "TOP-EXIT=").and_then(|v| v.parse().ok())
}

fn export_dir() -> PathBuf {
    let d = tmp("top-exports");
    fs::create_dir_all(&d).unwrap();
    d
}

fn check_export(path: &Path) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let s: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(s["schema"], "reclaim-trace/summary/v2");
    assert_eq!(s["workload"]["kind"], "anon");
    assert!(u(&s, "/totals/folios_reclaimed") > 1000, "{}", s["totals"]);
    assert!(
        u(&s, "/by_context/memcg/passes") > 10,
        "{}",
        s["by_context"]
    );
    let r = f(&s, "/flushes_per_reclaimed_folio");
    assert!(r > 0.3 && r < 1.5, "flushes per reclaimed folio {r}");
    assert!(f(&s, "/duration_s") > 1.0);
    if s["kernel"]["probe_mode"] == "tracepoint" {
        assert_eq!(
            s["batch_fill"]["exact"], false,
            "estimated in the tracepoint tier"
        );
    }
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn dashboard_under_load_in_a_real_terminal() {
    let Some(_lock) = live() else { return };
    if !tmux_available() {
        return;
    }
    let before = traces();
    let dir = export_dir();
    let t = Tmux::start(
        "top",
        &[
            "--workload",
            "anon",
            "--zram",
            "--export-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    let s = t.wait_for("a non-zero reclaim rate and ratio", 45, under_load);
    let (ratio, rate) = headline(&s);
    eprintln!("on screen: {ratio:?} flushes per reclaimed folio, {rate:?} folios/s\n{s}");
    assert!(s.contains("memcg"), "{s}");
    assert!(s.contains("probes pass:"), "{s}");

    t.keys("e");
    let s = t.wait_for("the export path", 10, |s| {
        s.contains("summary JSON written to ")
    });
    let shown = after(&s, "summary JSON written to ").expect("path on screen");
    let files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        Path::new(shown),
        files[0],
        "the path on screen is the file written"
    );
    check_export(&files[0]);
    let _ = fs::remove_dir_all(&dir);

    t.keys("p");
    t.wait_for("PAUSED", 5, |s| s.contains("PAUSED"));
    t.keys("p");
    t.keys("3");
    t.wait_for("the reclaimers view", 5, |s| {
        s.contains("/reclaim-trace-") && s.contains("sorted by reclaimed")
    });
    t.keys("s");
    t.wait_for("the next sort order", 5, |s| {
        s.contains("sorted by folios/s")
    });
    t.keys("?");
    t.wait_for("help", 5, |s| s.contains("reclaim-trace top: keys"));
    t.keys("Escape");
    // Wait for the help to close before the next key: an Escape and a "4" that reach the
    // terminal in one read are one key, Alt-4 (crossterm), which only closes the help. A
    // person does not type that fast; a test on a loaded 2-CPU machine does.
    t.wait_for("the help to close", 5, |s| {
        !s.contains("reclaim-trace top: keys")
    });
    t.keys("4");
    t.wait_for("the probes view", 5, |s| s.contains("BPF total:"));

    t.keys("q");
    let s = assert_terminal_restored(&t, "q");
    assert_eq!(exit_status(&s), Some(0), "{s}");
    assert!(s.contains("reclaim-trace top: quit after"), "{s}");
    assert_eq!(traces(), before, "left behind after q");
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn every_way_out_restores_the_terminal_and_removes_the_workload() {
    let Some(_lock) = live() else { return };
    if !tmux_available() {
        return;
    }
    let before = traces();
    for how in ["Ctrl-C", "SIGTERM", "SIGINT", "panic"] {
        let env: &[(&str, &str)] = if how == "panic" {
            &[("RECLAIM_TRACE_TEST_PANIC_AFTER", "6")]
        } else {
            &[]
        };
        // A server per run: reusing a socket name races with the previous server's exit.
        let t = Tmux::start(
            &format!("exit-{}", how.to_lowercase()),
            &["--workload", "anon", "--zram"],
            env,
        );
        t.wait_for("the workload under way", 45, under_load);
        match how {
            "Ctrl-C" => t.keys("C-c"),
            "SIGTERM" | "SIGINT" => {
                let sig = if how == "SIGTERM" {
                    libc::SIGTERM
                } else {
                    libc::SIGINT
                };
                // SAFETY: kill(2) on a pid we just looked up; no memory is involved.
                assert_eq!(unsafe { libc::kill(t.top_pid(), sig) }, 0);
            }
            _ => {} // the injected panic fires by itself
        }
        let s = assert_terminal_restored(&t, how);
        match how {
            "panic" => {
                assert_eq!(exit_status(&s), Some(101), "{s}");
                assert!(
                    s.contains("injected by RECLAIM_TRACE_TEST_PANIC_AFTER"),
                    "{s}"
                );
            }
            "SIGTERM" | "SIGINT" => {
                assert_eq!(exit_status(&s), Some(0), "{s}");
                assert!(s.contains(&format!("stopped by {how}")), "{s}");
            }
            _ => assert_eq!(exit_status(&s), Some(0), "{s}"),
        }
        assert_eq!(traces(), before, "left behind after {how}");
    }
}

#[test]
fn top_without_a_terminal_points_to_summary() {
    // No root needed: it refuses before touching the kernel.
    let o = run(&["top"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("needs a terminal, but stdout is not one")
            && e.contains("reclaim-trace summary"),
        "{e}"
    );
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn no_color_draws_the_dashboard_without_colours() {
    let Some(_lock) = live() else { return };
    if !tmux_available() {
        return;
    }
    // Whether a captured screen (`capture-pane -e`: with its escape sequences) sets a
    // foreground or background colour: SGR 30-38, 40-48, 90-97, 100-107 (39 and 49 restore
    // the terminal's default colours).
    fn coloured(t: &Tmux) -> bool {
        let raw = t.tmux(&["capture-pane", "-p", "-e"]);
        raw.split("\x1b[").skip(1).any(|seq| {
            let params = seq.split('m').next().unwrap_or("");
            params.split(';').any(|p| {
                p.parse::<u32>()
                    .is_ok_and(|n| matches!(n, 30..=38 | 40..=48 | 90..=97 | 100..=107))
            })
        })
    }
    for (env, want_colour) in [(&[][..], true), (&[("NO_COLOR", "1")][..], false)] {
        let t = Tmux::start("colour", &[], env);
        t.wait_for("the dashboard", 30, |s| {
            s.contains("flushes per reclaimed folio")
        });
        thread::sleep(Duration::from_millis(1500));
        assert_eq!(coloured(&t), want_colour, "NO_COLOR set: {}", !want_colour);
        t.keys("q");
        assert_terminal_restored(&t, "q");
    }
}

/// `GET /snapshot.json` from a `serve` on `port`, once it answers.
fn serve_snapshot(port: u16) -> Option<serde_json::Value> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /snapshot.json HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    serde_json::from_str(resp.split_once("\r\n\r\n")?.1).ok()
}

/// Three tracers of the whole machine at once: `serve` and `top` without a workload, and a
/// `summary --workload anon` that runs while both trace. Each counts the same reclaim on its
/// own programs and maps: summary its window, serve everything since it started, top shows
/// it; each equals the kernel's own count; quitting each leaves nothing behind.
#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn top_serve_and_summary_at_once_each_count_the_same_reclaim() {
    let Some(_lock) = live() else { return };
    if !tmux_available() {
        return;
    }
    let before = traces();
    let port = 9483;
    let v0 = vmstat();
    let mut serve = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while serve_snapshot(port).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve never answered"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let t = Tmux::start("three", &[], &[]);
    t.wait_for("top's dashboard", 20, |s| {
        s.contains("flushes per reclaimed folio")
    });
    let summary = thread::spawn(|| {
        measure(
            "three-at-once.json",
            &["--workload", "anon", "--zram", "--duration", "6s"],
        )
    });
    let s = t.wait_for("top to see the reclaim", 30, under_load);
    eprintln!("top: {:?}", headline(&s));
    let m = summary.join().unwrap();
    within(
        "summary: pages reclaimed vs Δpgsteal",
        lru_pages_reclaimed(&m.s),
        delta(&m.v0, &m.v1, "pgsteal_anon") + delta(&m.v0, &m.v1, "pgsteal_file"),
        0.01,
    );
    // serve refreshes its figures every second; nothing reclaims after the summary.
    thread::sleep(Duration::from_millis(2500));
    let snap = serve_snapshot(port).expect("serve answers");
    let v1 = vmstat();
    within(
        "serve: pages reclaimed since it started vs Δpgsteal",
        lru_pages_reclaimed(&snap),
        delta(&v0, &v1, "pgsteal_anon") + delta(&v0, &v1, "pgsteal_file"),
        0.01,
    );
    t.keys("q");
    let s = assert_terminal_restored(&t, "q with serve and summary beside it");
    assert_eq!(exit_status(&s), Some(0), "{s}");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    assert!(serve.wait().unwrap().success());
    assert_eq!(traces(), before, "left behind");
}
