//! Length-checked decoding of ring-buffer records (userspace only).

use core::mem::size_of;

use crate::{FlushRecord, PassRecord, RECORD_FLUSH, RECORD_PASS};

/// A decoded ring-buffer record.
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
        }
    }
}

fn read<T: Copy>(bytes: &[u8]) -> T {
    // SAFETY: callers check `bytes.len() == size_of::<T>()`; T is a #[repr(C)] plain-old-data
    // record for which every bit pattern is valid; read_unaligned has no alignment requirement.
    unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

/// Decode one ring-buffer item: the kind tag first, then an exact size check, then the copy.
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
            expect(size_of::<PassRecord>())?;
            Ok(Record::Pass(read(bytes)))
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
    use super::*;
    use crate::{FlushRecord, PassCounts};

    fn bytes_of<T>(v: &T) -> &[u8] {
        // SAFETY: reading the bytes of a plain #[repr(C)] integer struct.
        unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
    }

    #[test]
    fn round_trips_pass_and_flush_records() {
        let p = PassRecord {
            kind: RECORD_PASS,
            tid: 7,
            cgroup_id: 99,
            comm: *b"rt-anon-0\0\0\0\0\0\0\0",
            counts: PassCounts {
                passes: 1,
                dirty_flushes: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(decode(bytes_of(&p)), Ok(Record::Pass(p)));
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
        let p = PassRecord {
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
}
