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
