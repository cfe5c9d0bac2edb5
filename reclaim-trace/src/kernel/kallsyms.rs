//! `/proc/kallsyms`: symbol addresses and which functions can be probed by name.

use std::collections::HashMap;

use anyhow::{Context as _, Result};

/// Functions the tool looks up: probe targets and the callbacks hot programs compare against.
pub const WANTED: &[&str] = &[
    "shrink_folio_list",
    "shrink_page_list",
    "try_to_unmap",
    "try_to_unmap_flush",
    "try_to_unmap_flush_dirty",
    "arch_tlbbatch_flush",
    "pageout",
    "pageout_batch",
    "flush_tlb_func",
    "flush_tlb_multi",
    "native_flush_tlb_multi",
    "generic_smp_call_function_single_interrupt",
    "set_tlb_ubc_flush_pending",
    "shrink_inactive_list",
];

/// The kernel's symbol table (text symbols only).
#[derive(Clone, Debug, Default)]
pub struct Kallsyms {
    /// name → (address, type letter). Module symbols are ignored.
    syms: HashMap<String, (u64, char)>,
    /// Number of entries per name: a static function defined in several files is ambiguous.
    dups: HashMap<String, u32>,
    /// Names of compiler clones (`foo.isra.0`, `foo.constprop.0`, `foo.part.0`) by base name.
    clones: HashMap<String, Vec<String>>,
    /// Addresses are hidden (kptr_restrict, or not root): every address reads as 0.
    pub addresses_hidden: bool,
}

impl Kallsyms {
    /// The function a reclaim pass runs through on this kernel: `shrink_folio_list`, named
    /// `shrink_page_list` before 6.1. `None` when neither can be probed by name (inlined).
    pub fn shrink_list_function(&self) -> Option<&'static str> {
        ["shrink_folio_list", "shrink_page_list"]
            .into_iter()
            .find(|f| self.has(f))
    }

    /// The symbols of `WANTED` (and their compiler clones) from /proc/kallsyms. Keeping only
    /// those makes this several times cheaper than indexing all ~120,000 text symbols.
    pub fn load() -> Result<Kallsyms> {
        use std::io::BufRead as _;
        // Streamed: the file is ~10 MB of text that the kernel formats as it is read; holding
        // it all would only add page faults.
        let f = std::fs::File::open("/proc/kallsyms").context("cannot open /proc/kallsyms")?;
        let mut r = std::io::BufReader::with_capacity(1 << 16, f);
        let mut k = Kallsyms::default();
        let mut line = String::new();
        let mut state = (false, false);
        loop {
            line.clear();
            if r.read_line(&mut line)
                .context("cannot read /proc/kallsyms")?
                == 0
            {
                break;
            }
            k.add_line(&line, &mut state, |name| {
                WANTED.contains(&name.split('.').next().unwrap_or(name))
            });
        }
        k.addresses_hidden = state.0 && !state.1;
        Ok(k)
    }

    /// Every text symbol (tests).
    pub fn parse(text: &str) -> Kallsyms {
        Self::parse_filtered(text, |_| true)
    }

    pub fn parse_filtered(text: &str, keep: impl Fn(&str) -> bool) -> Kallsyms {
        let mut k = Kallsyms::default();
        let mut state = (false, false);
        for line in text.lines() {
            k.add_line(line, &mut state, &keep);
        }
        k.addresses_hidden = state.0 && !state.1;
        k
    }

    /// One `addr type name [module]` line; `seen` is (any symbol, any non-zero address).
    fn add_line(&mut self, line: &str, seen: &mut (bool, bool), keep: impl Fn(&str) -> bool) {
        let mut it = line.split_whitespace();
        let (Some(addr), Some(ty), Some(name)) = (it.next(), it.next(), it.next()) else {
            return;
        };
        if it.next().is_some() {
            return; // "[module]": not part of vmlinux
        }
        if !matches!(ty.as_bytes().first(), Some(b't' | b'T' | b'w' | b'W')) {
            return;
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            return;
        };
        seen.0 = true;
        seen.1 |= addr != 0;
        if !keep(name) {
            return;
        }
        let ty = ty.chars().next().unwrap_or('?');
        if let Some((base, _)) = name.split_once('.') {
            self.clones
                .entry(base.to_string())
                .or_default()
                .push(name.to_string());
        }
        *self.dups.entry(name.to_string()).or_default() += 1;
        self.syms.entry(name.to_string()).or_insert((addr, ty));
    }

    /// Address of a text symbol (None when absent or when addresses are hidden).
    pub fn addr(&self, name: &str) -> Option<u64> {
        self.syms.get(name).map(|&(a, _)| a).filter(|&a| a != 0)
    }

    pub fn has(&self, name: &str) -> bool {
        self.syms.contains_key(name)
    }

    /// Why `name` cannot be attached to by name, or `None` if it can.
    pub fn unprobeable_reason(&self, name: &str) -> Option<String> {
        if !self.has(name) {
            return Some(match self.clones.get(name) {
                Some(c) => format!(
                    "only compiler clone(s) {} exist (arguments may be rewritten)",
                    c.join(", ")
                ),
                None => "not in /proc/kallsyms (inlined or renamed on this kernel)".to_string(),
            });
        }
        if self.dups.get(name).copied().unwrap_or(0) > 1 {
            return Some("several functions share this name".to_string());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff813424a0 t flush_tlb_func
ffffffff813437a0 T arch_tlbbatch_flush
ffffffff815a8580 t shrink_folio_list
ffffffff81600000 t set_tlb_ubc_flush_pending.isra.0
ffffffff81700000 t dup_fn
ffffffff81700100 t dup_fn
ffffffff81800000 d some_data
ffffffffc0000000 t mod_fn\t[zram]
";

    #[test]
    fn finds_text_symbols_and_refuses_clones_and_duplicates() {
        let k = Kallsyms::parse(SAMPLE);
        assert!(!k.addresses_hidden);
        assert_eq!(k.addr("flush_tlb_func"), Some(0xffffffff813424a0));
        assert_eq!(k.unprobeable_reason("shrink_folio_list"), None);
        assert!(
            k.unprobeable_reason("set_tlb_ubc_flush_pending")
                .unwrap()
                .contains("isra")
        );
        assert!(k.unprobeable_reason("dup_fn").unwrap().contains("several"));
        assert!(k.unprobeable_reason("pageout").unwrap().contains("inlined"));
        assert!(!k.has("some_data"));
        assert!(!k.has("mod_fn"));
    }

    #[test]
    fn hidden_addresses_are_detected() {
        let k = Kallsyms::parse("0000000000000000 T foo\n0000000000000000 t bar\n");
        assert!(k.addresses_hidden);
        assert_eq!(k.addr("foo"), None);
        assert!(k.has("foo"));
    }
}
