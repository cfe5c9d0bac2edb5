//! The `--fail-if` rule parser (`FailIf::from_str`) and the evaluation of a parsed rule by
//! `compare` against two real summaries (from `reclaim-trace/tests/fixtures/`).
//!
//! Inputs are mostly strings around the grammar `METRIC>RATIO` / `METRIC<RATIO`: metric paths
//! (the headline metrics, nested and array paths, paths to strings or objects, empty, dotted
//! junk, unicode), operators (`<`, `>`, doubled, `>=`, `=`, none, `≥`), numbers (NaN, inf,
//! huge, tiny, negative, hex, underscores, Arabic digits, empty) and whitespace, with extra
//! characters inserted; the rest are raw bytes read as UTF-8 (lossily).
//!
//! Checked besides "no panic, bounded allocation": an accepted rule has a trimmed, non-empty
//! metric and a finite ratio >= 0, and its `Display` parses back to the same rule.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::{arbitrary::Unstructured, fuzz_target};
use reclaim_trace::export::{
    compare::{self, FailIf, HEADLINE},
    record::RecordLine,
    summary::Summary,
};
use reclaim_trace_fuzz::{Bounded, Budget, bounded, chance, int, pick, rest};

#[global_allocator]
static ALLOC: Bounded = Bounded;

/// `compare` turns both summaries into JSON values (a few hundred KiB); the rule and its
/// messages are a few times its length.
const BUDGET: Budget = Budget {
    base: 4 << 20,
    per_byte: 64,
};

/// The last line (the whole run) of each fixture recording: A = anon, B = file.
fn sides() -> &'static (Summary, Summary) {
    static SIDES: OnceLock<(Summary, Summary)> = OnceLock::new();
    SIDES.get_or_init(|| {
        let last = |text: &str| {
            let mut l: RecordLine = serde_json::from_str(text.lines().last().unwrap()).unwrap();
            l.summary.upgrade();
            l.summary
        };
        (
            last(include_str!(
                "../../reclaim-trace/tests/fixtures/anon-6.18.jsonl"
            )),
            last(include_str!(
                "../../reclaim-trace/tests/fixtures/file-6.18.jsonl"
            )),
        )
    })
}

const OTHER_METRICS: &[&str] = &[
    "by_context.memcg.ipis",
    "by_context.kswapd.flushes_per_reclaimed_folio",
    "by_cgroup.0.folios_reclaimed",
    "by_cgroup.99.passes",
    "remote_shootdowns_by_cpu.1",
    "remote_shootdowns_by_cpu.01",
    "remote_shootdowns_by_cpu.-1",
    "remote_shootdowns_by_cpu.18446744073709551616",
    "pass_duration_us.histogram.0.le",
    "kernel.release",
    "kernel",
    "totals",
    "tracer.cpu_s",
    "ipis_per_reclaimed_folio",
    "unflushed_window_ns.p50",
    "",
    ".",
    "..",
    "totals.",
    ".totals.passes",
    "totals..passes",
    "~0~1",
    "a/b",
    "totals/passes",
    "flüshes_per_reclaimed_folio",
    "\u{202e}totals.passes",
    "\0",
];

const OPS: &[&str] = &[
    ">", ">", ">", "<", "<", "<", ">=", "<=", "=>", "=", "==", "", "<>", "><", ">>", "<<", "≥",
    "＞",
];

const NUMBERS: &[&str] = &[
    "1.5",
    "1",
    "0",
    "0.0",
    "-0",
    "-0.0",
    "-1",
    "-1.5",
    "NaN",
    "nan",
    "-NaN",
    "inf",
    "-inf",
    "+inf",
    "infinity",
    "Infinity",
    "1e308",
    "1.7976931348623157e308",
    "1e309",
    "-1e309",
    "1e-400",
    "5e-324",
    "2.2250738585072014e-308",
    "0x10",
    "1_000",
    "+2",
    ".5",
    "5.",
    "1e",
    "1.5.5",
    "١",
    "١.٥",
    "1,5",
    "",
    " ",
    "e5",
    "18446744073709551616",
];

const SPACE: &[&str] = &[
    "", "", "", " ", "\t", "  ", "\u{a0}", "\u{3000}", "\n", "\u{200b}",
];

fn number(u: &mut Unstructured) -> String {
    match int(u, 0, 9) {
        0 => {
            let f: f64 = u.arbitrary().unwrap_or(0.0);
            f.to_string()
        }
        1 => {
            let f: f64 = u.arbitrary().unwrap_or(0.0);
            format!("{f:e}")
        }
        2 => {
            let n: u64 = u.arbitrary().unwrap_or(0);
            n.to_string()
        }
        3 => "9".repeat(int(u, 1, 5000)),
        4 => format!("0.{}1", "0".repeat(int(u, 1, 5000))),
        _ => pick(u, NUMBERS).to_string(),
    }
}

fn metric(u: &mut Unstructured) -> String {
    match int(u, 0, 9) {
        0..=4 => pick(u, HEADLINE).to_string(),
        5 | 6 => pick(u, OTHER_METRICS).to_string(),
        7 => {
            // A long dotted path.
            let parts: Vec<&str> = (0..int(u, 1, 300))
                .map(|_| pick(u, &["totals", "passes", "0", "a", ""]))
                .collect();
            parts.join(".")
        }
        8 => {
            let n = int(u, 0, 32).min(u.len());
            String::from_utf8_lossy(u.bytes(n).unwrap_or(&[])).into()
        }
        _ => format!("{}.{}", pick(u, HEADLINE), pick(u, HEADLINE)),
    }
}

/// Characters inserted here and there.
const JUNK: &[char] = &[
    '<',
    '>',
    '.',
    ' ',
    '=',
    '-',
    'é',
    '\u{0}',
    '\u{feff}',
    '🦀',
    '\u{10ffff}',
];

fn generate(u: &mut Unstructured) -> String {
    if chance(u, 1, 8) {
        return String::from_utf8_lossy(rest(u)).into_owned();
    }
    let mut s = String::new();
    for part in [
        pick(u, SPACE).to_string(),
        metric(u),
        pick(u, SPACE).to_string(),
        pick(u, OPS).to_string(),
        pick(u, SPACE).to_string(),
        number(u),
        pick(u, SPACE).to_string(),
    ] {
        s.push_str(&part);
    }
    // Some rules repeated (`--fail-if a>1,b<2` is not a thing, but people try).
    if chance(u, 1, 16) {
        s = [s.as_str(), ",", s.as_str()].concat();
    }
    for _ in 0..int(u, 0, 3) {
        if chance(u, 1, 3) {
            let at = (0..=s.len())
                .filter(|&i| s.is_char_boundary(i))
                .nth(int(u, 0, s.len()))
                .unwrap_or(s.len());
            s.insert(at, JUNK[int(u, 0, JUNK.len() - 1)]);
        }
    }
    s
}

fn check(s: &str) {
    let rule = match s.parse::<FailIf>() {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    assert!(
        !rule.metric.is_empty() && rule.metric.trim() == rule.metric,
        "{rule:?}"
    );
    assert!(rule.ratio.is_finite() && rule.ratio >= 0.0, "{rule:?}");
    let shown = rule.to_string();
    assert_eq!(shown.parse::<FailIf>().as_ref(), Ok(&rule), "{shown}");
    let (a, b) = sides();
    match compare::compare(("a", a), ("b", b), std::slice::from_ref(&rule)) {
        Ok(c) => {
            assert!(c.failed.len() <= 1);
            let _ = compare::render(&c);
        }
        Err(e) => assert!(e.to_string().contains("no numeric metric"), "{e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    sides();
    let s = generate(&mut Unstructured::new(data));
    bounded("fail_if", s.len(), BUDGET, || check(&s));
});
