//! Running without root: the shipped systemd unit's capabilities are exactly enough for
//! `serve`, and each one taken away is named in the error.

mod common;

use std::{fs, process::Command, thread, time::Duration};

use common::{
    serve::{Serve, get},
    *,
};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/reclaim-trace.service");

/// The unit's `AmbientCapabilities`, as setpriv spells them (`bpf`, `perfmon`, ...).
fn unit_capabilities() -> Vec<String> {
    let unit = fs::read_to_string(UNIT).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities in the unit");
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

/// `setpriv` as nobody holding exactly `caps` (inheritable, ambient and bounding set).
fn as_nobody(caps: &[String]) -> Vec<String> {
    let set: String = caps.iter().map(|c| format!(",+{c}")).collect();
    vec![
        "setpriv".into(),
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        format!("--inh-caps=-all{set}"),
        format!("--ambient-caps=-all{set}"),
        format!("--bounding-set=-all{set}"),
    ]
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert_ne!(
            std::env::var("RECLAIM_TRACE_LIVE").as_deref(),
            Ok("require"),
            "systemd-analyze is missing (package systemd)"
        );
        skipped("systemd-analyze is not installed");
        return;
    }
    // Verified as installed, with ExecStart pointing at this build.
    let unit = fs::read_to_string(UNIT)
        .unwrap()
        .replace("/usr/local/bin/reclaim-trace", BIN);
    let dir = tmp("unit");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reclaim-trace.service");
    fs::write(&path, unit).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success() && out.trim().is_empty(), "{out}");
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn serve_as_nobody_with_the_units_capabilities_counts_reclaim() {
    let Some(_lock) = live() else { return };
    let before = traces();
    let caps = unit_capabilities();
    let wrapper = as_nobody(&caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let (mut serve, addr) = Serve::start_under(&wrapper, &["--interval", "1s"]);
    let status = |pid: i32| fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let st = status(serve.pid());
    assert!(st.contains("Uid:\t65534"), "not running as nobody:\n{st}");
    // The workload needs root: run it beside the unprivileged tracer.
    let o = Command::new(BIN)
        .args(["workload", "--kind", "anon", "--zram", "--duration", "4s"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    thread::sleep(Duration::from_secs(2));
    let (_, metrics) = get(addr, "/metrics", None);
    let reclaimed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("reclaim_trace_folios_reclaimed_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    eprintln!("as nobody with {caps:?}: {reclaimed} folios reclaimed");
    assert!(reclaimed > 10_000.0, "{metrics}");
    let s = serve.stop();
    assert!(s.success(), "serve exit {s}");
    assert_eq!(traces(), before, "left behind");
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn each_capability_taken_away_is_named() {
    let Some(_lock) = live() else { return };
    let caps = unit_capabilities();
    // CAP_SYSLOG only matters where kernel.kptr_restrict is 1.
    for (drop, named) in [
        ("bpf", "CAP_BPF"),
        ("perfmon", "CAP_PERFMON"),
        ("dac_read_search", "CAP_DAC_READ_SEARCH"),
    ] {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != drop).cloned().collect();
        let wrapper = as_nobody(&fewer);
        let o = Command::new(&wrapper[0])
            .args(&wrapper[1..])
            .arg(BIN)
            .args(["summary", "--duration", "1s"])
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "without {drop}: {e}");
        assert!(
            e.contains(named),
            "without {drop} the error does not name {named}: {e}"
        );
        assert_eq!(e.lines().count(), 1, "one line: {e}");
        if drop == "dac_read_search" {
            assert!(
                e.contains("cannot read /sys/kernel/tracing/events (permission denied)"),
                "{e}"
            );
        }
    }
}
