//! Is an executable static? Read from its ELF program headers, not from `file` or `ldd`
//! output, so that a missing tool or an unexpected wording cannot make the check pass: a file
//! this cannot read is an error, never "static".
//!
//! Dynamic means a `PT_INTERP` program header (the loader the kernel starts first) or a
//! `DT_NEEDED` entry in the `PT_DYNAMIC` segment (a shared library to load). Rust's musl target
//! links static-pie: it has a `PT_DYNAMIC` (its own relocations) with no `DT_NEEDED` in it.

use anyhow::{Result, bail};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

#[derive(Debug, PartialEq, Eq)]
pub enum Linkage {
    Static,
    /// Why not static, in a few words (the interpreter or the libraries it needs).
    Dynamic(String),
}

struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// `len` bytes at file offset `off`, or None past the end.
fn slice(b: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    b.get(start..end)
}

/// The NUL-terminated string at file offset `off`.
fn c_str(b: &[u8], off: u64) -> Option<String> {
    let s = b.get(usize::try_from(off).ok()?..)?;
    let end = s.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&s[..end]).into_owned())
}

/// `e_machine` of the ELF file `b` (62 x86_64, 183 aarch64).
pub fn machine(b: &[u8]) -> Result<u16> {
    if b.get(..4) != Some(b"\x7fELF") {
        bail!("not an ELF file");
    }
    u16_at(b, 18).ok_or_else(|| anyhow::anyhow!("truncated ELF header"))
}

/// The linkage of the executable `b` (ELF64, little-endian: x86_64 or aarch64).
pub fn linkage(b: &[u8]) -> Result<Linkage> {
    if b.get(..4) != Some(b"\x7fELF") {
        bail!("not an ELF file");
    }
    if b.get(4..6) != Some(&[2, 1]) {
        bail!("not a 64-bit little-endian ELF file");
    }
    let truncated = || anyhow::anyhow!("truncated ELF header");
    let e_type = u16_at(b, 16).ok_or_else(truncated)?;
    if e_type != 2 && e_type != 3 {
        bail!("ELF type {e_type} is not an executable");
    }
    let phoff = u64_at(b, 0x20).ok_or_else(truncated)?;
    let phentsize = u16_at(b, 0x36).ok_or_else(truncated)?;
    let phnum = u16_at(b, 0x38).ok_or_else(truncated)?;
    if phnum == 0 || phentsize < 56 {
        bail!("no program headers ({phnum} of {phentsize} bytes)");
    }
    let mut phdrs = Vec::new();
    for i in 0..u64::from(phnum) {
        let at = phoff + i * u64::from(phentsize);
        let h = slice(b, at, 56)
            .ok_or_else(|| anyhow::anyhow!("program header {i} is past the end"))?;
        phdrs.push(Phdr {
            kind: u32_at(h, 0).ok_or_else(truncated)?,
            offset: u64_at(h, 8).ok_or_else(truncated)?,
            vaddr: u64_at(h, 16).ok_or_else(truncated)?,
            filesz: u64_at(h, 32).ok_or_else(truncated)?,
        });
    }
    if let Some(p) = phdrs.iter().find(|p| p.kind == PT_INTERP) {
        let interp = c_str(b, p.offset).unwrap_or_else(|| "?".into());
        return Ok(Linkage::Dynamic(format!("it asks for the loader {interp}")));
    }
    let Some(dynamic) = phdrs.iter().find(|p| p.kind == PT_DYNAMIC) else {
        return Ok(Linkage::Static);
    };
    let d = slice(b, dynamic.offset, dynamic.filesz)
        .ok_or_else(|| anyhow::anyhow!("the dynamic segment is past the end"))?;
    let (mut needed, mut strtab) = (Vec::new(), None);
    for e in d.chunks_exact(16) {
        let (tag, val) = (u64_at(e, 0).unwrap_or(0), u64_at(e, 8).unwrap_or(0));
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed.push(val),
            DT_STRTAB => strtab = Some(val),
            _ => {}
        }
    }
    if needed.is_empty() {
        return Ok(Linkage::Static);
    }
    // DT_STRTAB is an address: find the file offset of the loaded segment holding it.
    let strtab_off = strtab.and_then(|a| {
        phdrs
            .iter()
            .find(|p| p.kind == PT_LOAD && p.vaddr <= a && a < p.vaddr + p.filesz)
            .map(|p| a - p.vaddr + p.offset)
    });
    let names: Vec<String> = needed
        .iter()
        .map(|&n| {
            strtab_off
                .and_then(|s| c_str(b, s + n))
                .unwrap_or_else(|| "?".into())
        })
        .collect();
    Ok(Linkage::Dynamic(format!("it needs {}", names.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 executable: header, the program headers `phdrs` (type, offset, vaddr,
    /// size), then `tail` at offset 0x200.
    fn elf(e_type: u16, phdrs: &[(u32, u64, u64, u64)], tail: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // ELFCLASS64
        b[5] = 1; // ELFDATA2LSB
        b[6] = 1;
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, &(kind, offset, vaddr, size)) in phdrs.iter().enumerate() {
            let h = &mut b[0x40 + i * 56..0x40 + (i + 1) * 56];
            h[0..4].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&offset.to_le_bytes());
            h[16..24].copy_from_slice(&vaddr.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
        }
        b.extend_from_slice(tail);
        b
    }

    /// A dynamic segment at 0x200 with `entries`, its string table right after it.
    fn dynamic(entries: &[(u64, u64)], strings: &[u8]) -> (Vec<u8>, u64) {
        let mut d = Vec::new();
        for (tag, val) in entries.iter().chain([&(DT_NULL, 0)]) {
            d.extend_from_slice(&tag.to_le_bytes());
            d.extend_from_slice(&val.to_le_bytes());
        }
        let dlen = d.len() as u64;
        d.extend_from_slice(strings);
        (d, dlen)
    }

    #[test]
    fn the_machine_tells_x86_64_from_aarch64() {
        let mut b = elf(2, &[(PT_LOAD, 0, 0x400000, 0x200)], &[]);
        assert_eq!(machine(&b).unwrap(), 62);
        b[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        assert_eq!(machine(&b).unwrap(), 183);
        assert_eq!(
            crate::arch::Arch::from_elf_machine(183),
            Some(crate::arch::Arch::Arm64)
        );
        assert_eq!(linkage(&b).unwrap(), Linkage::Static);
        assert!(machine(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn only_loads_is_static() {
        let b = elf(2, &[(PT_LOAD, 0, 0x400000, 0x200)], &[]);
        assert_eq!(linkage(&b).unwrap(), Linkage::Static);
    }

    #[test]
    fn an_interpreter_is_dynamic() {
        let b = elf(
            3,
            &[(PT_INTERP, 0x200, 0x200, 28), (PT_LOAD, 0, 0, 0x21c)],
            b"/lib64/ld-linux-x86-64.so.2\0",
        );
        assert_eq!(
            linkage(&b).unwrap(),
            Linkage::Dynamic("it asks for the loader /lib64/ld-linux-x86-64.so.2".into())
        );
    }

    #[test]
    fn static_pie_has_a_dynamic_segment_without_needed_libraries() {
        let (d, len) = dynamic(&[(DT_STRTAB, 0x1000)], b"\0");
        let b = elf(
            3,
            &[(PT_LOAD, 0, 0, 0x300), (PT_DYNAMIC, 0x200, 0x200, len)],
            &d,
        );
        assert_eq!(linkage(&b).unwrap(), Linkage::Static);
    }

    #[test]
    fn a_needed_library_is_dynamic_and_named() {
        // Three entries and DT_NULL (64 bytes) at file offset 0x200, the strings after them;
        // the file is loaded at 0x10000, so the strings are at 0x10000 + 0x200 + 64.
        let strtab = 0x10000 + 0x200 + 64;
        let (d, len) = dynamic(
            &[(DT_NEEDED, 1), (DT_NEEDED, 11), (DT_STRTAB, strtab)],
            b"\0libc.so.6\0libgcc_s.so.1\0",
        );
        assert_eq!(len, 64);
        let b = elf(
            3,
            &[
                (PT_LOAD, 0, 0x10000, 0x400),
                (PT_DYNAMIC, 0x200, 0x10200, len),
            ],
            &d,
        );
        assert_eq!(
            linkage(&b).unwrap(),
            Linkage::Dynamic("it needs libc.so.6, libgcc_s.so.1".into())
        );
    }

    #[test]
    fn what_is_not_an_executable_is_an_error() {
        assert!(linkage(b"#!/bin/sh\n").is_err());
        assert!(linkage(&elf(2, &[], &[])).is_err());
        let mut b = elf(2, &[(PT_LOAD, 0, 0, 0x200)], &[]);
        b[4] = 1; // 32-bit
        assert!(linkage(&b).is_err());
        let b = elf(2, &[(PT_LOAD, 0, 0, 0x200)], &[]);
        assert!(linkage(&b[..0x50]).is_err(), "truncated program header");
    }

    #[test]
    fn this_machines_ls_is_dynamic() {
        let b = std::fs::read("/bin/ls").expect("/bin/ls");
        match linkage(&b).unwrap() {
            Linkage::Dynamic(why) => assert!(why.contains("ld-linux"), "{why}"),
            Linkage::Static => panic!("/bin/ls read as static"),
        }
    }
}
