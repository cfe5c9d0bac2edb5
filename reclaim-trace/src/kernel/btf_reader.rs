//! A minimal reader of the kernel's BTF (format: Documentation/bpf/btf.rst): just enough to
//! find named structs, enums and functions and walk struct members.
//!
//! Why not a general BTF crate: resolving the ~20 names the precise tier needs with one took
//! ~0.25 s of CPU per start on 6.18 (it indexes and caches all ~120,000 types); this reader
//! indexes only the wanted names in one pass over the type section (a few milliseconds), which
//! keeps the tracer's own start-up cost small (`cargo xtask bench` measures it).

use std::collections::HashMap;

use anyhow::{Result, bail};

const MAGIC: u16 = 0xeb9f;

pub const KIND_INT: u32 = 1;
pub const KIND_PTR: u32 = 2;
pub const KIND_ARRAY: u32 = 3;
pub const KIND_STRUCT: u32 = 4;
pub const KIND_UNION: u32 = 5;
pub const KIND_ENUM: u32 = 6;
pub const KIND_FWD: u32 = 7;
pub const KIND_TYPEDEF: u32 = 8;
pub const KIND_VOLATILE: u32 = 9;
pub const KIND_CONST: u32 = 10;
pub const KIND_RESTRICT: u32 = 11;
pub const KIND_FUNC: u32 = 12;
pub const KIND_FUNC_PROTO: u32 = 13;
pub const KIND_VAR: u32 = 14;
pub const KIND_DATASEC: u32 = 15;
pub const KIND_FLOAT: u32 = 16;
pub const KIND_DECL_TAG: u32 = 17;
pub const KIND_TYPE_TAG: u32 = 18;
pub const KIND_ENUM64: u32 = 19;

/// One type record: its header fields and where its trailing data starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeRec {
    pub name_off: u32,
    pub kind: u32,
    pub vlen: u32,
    pub kind_flag: bool,
    /// `size` for sized kinds, `type` for reference kinds.
    pub size_or_type: u32,
    /// Byte offset of the trailing data in the type section.
    data: usize,
}

/// A struct/union member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub name_off: u32,
    pub type_id: u32,
    pub bit_offset: u32,
    pub bitfield_size: Option<u32>,
}

pub struct BtfReader {
    types: Vec<u8>,
    strings: Vec<u8>,
    /// Type id → offset of its record in `types` (id 0 is void).
    offsets: Vec<u32>,
    /// Wanted name → type ids with that name.
    names: HashMap<String, Vec<u32>>,
}

fn str_in(strings: &[u8], off: u32) -> &str {
    let s = strings.get(off as usize..).unwrap_or(&[]);
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    std::str::from_utf8(&s[..end]).unwrap_or("")
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Bytes of trailing data after a type header, by kind.
fn trailing(kind: u32, vlen: u32) -> Option<usize> {
    let vlen = vlen as usize;
    Some(match kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
        KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
        KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
        | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
        _ => return None,
    })
}

impl BtfReader {
    /// Parse `bytes` (little-endian BTF), indexing only the types named in `wanted`.
    pub fn parse(bytes: &[u8], wanted: &[&str]) -> Result<BtfReader> {
        let Some(magic) = bytes.get(0..2).map(|m| u16::from_le_bytes([m[0], m[1]])) else {
            bail!("BTF data is empty");
        };
        if magic != MAGIC {
            bail!("not little-endian BTF (magic {magic:#06x})");
        }
        let field = |i: usize| {
            u32_at(bytes, 4 + 4 * i).ok_or_else(|| anyhow::anyhow!("BTF header is truncated"))
        };
        let hdr_len = field(0)? as usize;
        let (type_off, type_len, str_off, str_len) = (
            field(1)? as usize,
            field(2)? as usize,
            field(3)? as usize,
            field(4)? as usize,
        );
        let section = |off: usize, len: usize| {
            bytes
                .get(hdr_len + off..hdr_len + off + len)
                .ok_or_else(|| anyhow::anyhow!("BTF section out of bounds"))
        };
        let types = section(type_off, type_len)?.to_vec();
        let strings = section(str_off, str_len)?.to_vec();
        let mut r = BtfReader {
            types,
            strings,
            offsets: vec![0],
            names: wanted.iter().map(|w| (w.to_string(), Vec::new())).collect(),
        };
        let mut pos = 0usize;
        while pos + 12 <= r.types.len() {
            let name_off = u32_at(&r.types, pos).unwrap_or(0);
            let info = u32_at(&r.types, pos + 4).unwrap_or(0);
            let (kind, vlen) = ((info >> 24) & 0x1f, info & 0xffff);
            let Some(extra) = trailing(kind, vlen) else {
                bail!("unknown BTF kind {kind} at type {}", r.offsets.len());
            };
            let id = r.offsets.len() as u32;
            r.offsets.push(pos as u32);
            if name_off != 0 {
                let BtfReader { strings, names, .. } = &mut r;
                if let Some(ids) = names.get_mut(str_in(strings, name_off)) {
                    ids.push(id);
                }
            }
            pos += 12 + extra;
        }
        Ok(r)
    }

    /// The string at `off` in the string section ("" when out of range).
    pub fn str_at(&self, off: u32) -> &str {
        str_in(&self.strings, off)
    }

    pub fn type_by_id(&self, id: u32) -> Option<TypeRec> {
        let pos = *self.offsets.get(id as usize)? as usize;
        if id == 0 {
            return None;
        }
        let info = u32_at(&self.types, pos + 4)?;
        Some(TypeRec {
            name_off: u32_at(&self.types, pos)?,
            kind: (info >> 24) & 0x1f,
            vlen: info & 0xffff,
            kind_flag: info >> 31 == 1,
            size_or_type: u32_at(&self.types, pos + 8)?,
            data: pos + 12,
        })
    }

    /// Ids of the wanted types named `name` (empty when not indexed or absent).
    pub fn ids(&self, name: &str) -> &[u32] {
        self.names.get(name).map_or(&[], Vec::as_slice)
    }

    /// The first type named `name` of one of `kinds`.
    pub fn find(&self, name: &str, kinds: &[u32]) -> Option<(u32, TypeRec)> {
        self.ids(name)
            .iter()
            .filter_map(|&id| Some((id, self.type_by_id(id)?)))
            .find(|(_, t)| kinds.contains(&t.kind))
    }

    pub fn members(&self, t: &TypeRec) -> impl Iterator<Item = Member> + '_ {
        let t = *t;
        (0..t.vlen as usize).filter_map(move |i| {
            let at = t.data + 12 * i;
            let off = u32_at(&self.types, at + 8)?;
            Some(Member {
                name_off: u32_at(&self.types, at)?,
                type_id: u32_at(&self.types, at + 4)?,
                bit_offset: if t.kind_flag { off & 0x00ff_ffff } else { off },
                bitfield_size: (t.kind_flag && off >> 24 != 0).then_some(off >> 24),
            })
        })
    }

    /// (name, value) of an enum's enumerators.
    pub fn enumerators(&self, t: &TypeRec) -> impl Iterator<Item = (&str, u32)> + '_ {
        let t = *t;
        (0..t.vlen as usize).filter_map(move |i| {
            let at = t.data + 8 * i;
            Some((
                self.str_at(u32_at(&self.types, at)?),
                u32_at(&self.types, at + 4)?,
            ))
        })
    }

    /// Number of parameters of a FUNC_PROTO.
    pub fn params(&self, t: &TypeRec) -> usize {
        t.vlen as usize
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny BTF blob: `int`, `struct s { int a; unsigned b:3; unsigned c:1; }`,
    /// `enum e { X = 7 }`, `void f(int, int)`.
    pub(crate) fn blob() -> Vec<u8> {
        let mut strings = b"\0int\0s\0a\0b\0c\0e\0X\0f\0".to_vec();
        strings.push(0);
        let name = |s: &str| -> u32 {
            let pat = format!("\0{s}\0");
            strings_find(&strings, pat.as_bytes()) + 1
        };
        fn strings_find(h: &[u8], n: &[u8]) -> u32 {
            h.windows(n.len()).position(|w| w == n).unwrap() as u32
        }
        let mut t = Vec::new();
        let mut push = |v: &[u32]| v.iter().for_each(|x| t.extend_from_slice(&x.to_le_bytes()));
        // 1: int (size 4, 32 bits)
        push(&[name("int"), KIND_INT << 24, 4, 32]);
        // 2: struct s, kind_flag set (bitfields), 3 members, size 8
        push(&[name("s"), (1 << 31) | (KIND_STRUCT << 24) | 3, 8]);
        push(&[name("a"), 1, 0]);
        push(&[name("b"), 1, (3 << 24) | 32]);
        push(&[name("c"), 1, (1 << 24) | 35]);
        // 3: enum e { X = 7 }
        push(&[name("e"), (KIND_ENUM << 24) | 1, 4]);
        push(&[name("X"), 7]);
        // 4: func_proto (int, int) -> void ; 5: func f
        push(&[0, (KIND_FUNC_PROTO << 24) | 2, 0]);
        push(&[0, 1, 0, 1]);
        push(&[name("f"), KIND_FUNC << 24, 4]);
        let mut b = Vec::new();
        let hdr = [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ];
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        hdr.iter()
            .for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        b.extend_from_slice(&t);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn parses_structs_bitfields_enums_and_functions() {
        let r = BtfReader::parse(&blob(), &["s", "e", "f", "absent"]).unwrap();
        let (_, s) = r.find("s", &[KIND_STRUCT]).unwrap();
        let m: Vec<Member> = r.members(&s).collect();
        assert_eq!(m.len(), 3);
        assert_eq!(r.str_at(m[1].name_off), "b");
        assert_eq!((m[1].bit_offset, m[1].bitfield_size), (32, Some(3)));
        assert_eq!((m[2].bit_offset, m[2].bitfield_size), (35, Some(1)));
        assert_eq!(m[0].bitfield_size, None);
        let (_, e) = r.find("e", &[KIND_ENUM]).unwrap();
        assert_eq!(r.enumerators(&e).collect::<Vec<_>>(), vec![("X", 7)]);
        let (_, f) = r.find("f", &[KIND_FUNC]).unwrap();
        let proto = r.type_by_id(f.size_or_type).unwrap();
        assert_eq!(
            (proto.kind, r.params(&proto), proto.size_or_type),
            (KIND_FUNC_PROTO, 2, 0)
        );
        assert!(r.find("absent", &[KIND_STRUCT]).is_none());
        assert!(
            r.find("int", &[KIND_INT]).is_none(),
            "only wanted names are indexed"
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(BtfReader::parse(&[], &[]).is_err());
        assert!(BtfReader::parse(&[0x9f, 0xeb, 1, 0], &[]).is_err());
        let mut b = blob();
        b[0] = 0;
        assert!(BtfReader::parse(&b, &[]).is_err());
    }
}
