//! The ring-buffer record decoder (`reclaim_trace_common::decode`): `decode`, `decode_into`,
//! `decode_batch` and `decode_staged` on items that are mostly well-formed records and batches
//! with mutated kinds, counts, lengths and fields, and on raw bytes.
//!
//! Checked besides "no panic, bounded allocation": a well-formed item decodes to the records
//! it holds (fields read back from its bytes), anything else is an error, and an error appends
//! nothing.

#![no_main]

use std::mem::size_of;

use libfuzzer_sys::{arbitrary::Unstructured, fuzz_target};
use reclaim_trace_common::{
    FlushRecord, PASS_BATCH_HEADER, PASS_BATCH_LEN, PassBatch, PassWire, RECORD_FLUSH, RECORD_PASS,
    RECORD_PASS_BATCH,
    decode::{Record, decode, decode_batch, decode_into, decode_staged},
};
use reclaim_trace_fuzz::{Bounded, Budget, bounded, chance, int, rest};

#[global_allocator]
static ALLOC: Bounded = Bounded;

const PASS: usize = size_of::<PassWire>();
const FLUSH: usize = size_of::<FlushRecord>();
/// At most one batch of records appended, whatever the input.
const BUDGET: Budget = Budget {
    base: 64 << 10,
    per_byte: 0,
};

/// A record kind: mostly the one wanted, sometimes another known one or anything.
fn kind(u: &mut Unstructured, want: u32) -> u32 {
    match int(u, 0, 15) {
        0 => RECORD_PASS,
        1 => RECORD_FLUSH,
        2 => RECORD_PASS_BATCH,
        3 => u.arbitrary().unwrap_or(0),
        4 => 0,
        5 => u32::MAX,
        _ => want,
    }
}

/// `n` bytes from the input (zeros once it has run out).
fn bytes(u: &mut Unstructured, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    let got = u.bytes(n.min(u.len())).unwrap_or(&[]);
    v[..got.len()].copy_from_slice(got);
    v
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

/// A record's bytes with the given kind.
fn record(u: &mut Unstructured, size: usize, kind: u32) -> Vec<u8> {
    let mut b = bytes(u, size);
    b[..4].copy_from_slice(&kind.to_ne_bytes());
    b
}

/// `len` changed now and then: a byte or a record off, or any length up to twice.
fn mutate_len(u: &mut Unstructured, len: usize) -> usize {
    match int(u, 0, 9) {
        0 => len.saturating_sub(int(u, 1, 8)),
        1 => len + int(u, 1, 8),
        2 => int(u, 0, 2 * len),
        3 => len.saturating_sub(PASS),
        4 => len + PASS,
        _ => len,
    }
}

/// A pass record decoded from `wire` (its bytes) has the fields those bytes hold.
fn check_pass(r: &Record, wire: &[u8]) {
    let Record::Pass(p) = r else {
        panic!("a pass record decoded as {r:?}");
    };
    let start = u64_at(wire, 24);
    let duration = u32_at(wire, 32) as u64;
    assert_eq!(p.kind, RECORD_PASS);
    assert_eq!(p.tid, u32_at(wire, 8));
    assert_eq!(p.cgroup_id, u64_at(wire, 16));
    assert_eq!(
        (p.start_ns, p.end_ns),
        (start, start.wrapping_add(duration))
    );
    assert_eq!((p.counts.passes, p.counts.duration_ns), (1, duration));
    assert_eq!(p.comm[..], wire[PASS - 16..]);
}

/// `decode` and `decode_into` of one item: a well-formed single record or batch decodes to
/// what its bytes hold, anything else is an error that appends nothing.
fn check_item(item: &[u8]) {
    let single = decode(item);
    let kind = item
        .get(..4)
        .map(|k| u32::from_ne_bytes(k.try_into().unwrap()));
    match kind {
        Some(RECORD_PASS) if item.len() == PASS => check_pass(&single.unwrap(), item),
        Some(RECORD_FLUSH) if item.len() == FLUSH => {
            let Ok(Record::Flush(f)) = single else {
                panic!("a flush record decoded as {single:?}");
            };
            assert_eq!(
                (f.kind, f.tid, f.ts_ns),
                (RECORD_FLUSH, u32_at(item, 8), u64_at(item, 24))
            );
        }
        _ => assert!(single.is_err(), "{single:?} from {} bytes", item.len()),
    }
    if let Err(e) = single {
        let _ = e.to_string();
    }

    let sentinel = Record::Flush(FlushRecord::default());
    let mut out = vec![sentinel];
    let r = decode_into(item, &mut out);
    let well_formed_batch = kind == Some(RECORD_PASS_BATCH) && item.len() >= PASS_BATCH_HEADER && {
        let n = u32_at(item, 4) as usize;
        let body = &item[PASS_BATCH_HEADER..];
        n <= PASS_BATCH_LEN
            && body.len() == n * PASS
            && body.chunks_exact(PASS).all(|c| u32_at(c, 0) == RECORD_PASS)
    };
    match r {
        Ok(()) if kind == Some(RECORD_PASS_BATCH) => {
            assert!(well_formed_batch, "a bad batch decoded: {out:?}");
            let body = &item[PASS_BATCH_HEADER..];
            assert_eq!(out.len(), 1 + body.len() / PASS);
            for (r, wire) in out[1..].iter().zip(body.chunks_exact(PASS)) {
                check_pass(r, wire);
            }
        }
        Ok(()) => {
            assert_eq!(out.len(), 2);
            assert_eq!(Ok(out[1]), single, "decode_into and decode differ");
        }
        Err(e) => {
            assert!(!well_formed_batch, "a well-formed batch was refused: {e}");
            assert!(
                kind == Some(RECORD_PASS_BATCH) || single.is_err(),
                "decode_into refused what decode took"
            );
            assert_eq!(out, [sentinel], "an error appended records");
            let _ = e.to_string();
        }
    }
}

/// A batch as the ring buffer carries it: header, then `n` records (most of them passes).
fn batch(u: &mut Unstructured) -> Vec<u8> {
    let n: u32 = match int(u, 0, 9) {
        0 => PASS_BATCH_LEN as u32 + 1,
        1 => u.arbitrary().unwrap_or(0),
        _ => int(u, 0, PASS_BATCH_LEN) as u32,
    };
    let mut b = bytes(u, PASS_BATCH_HEADER);
    b[..4].copy_from_slice(&kind(u, RECORD_PASS_BATCH).to_ne_bytes());
    b[4..8].copy_from_slice(&n.to_ne_bytes());
    let recs = (n as usize).min(PASS_BATCH_LEN + 1);
    for _ in 0..recs {
        let k = kind(u, RECORD_PASS);
        let r = record(u, PASS, k);
        b.extend_from_slice(&r);
    }
    let len = mutate_len(u, b.len());
    b.resize(len, 0);
    b
}

/// One generated case, made before the decoder runs (so that the allocation bound counts the
/// decoder's allocations only).
enum Case {
    /// One ring-buffer item for `decode` and `decode_into`.
    Item(Vec<u8>),
    /// A count and a batch body for `decode_batch`.
    Body(u32, Vec<u8>),
    /// A CPU's staged batch and its bytes before `n` and the kinds were set.
    Staged(Box<PassBatch>, Vec<u8>),
}

fn generate(u: &mut Unstructured) -> Case {
    match int(u, 0, 9) {
        0 => Case::Item(rest(u).to_vec()),
        1 | 2 => {
            let k = kind(u, RECORD_PASS);
            let mut r = record(u, PASS, k);
            let len = mutate_len(u, PASS);
            r.resize(len, 0);
            Case::Item(r)
        }
        3 => {
            let k = kind(u, RECORD_FLUSH);
            let mut r = record(u, FLUSH, k);
            let len = mutate_len(u, FLUSH);
            r.resize(len, 0);
            Case::Item(r)
        }
        4..=6 => Case::Item(batch(u)),
        7 => {
            // A count of its own now and then, else the header's.
            let item = batch(u);
            let n = if chance(u, 1, 4) {
                u.arbitrary().unwrap_or(0)
            } else {
                item.get(4..8)
                    .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap()))
            };
            Case::Body(n, item.get(PASS_BATCH_HEADER..).unwrap_or(&[]).to_vec())
        }
        _ => staged(u),
    }
}

/// `decode_batch` of a body.
fn check_batch_body(n: u32, body: &[u8]) {
    let mut out = Vec::new();
    match decode_batch(n, body, &mut out) {
        Ok(()) => {
            assert_eq!(body.len(), n as usize * PASS);
            assert_eq!(out.len(), n as usize);
            for (r, wire) in out.iter().zip(body.chunks_exact(PASS)) {
                check_pass(r, wire);
            }
        }
        Err(e) => {
            assert!(out.is_empty());
            let _ = e.to_string();
        }
    }
}

/// A CPU's batch slot: any bytes, a count that is mostly in range, records mostly passes.
fn staged(u: &mut Unstructured) -> Case {
    let raw = bytes(u, size_of::<PassBatch>());
    let mut b = Box::new(PassBatch::default());
    // SAFETY: PassBatch is a #[repr(C)] struct of integers (every bit pattern valid), `raw` is
    // exactly its size, and the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            raw.as_ptr(),
            (&mut *b as *mut PassBatch).cast::<u8>(),
            raw.len(),
        );
    }
    let n = int(u, 0, PASS_BATCH_LEN + 1);
    b.n = if chance(u, 1, 8) { b.n } else { n as u32 };
    for r in b.recs.iter_mut().take(n) {
        if !chance(u, 1, 16) {
            r.kind = RECORD_PASS;
        }
    }
    Case::Staged(b, raw)
}

/// `decode_staged`: the first `n` records when all are passes, else an error.
fn check_staged(b: &PassBatch, raw: &[u8]) {
    let mut out = Vec::new();
    let well_formed = (b.n as usize) <= PASS_BATCH_LEN
        && b.recs[..b.n as usize].iter().all(|r| r.kind == RECORD_PASS);
    match decode_staged(b, &mut out) {
        Ok(()) => {
            assert!(well_formed);
            assert_eq!(out.len(), b.n as usize);
            for (r, w) in out.iter().zip(raw[PASS_BATCH_HEADER..].chunks_exact(PASS)) {
                let Record::Pass(p) = r else { panic!("{r:?}") };
                assert_eq!((p.tid, p.start_ns), (u32_at(w, 8), u64_at(w, 24)));
            }
        }
        Err(e) => {
            assert!(!well_formed, "a well-formed staged batch was refused: {e}");
            assert!(out.is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let case = generate(&mut Unstructured::new(data));
    bounded("decode", data.len(), BUDGET, || match &case {
        Case::Item(item) => check_item(item),
        Case::Body(n, body) => check_batch_body(*n, body),
        Case::Staged(b, raw) => check_staged(b, raw),
    });
});
