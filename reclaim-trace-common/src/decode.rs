//! Length-checked decoding of ring-buffer records (userspace only).

use core::mem::size_of;

use crate::{
    FlushRecord, PASS_BATCH_HEADER, PASS_BATCH_LEN, PassBatch, PassRecord, PassWire, RECORD_FLUSH,
    RECORD_PASS, RECORD_PASS_BATCH,
};

/// A decoded ring-buffer record (pass records widened from [`PassWire`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Pass(PassRecord),
    Flush(FlushRecord),
}

/// Why a ring-buffer item could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the 4-byte kind tag.
    Truncated { len: usize },
    /// The kind tag is not one this build knows.
    UnknownKind { kind: u32 },
    /// The kind is known but the item has the wrong size for it.
    WrongSize {
        kind: u32,
        len: usize,
        expected: usize,
    },
    /// A pass batch whose record count is out of range or a record is not a pass record.
    BadBatch { n: u32 },
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Truncated { len } => write!(f, "record of {len} bytes has no kind tag"),
            DecodeError::UnknownKind { kind } => write!(f, "unknown record kind {kind}"),
            DecodeError::WrongSize {
                kind,
                len,
                expected,
            } => write!(
                f,
                "record kind {kind} is {len} bytes, expected {expected} (eBPF object and \
                 userspace built from different sources?)"
            ),
            DecodeError::BadBatch { n } => write!(
                f,
                "pass batch with {n} records (at most {PASS_BATCH_LEN}, each a pass record)"
            ),
        }
    }
}

fn read<T: Copy>(bytes: &[u8]) -> T {
    // SAFETY: callers check `bytes.len() == size_of::<T>()`; T is a #[repr(C)] plain-old-data
    // record for which every bit pattern is valid; read_unaligned has no alignment requirement.
    unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

/// Decode one ring-buffer item into `out`: the kind tag first, then an exact size check, then
/// the copy. A pass batch yields its records in the order they ended; on error nothing is
/// appended.
pub fn decode_into(bytes: &[u8], out: &mut impl Extend<Record>) -> Result<(), DecodeError> {
    let Some(tag) = bytes.get(..8) else {
        return match bytes.get(..4) {
            Some(_) => decode(bytes).map(|r| out.extend([r])),
            None => Err(DecodeError::Truncated { len: bytes.len() }),
        };
    };
    let kind = u32::from_ne_bytes([tag[0], tag[1], tag[2], tag[3]]);
    if kind != RECORD_PASS_BATCH {
        return decode(bytes).map(|r| out.extend([r]));
    }
    let n = u32::from_ne_bytes([tag[4], tag[5], tag[6], tag[7]]);
    let body = &bytes[PASS_BATCH_HEADER.min(bytes.len())..];
    if bytes.len() < PASS_BATCH_HEADER {
        return Err(DecodeError::WrongSize {
            kind,
            len: bytes.len(),
            expected: PASS_BATCH_HEADER,
        });
    }
    decode_batch(n, body, out).map_err(|e| match e {
        DecodeError::WrongSize { expected, .. } => DecodeError::WrongSize {
            kind,
            len: bytes.len(),
            expected: PASS_BATCH_HEADER + expected,
        },
        e => e,
    })
}

/// Decode the `n` pass records of a batch, `body` being the bytes after its header: what
/// the ring buffer carries, and what is still waiting in a CPU's STAGING slot when the session
/// ends. On error nothing is appended.
pub fn decode_batch(n: u32, body: &[u8], out: &mut impl Extend<Record>) -> Result<(), DecodeError> {
    if n as usize > PASS_BATCH_LEN {
        return Err(DecodeError::BadBatch { n });
    }
    let rec = size_of::<PassWire>();
    let expected = n as usize * rec;
    if body.len() != expected {
        return Err(DecodeError::WrongSize {
            kind: RECORD_PASS_BATCH,
            len: body.len(),
            expected,
        });
    }
    let recs = || body.chunks_exact(rec).map(read::<PassWire>);
    if recs().any(|r| r.kind != RECORD_PASS) {
        return Err(DecodeError::BadBatch { n });
    }
    out.extend(recs().map(|w| Record::Pass(PassRecord::from(&w))));
    Ok(())
}

/// The records waiting in a CPU's batch (`PassBatch::n` of them; its `kind` is only set when
/// the batch is sent).
pub fn decode_staged(b: &PassBatch, out: &mut impl Extend<Record>) -> Result<(), DecodeError> {
    let n = b.n.min(PASS_BATCH_LEN as u32 + 1);
    let len = (n as usize).min(PASS_BATCH_LEN) * size_of::<PassWire>();
    // SAFETY: the first `len` bytes of the batch's record array (at most all of it), plain
    // integers.
    let body = unsafe { core::slice::from_raw_parts(b.recs.as_ptr().cast::<u8>(), len) };
    decode_batch(n, body, out)
}

/// Decode one single-record item (`RECORD_PASS` or `RECORD_FLUSH`).
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let Some(tag) = bytes.get(..4) else {
        return Err(DecodeError::Truncated { len: bytes.len() });
    };
    let kind = u32::from_ne_bytes([tag[0], tag[1], tag[2], tag[3]]);
    let expect = |expected: usize| {
        if bytes.len() == expected {
            Ok(())
        } else {
            Err(DecodeError::WrongSize {
                kind,
                len: bytes.len(),
                expected,
            })
        }
    };
    match kind {
        RECORD_PASS => {
            expect(size_of::<PassWire>())?;
            Ok(Record::Pass(PassRecord::from(&read::<PassWire>(bytes))))
        }
        RECORD_FLUSH => {
            expect(size_of::<FlushRecord>())?;
            Ok(Record::Flush(read(bytes)))
        }
        kind => Err(DecodeError::UnknownKind { kind }),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;
    use crate::{FlushRecord, PassBatch, PassCounts, PassDelta};

    fn bytes_of<T>(v: &T) -> &[u8] {
        // SAFETY: reading the bytes of a plain #[repr(C)] integer struct.
        unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
    }

    #[test]
    fn round_trips_pass_and_flush_records() {
        let w = PassWire {
            kind: RECORD_PASS,
            context: 2,
            flags: 5,
            cpu: 4095,
            tid: 7,
            tgid: 6,
            cgroup_id: 99,
            start_ns: 1_000,
            duration_ns: 250,
            _pad: 0,
            counts: PassDelta {
                folios_reclaimed: 31,
                dirty_flushes: 3,
                dirty_flush_calls: u32::MAX,
                ..Default::default()
            },
            comm: *b"rt-anon-0\0\0\0\0\0\0\0",
        };
        let p = PassRecord {
            kind: RECORD_PASS,
            flags: 5,
            tid: 7,
            tgid: 6,
            context: 2,
            cpu: 4095,
            cgroup_id: 99,
            start_ns: 1_000,
            end_ns: 1_250,
            comm: w.comm,
            counts: PassCounts {
                passes: 1,
                folios_reclaimed: 31,
                dirty_flushes: 3,
                dirty_flush_calls: u32::MAX as u64,
                duration_ns: 250,
                ..Default::default()
            },
        };
        assert_eq!(decode(bytes_of(&w)), Ok(Record::Pass(p)));
        let f = FlushRecord {
            kind: RECORD_FLUSH,
            targets: 3,
            ..Default::default()
        };
        assert_eq!(decode(bytes_of(&f)), Ok(Record::Flush(f)));
    }

    #[test]
    fn rejects_short_unknown_and_missized_items() {
        assert_eq!(decode(&[1, 0]), Err(DecodeError::Truncated { len: 2 }));
        assert_eq!(
            decode(&[9, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::UnknownKind { kind: 9 })
        );
        let p = PassWire {
            kind: RECORD_PASS,
            ..Default::default()
        };
        let b = bytes_of(&p);
        assert!(matches!(
            decode(&b[..b.len() - 8]),
            Err(DecodeError::WrongSize {
                kind: RECORD_PASS,
                ..
            })
        ));
        let mut long = b.to_vec();
        long.extend_from_slice(&[0; 8]);
        assert!(matches!(decode(&long), Err(DecodeError::WrongSize { .. })));
    }

    fn batch_of(n: usize) -> (PassBatch, Vec<PassRecord>) {
        let mut b = PassBatch {
            kind: RECORD_PASS_BATCH,
            n: n as u32,
            ..Default::default()
        };
        for (i, r) in b.recs.iter_mut().enumerate().take(n) {
            *r = PassWire {
                kind: RECORD_PASS,
                tid: 100 + i as u32,
                counts: PassDelta {
                    folios_reclaimed: i as u32,
                    ..Default::default()
                },
                ..Default::default()
            };
        }
        let recs = b.recs[..n].iter().map(PassRecord::from).collect();
        (b, recs)
    }

    #[test]
    fn a_batch_yields_its_first_n_records_in_order() {
        for n in [0, 1, 7, PASS_BATCH_LEN] {
            let (b, recs) = batch_of(n);
            let len = PASS_BATCH_HEADER + n * size_of::<PassWire>();
            let mut out = vec![Record::Flush(FlushRecord::default())];
            decode_into(&bytes_of(&b)[..len], &mut out).unwrap();
            assert_eq!(out.len(), 1 + n);
            let got: Vec<PassRecord> = out[1..]
                .iter()
                .map(|r| match r {
                    Record::Pass(p) => *p,
                    Record::Flush(_) => panic!("a batch yields pass records only"),
                })
                .collect();
            assert_eq!(got, recs);
        }
        // Single records still decode through decode_into.
        let f = FlushRecord {
            kind: RECORD_FLUSH,
            ..Default::default()
        };
        let mut out = Vec::new();
        decode_into(bytes_of(&f), &mut out).unwrap();
        assert_eq!(out, vec![Record::Flush(f)]);
    }

    #[test]
    fn rejects_batches_with_a_bad_count_size_or_record() {
        let (b, _) = batch_of(3);
        let bytes = bytes_of(&b);
        let len = PASS_BATCH_HEADER + 3 * size_of::<PassWire>();
        let mut out = Vec::new();
        // One record short, and the whole (16-slot) batch for n = 3.
        assert!(matches!(
            decode_into(&bytes[..len - size_of::<PassWire>()], &mut out),
            Err(DecodeError::WrongSize { .. })
        ));
        assert!(matches!(
            decode_into(bytes, &mut out),
            Err(DecodeError::WrongSize { .. })
        ));
        let mut over = b;
        over.n = PASS_BATCH_LEN as u32 + 1;
        assert_eq!(
            decode_into(bytes_of(&over), &mut out),
            Err(DecodeError::BadBatch {
                n: PASS_BATCH_LEN as u32 + 1
            })
        );
        let mut wrong = b;
        wrong.recs[1].kind = RECORD_FLUSH;
        assert_eq!(
            decode_into(&bytes_of(&wrong)[..len], &mut out),
            Err(DecodeError::BadBatch { n: 3 })
        );
        assert!(out.is_empty(), "nothing is appended on error");
    }

    #[test]
    fn staged_batches_decode_like_sent_ones_and_bad_ones_are_errors() {
        let mut b: PassBatch = unsafe { core::mem::zeroed() };
        for (i, r) in b.recs.iter_mut().take(2).enumerate() {
            r.kind = RECORD_PASS;
            r.tid = 7 + i as u32;
        }
        b.n = 2;
        let mut out = Vec::new();
        decode_staged(&b, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        b.n = 3; // the third slot holds no pass record
        assert_eq!(
            decode_staged(&b, &mut out),
            Err(DecodeError::BadBatch { n: 3 })
        );
        b.n = PASS_BATCH_LEN as u32 + 5;
        assert!(matches!(
            decode_staged(&b, &mut out),
            Err(DecodeError::BadBatch { .. })
        ));
        assert_eq!(out.len(), 2, "nothing appended on error");
    }
}
