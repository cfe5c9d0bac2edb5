//! The README's troubleshooting table: each message it lists is one a test makes the tool
//! print. The table is read from README.md, so a row added without a test fails here.

mod common;

use std::{fs, path::Path, process::Command};

use common::*;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");

/// The messages of the table (first column, without the backquotes and `...`).
fn table_messages() -> Vec<String> {
    let readme = fs::read_to_string(README).unwrap();
    let table = readme
        .split("## Troubleshooting")
        .nth(1)
        .expect("README has a Troubleshooting section");
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1))
        .map(|m| {
            // The longest literal stretch of a message abbreviated with "..."
            m.split("...")
                .map(str::trim)
                .max_by_key(|p| p.len())
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Messages that come from `cargo xtask vm` (booting guests) or from a differently built
/// binary: the xtask and build paths that print them are not run by these tests.
const NOT_PRODUCED_HERE: &[(&str, &str)] = &[
    (
        "xtask vm: cannot get the sid kernel",
        "needs the Debian mirror to fail",
    ),
    (
        "the guest did not power off within 240 s",
        "needs a guest that hangs after /init",
    ),
    (
        "the guest kernel hung before /init ran",
        "needs an emulation-level boot hang",
    ),
    (
        "this binary was built without its eBPF programs",
        "needs an AYA_BUILD_SKIP=1 build",
    ),
];

#[test]
fn every_troubleshooting_message_is_checked_by_a_test() {
    let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut sources = String::new();
    // Snapshot files hold output the unit tests rendered.
    for dir in ["src/export/snapshots", "src/tui/snapshots"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for e in fs::read_dir(dir).unwrap().flatten() {
            sources.push_str(&fs::read_to_string(e.path()).unwrap());
        }
    }
    for e in fs::read_dir(&tests_dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "rs") {
            sources.push_str(&fs::read_to_string(e.path()).unwrap());
        }
    }
    let mut missing = Vec::new();
    for m in table_messages() {
        if let Some((_, why)) = NOT_PRODUCED_HERE.iter().find(|(n, _)| m.starts_with(n)) {
            eprintln!("NOT CHECKED: `{m}`: {why}");
            continue;
        }
        // A test asserts on a distinctive part of it (the table may abbreviate with N, M).
        let probe = m
            .split(['N', 'M'])
            .next()
            .unwrap()
            .trim()
            .trim_end_matches(':');
        if !sources.contains(probe) {
            missing.push(m);
        }
    }
    assert!(missing.is_empty(), "no test produces: {missing:?}");
}

#[test]
#[ignore = "needs root and the live kernel: `cargo xtask test` runs it"]
fn tracefs_unavailable_is_named_in_the_one_line_error() {
    let Some(_lock) = live() else { return };
    // A private mount namespace without tracefs, and no CAP_SYS_ADMIN to mount it.
    let script = format!(
        "umount -l /sys/kernel/tracing; umount -l /sys/kernel/debug 2>/dev/null; \
         exec setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin {BIN} summary --duration 1s"
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(
        e.contains("tracefs is not mounted and mounting it at"),
        "{e}"
    );
    assert!(e.contains("no reclaim-pass signal can be attached"), "{e}");
    assert_eq!(traces().programs, 0);
}
