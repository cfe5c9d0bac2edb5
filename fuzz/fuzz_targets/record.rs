//! The recording reader (`reclaim_trace::export::record`): `parse` (what `read` does with an
//! open file, and `reclaim-trace report`) and `parse_summary` (what `load_summary` does with a
//! file's text, and `reclaim-trace compare`), then what those commands do with the result: sum
//! the intervals, render the text summary, compare.
//!
//! Inputs are mostly JSON lines made from the real recordings in
//! `reclaim-trace/tests/fixtures/` (schema v1 as written, and the same lines as v2 summaries
//! and as standalone summary files, compact or pretty), mutated as values (huge, negative and
//! fractional numbers, wrong types, deep nesting, long strings, keys dropped or added, arrays
//! grown, schema names changed) and as text (truncated, bytes flipped or inserted, numbers out
//! of range, lines split or repeated, very long lines); the rest are raw bytes.

#![no_main]

use std::{path::Path, sync::OnceLock};

use libfuzzer_sys::{arbitrary::Unstructured, fuzz_target};
use reclaim_trace::export::{
    compare,
    merge::merge_all,
    record::{self, RECORD_SCHEMA, RecordLine},
    text,
};
use reclaim_trace_fuzz::{Bounded, Budget, bounded, chance, edge_u64, int, pick, rest};
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: Bounded = Bounded;

/// A JSON value costs up to a few hundred bytes per byte of text (a B-tree node per nesting
/// level), and a recording keeps every line it read.
const BUDGET: Budget = Budget {
    base: 4 << 20,
    per_byte: 512,
};

const FIXTURES: &[&str] = &[
    include_str!("../../reclaim-trace/tests/fixtures/anon-6.18.jsonl"),
    include_str!("../../reclaim-trace/tests/fixtures/file-6.18.jsonl"),
];

/// The lines the generator starts from: each fixture line as written (v1), as v2, and its
/// summary alone (a `summary --json` file).
fn bases() -> &'static [Value] {
    static BASES: OnceLock<Vec<Value>> = OnceLock::new();
    BASES.get_or_init(|| {
        let mut out = Vec::new();
        for line in FIXTURES.iter().flat_map(|f| f.lines()) {
            let v1: Value = serde_json::from_str(line).expect("fixture line is JSON");
            let mut l: RecordLine = serde_json::from_value(v1.clone()).expect("a record line");
            l.summary.upgrade();
            l.record.schema = RECORD_SCHEMA.into();
            let v2 = serde_json::to_value(&l).unwrap();
            out.push(serde_json::to_value(&l.summary).unwrap());
            let mut v1_summary = v1.clone();
            v1_summary.as_object_mut().unwrap().remove("record");
            out.extend([v1, v2, v1_summary]);
        }
        out
    })
}

const STRINGS: &[&str] = &[
    "reclaim-trace/summary/v1",
    "reclaim-trace/summary/v2",
    "reclaim-trace/summary/v3",
    "reclaim-trace/summary/v18446744073709551616",
    "reclaim-trace/summary/v",
    "reclaim-trace/record/v1",
    "reclaim-trace/record/v2",
    "reclaim-trace/record/v3",
    "reclaim-trace/record/v-1",
    "other/v1",
    "/v",
    "interval",
    "summary",
    "+Inf",
    "-Inf",
    "none",
    "csd_queue_cpu",
    "batch_cpumask",
    "memcg",
    "",
    "\0",
    "é",
    "🦀\u{202e}",
];

const KEYS: &[&str] = &[
    "schema",
    "record",
    "type",
    "seq",
    "totals",
    "le",
    "count",
    "histogram",
    "by_context",
    "by_cgroup",
    "flushes",
    "passes",
    "duration_s",
    "source",
    "zzz",
];

/// A node of `v`: the root, or somewhere below it.
fn node<'a>(u: &mut Unstructured, v: &'a mut Value) -> &'a mut Value {
    let len = match &*v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if len == 0 || chance(u, 1, 6) {
        return v;
    }
    let i = int(u, 0, len - 1);
    match v {
        Value::Object(m) => node(u, m.values_mut().nth(i).unwrap()),
        Value::Array(a) => node(u, &mut a[i]),
        _ => unreachable!(),
    }
}

fn number(u: &mut Unstructured) -> Value {
    match int(u, 0, 5) {
        0 => json!((edge_u64(u) as i64).wrapping_neg()),
        1 => json!(i64::MIN),
        2 => {
            let f = *pick(
                u,
                &[&1e308, &-1e308, &5e-324, &-0.0, &0.5, &f64::MAX, &-1.5],
            );
            json!(f)
        }
        3 => {
            let f: f64 = u.arbitrary().unwrap_or(0.0);
            // NaN and infinities serialise as null.
            json!(f)
        }
        _ => json!(edge_u64(u)),
    }
}

fn long_string(u: &mut Unstructured) -> String {
    // Very long now and then (each costs a few milliseconds).
    let n = if chance(u, 1, 32) {
        int(u, 0, 1 << 20)
    } else {
        int(u, 0, 300)
    };
    pick(u, &["x", "é", "\\", "\"", "🦀", "\n"]).repeat(n)
}

/// Wrap `inner` in `depth` arrays or objects.
fn nest(u: &mut Unstructured, inner: Value) -> Value {
    let depth = int(u, 1, 300);
    let object = chance(u, 1, 2);
    (0..depth).fold(inner, |v, _| {
        if object {
            Value::Object([("a".to_string(), v)].into_iter().collect())
        } else {
            Value::Array(vec![v])
        }
    })
}

fn mutate_value(u: &mut Unstructured, root: &mut Value) {
    // A copy of some subtree, for moves.
    let donor = if chance(u, 1, 8) {
        let mut copy = root.clone();
        Some(node(u, &mut copy).clone())
    } else {
        None
    };
    let v = node(u, root);
    match int(u, 0, 14) {
        0..=2 => *v = number(u),
        3 => *v = json!(pick(u, STRINGS)),
        4 => *v = json!(long_string(u)),
        5 => *v = json!(chance(u, 1, 2)),
        6 => *v = Value::Null,
        7 => {
            *v = if chance(u, 1, 2) {
                json!([])
            } else {
                json!({})
            }
        }
        8 => *v = nest(u, v.take()),
        9 => {
            if let Some(d) = donor {
                *v = d;
            }
        }
        10 => match v {
            Value::Object(m) if !m.is_empty() && chance(u, 1, 2) => {
                let k = m.keys().nth(int(u, 0, m.len() - 1)).unwrap().clone();
                m.remove(&k);
            }
            Value::Object(m) => {
                let k = pick(u, KEYS).to_string();
                let val = number(u);
                m.insert(k, val);
            }
            _ => *v = number(u),
        },
        11 => match v {
            // Many buckets, cgroups, CPUs... (at most 256 KiB of them as text: a few copies of
            // a large subtree, thousands of a small one).
            Value::Array(a) if !a.is_empty() => {
                let times = if chance(u, 1, 4) {
                    int(u, 0, 5000)
                } else {
                    int(u, 0, 40)
                };
                let i = int(u, 0, a.len() - 1);
                let item = a[i].clone();
                let size = serde_json::to_vec(&item).map_or(1, |t| t.len().max(1));
                a.extend(std::iter::repeat_n(item, times.min((256 << 10) / size)));
            }
            Value::Array(a) => a.push(number(u)),
            _ => *v = json!([edge_u64(u), edge_u64(u)]),
        },
        12 => {
            if let Value::Number(n) = v {
                let x = n.as_u64().unwrap_or(0);
                *v = json!(match int(u, 0, 3) {
                    0 => x.wrapping_add(1),
                    1 => x.wrapping_mul(1 << int(u, 1, 63)),
                    2 => u64::MAX - x,
                    _ => x / 2,
                });
            } else {
                *v = number(u);
            }
        }
        13 => *v = json!(long_string(u).len().to_string()),
        _ => *v = json!(edge_u64(u).to_string()),
    }
}

const NUMBERS: &[&str] = &[
    "1e999",
    "-1e999",
    "-1",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "-0",
    "1.5",
    "NaN",
    "Infinity",
    "0x1F",
    "00",
    "1e",
    "-",
    "4.9e-325",
];

fn mutate_text(u: &mut Unstructured, t: &mut Vec<u8>) {
    let at = int(u, 0, t.len());
    match int(u, 0, 8) {
        0 => t.truncate(at),
        1 => {
            if at < t.len() {
                t[at] ^= 1 << int(u, 0, 7);
            }
        }
        2 => {
            let n = int(u, 1, 16).min(u.len());
            let junk = u.bytes(n).unwrap_or(&[]).to_vec();
            t.splice(at..at, junk);
        }
        3 => {
            // The number at or after `at`, replaced.
            if let Some(start) = t[at..].iter().position(u8::is_ascii_digit).map(|p| at + p) {
                let end = t[start..]
                    .iter()
                    .position(|b| !(b.is_ascii_digit() || b"-+.eE".contains(b)))
                    .map_or(t.len(), |p| start + p);
                t.splice(start..end, pick(u, NUMBERS).bytes());
            }
        }
        4 => {
            let end = int(u, at, t.len());
            let seg = t[at..end].to_vec();
            let to = int(u, 0, t.len());
            t.splice(to..to, seg);
        }
        5 => t.insert(at, b'\n'),
        6 => {
            let depth = if chance(u, 1, 8) {
                int(u, 1, 20_000)
            } else {
                int(u, 1, 200)
            };
            let open = if chance(u, 1, 2) { b"[" } else { b"{" };
            t.splice(0..0, open.repeat(depth));
        }
        7 => {
            let n = if chance(u, 1, 32) {
                int(u, 0, 1 << 20)
            } else {
                int(u, 0, 300)
            };
            t.extend(std::iter::repeat_n(b' ', n));
        }
        _ => t.splice(at..at, b"\r\n".iter().copied()).for_each(drop),
    }
}

/// One line (or one pretty-printed summary file).
fn line(u: &mut Unstructured) -> Vec<u8> {
    let bases = bases();
    let mut v = bases[int(u, 0, bases.len() - 1)].clone();
    for _ in 0..int(u, 0, 6) {
        mutate_value(u, &mut v);
    }
    let mut t = if chance(u, 1, 8) {
        serde_json::to_vec_pretty(&v).unwrap()
    } else {
        serde_json::to_vec(&v).unwrap()
    };
    if chance(u, 1, 3) {
        for _ in 0..int(u, 1, 3) {
            mutate_text(u, &mut t);
        }
    }
    t.truncate(MAX_TEXT);
    t
}

/// Generated recordings stop growing past 2 MiB (a line is cut there): larger ones only cost
/// time, and their memory, though linear, adds up past libFuzzer's RSS limit.
const MAX_TEXT: usize = 2 << 20;

fn generate(u: &mut Unstructured) -> Vec<u8> {
    if chance(u, 1, 10) {
        return rest(u).to_vec();
    }
    let mut out = Vec::new();
    for i in 0..int(u, 1, 5) {
        if out.len() >= MAX_TEXT {
            break;
        }
        if i > 0 {
            out.extend_from_slice(pick(u, &[&b"\n"[..], b"\r\n", b"\n\n", b"\n \t\n"]));
        }
        out.extend(line(u));
    }
    if chance(u, 1, 2) {
        out.push(b'\n');
    }
    out
}

/// What `reclaim-trace report` does with a recording, and `compare` with a summary file.
fn check(input: &[u8]) {
    let path = Path::new("fuzz.jsonl");
    match record::parse(path, input) {
        Ok(rec) => {
            assert!(
                !rec.intervals.is_empty() || rec.summary.is_some(),
                "a recording without records was accepted"
            );
            assert!(rec.skipped.windows(2).all(|w| w[0].0 < w[1].0));
            let s = merge_all(rec.intervals.iter().map(|l| &l.summary))
                .or_else(|| rec.summary.as_ref().map(|l| l.summary.clone()))
                .unwrap();
            let _ = text::render(&s);
            let _ = serde_json::to_string(&s).unwrap();
        }
        Err(e) => {
            let _ = format!("{e:#}");
        }
    }
    let Ok(t) = std::str::from_utf8(input) else {
        return;
    };
    match record::parse_summary(path, t) {
        Ok((s, _skipped)) => {
            let c = compare::compare(("a", &s), ("b", &s), &[]).unwrap();
            let _ = compare::render(&c);
        }
        Err(e) => {
            let _ = format!("{e:#}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let input = generate(&mut Unstructured::new(data));
    bounded("record", input.len(), BUDGET, || check(&input));
});
