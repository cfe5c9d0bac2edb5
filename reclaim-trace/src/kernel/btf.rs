//! Kernel struct layouts from BTF (`/sys/kernel/btf/vmlinux`).
//!
//! Rust eBPF has no CO-RE relocations, so the offsets the programs need are resolved here, in
//! userspace, and handed to them in `Config.btf`. Every lookup can fail on some kernel; a
//! missing member disables the signal that needs it (the probe plan says which and why).

use std::path::Path;

use anyhow::{Context as _, Result};
use reclaim_trace_common::{BtfOffsets, OFF_NONE};
use serde::Serialize;

use super::btf_reader::{
    BtfReader, KIND_CONST, KIND_ENUM, KIND_FUNC, KIND_FUNC_PROTO, KIND_RESTRICT, KIND_STRUCT,
    KIND_TYPE_TAG, KIND_TYPEDEF, KIND_UNION, KIND_VOLATILE, TypeRec,
};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Every named type the layout looks up. The reader indexes only these, the
/// [`PROBE_FUNCTIONS`] and the `btf_trace_<event>` prototypes of [`RAW_TRACEPOINTS`].
const WANTED_TYPES: &[&str] = &[
    "task_struct",
    "css_set",
    "cgroup_subsys_state",
    "cgroup",
    "kernfs_node",
    "mem_cgroup",
    "scan_control",
    "reclaim_stat",
    "arch_tlbflush_unmap_batch",
    "list_head",
    "cpumask",
    "cgroup_subsys_id",
    "pageflags",
];

/// All names the BTF reader indexes: types, probe functions, raw tracepoint prototypes.
fn wanted() -> Vec<String> {
    WANTED_TYPES
        .iter()
        .chain(PROBE_FUNCTIONS)
        .map(|n| n.to_string())
        .chain(
            RAW_TRACEPOINTS
                .iter()
                .map(|(_, e, _)| format!("btf_trace_{e}")),
        )
        .collect()
}

/// Raw tracepoints the hot programs use, with their TP_PROTO argument count.
pub const RAW_TRACEPOINTS: &[(&str, &str, usize)] = &[
    ("tlb", "tlb_flush", 2),
    ("csd", "csd_queue_cpu", 4),
    ("ipi", "ipi_send_cpu", 3),
    ("ipi", "ipi_send_cpumask", 3),
    ("vmscan", "mm_vmscan_write_folio", 1),
    // 8 before 6.3 (with isolate_mode); the pass programs accept both.
    ("vmscan", "mm_vmscan_lru_isolate", 7),
    ("vmscan", "mm_vmscan_lru_shrink_inactive", 6),
    ("kmem", "mm_page_free", 2),
];

/// The running kernel's BTF.
pub struct KernelBtf {
    r: BtfReader,
}

/// Where a member lives: byte offset, and for bitfields the bit within that byte and width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberLoc {
    pub byte: u32,
    pub bit: u32,
    pub bitfield_size: Option<u32>,
    pub type_id: u32,
}

impl KernelBtf {
    pub fn load() -> Result<KernelBtf> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<KernelBtf> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read {} (kernel built without CONFIG_DEBUG_INFO_BTF?)",
                path.display()
            )
        })?;
        Self::from_bytes(&bytes).with_context(|| format!("cannot parse {}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<KernelBtf> {
        Ok(KernelBtf {
            r: BtfReader::parse(
                bytes,
                &wanted().iter().map(String::as_str).collect::<Vec<_>>(),
            )?,
        })
    }

    /// Follow typedefs and qualifiers.
    fn strip(&self, mut id: u32) -> Option<TypeRec> {
        for _ in 0..16 {
            let t = self.r.type_by_id(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_CONST | KIND_VOLATILE | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Some(t),
            }
        }
        None
    }

    fn struct_by_name(&self, name: &str) -> Option<TypeRec> {
        // A full definition, not a forward declaration (those have no members).
        self.r
            .ids(name)
            .iter()
            .filter_map(|&id| self.r.type_by_id(id))
            .find(|t| matches!(t.kind, KIND_STRUCT | KIND_UNION) && t.vlen > 0)
    }

    /// Find `name` among `s`'s members, descending into anonymous structs and unions.
    fn find_member(
        &self,
        s: &TypeRec,
        name: &str,
        base_bits: u32,
        depth: u32,
    ) -> Option<MemberLoc> {
        if depth > 8 {
            return None;
        }
        for m in self.r.members(s) {
            let bits = base_bits + m.bit_offset;
            let mname = self.r.str_at(m.name_off);
            if mname == name {
                return Some(MemberLoc {
                    byte: bits / 8,
                    bit: bits % 8,
                    bitfield_size: m.bitfield_size,
                    type_id: m.type_id,
                });
            }
            if mname.is_empty()
                && let Some(inner) = self.strip(m.type_id)
                && matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some(found) = self.find_member(&inner, name, bits, depth + 1)
            {
                return Some(found);
            }
        }
        None
    }

    /// Location of `path` (e.g. `["tlb_ubc", "writable"]`) inside `struct strukt`.
    pub fn member(&self, strukt: &str, path: &[&str]) -> Option<MemberLoc> {
        let mut s = self.struct_by_name(strukt)?;
        let mut total = 0u32;
        let mut loc = None;
        for (i, name) in path.iter().enumerate() {
            let found = self.find_member(&s, name, 0, 0)?;
            total += found.byte * 8 + found.bit;
            loc = Some(MemberLoc {
                byte: total / 8,
                bit: total % 8,
                ..found
            });
            if i + 1 < path.len() {
                s = self
                    .strip(found.type_id)
                    .filter(|t| matches!(t.kind, KIND_STRUCT | KIND_UNION))?;
            }
        }
        loc
    }

    /// Byte offset of a non-bitfield member.
    pub fn offset(&self, strukt: &str, path: &[&str]) -> Option<u32> {
        self.member(strukt, path)
            .filter(|l| l.bit == 0 && l.bitfield_size.is_none())
            .map(|l| l.byte)
    }

    /// `struct name` is defined with no members and size 0 (arm64's
    /// `arch_tlbflush_unmap_batch`: its TLBIs are broadcast, there is nothing to record).
    pub fn struct_is_empty(&self, name: &str) -> bool {
        self.r
            .ids(name)
            .iter()
            .filter_map(|&id| self.r.type_by_id(id))
            .any(|t| t.kind == KIND_STRUCT && t.vlen == 0 && t.size_or_type == 0)
    }

    /// Size in bytes of `struct name`.
    pub fn struct_size(&self, name: &str) -> Option<u32> {
        self.struct_by_name(name).map(|t| t.size_or_type)
    }

    /// Value of enumerator `member` of `enum name`.
    pub fn enum_value(&self, name: &str, member: &str) -> Option<u32> {
        let (_, e) = self.r.find(name, &[KIND_ENUM])?;
        self.r
            .enumerators(&e)
            .find(|(n, _)| *n == member)
            .map(|(_, v)| v)
    }

    /// Arguments of raw tracepoint `event` (its `btf_trace_<event>` typedef is a pointer to a
    /// prototype whose first parameter is the BPF context, not counted here).
    pub fn raw_tracepoint_args(&self, event: &str) -> Option<usize> {
        let (_, t) = self
            .r
            .find(&format!("btf_trace_{event}"), &[KIND_TYPEDEF])?;
        let ptr = self.r.type_by_id(t.size_or_type)?;
        let proto = self.r.type_by_id(ptr.size_or_type)?;
        (proto.kind == KIND_FUNC_PROTO).then(|| self.r.params(&proto).saturating_sub(1))
    }

    /// The prototype of function `name`: (number of parameters, returns void).
    pub fn func_proto(&self, name: &str) -> Option<(usize, bool)> {
        let (_, f) = self.r.find(name, &[KIND_FUNC])?;
        let p = self.r.type_by_id(f.size_or_type)?;
        (p.kind == KIND_FUNC_PROTO).then(|| (self.r.params(&p), p.size_or_type == 0))
    }
}

/// What the precise tier needs to know about this kernel's structs, and what was found.
#[derive(Clone, Debug, Serialize)]
pub struct Layout {
    #[serde(skip)]
    pub offsets: BtfOffsets,
    /// `shrink_folio_list` parameter count (5 up to 6.12, 6 with `memcg` from 6.18), if in BTF.
    pub shrink_folio_list_params: Option<usize>,
    /// `shrink_folio_list` returns void (the dirty-folio batching series) and the count is in
    /// `reclaim_stat.nr_reclaimed`.
    pub shrink_folio_list_void: bool,
    /// Size of `struct cpumask` in bytes (NR_CPUS / 8).
    pub cpumask_bytes: Option<u32>,
    /// `arch_tlbflush_unmap_batch.unmapped_pages` exists (6.15+: INVLPGB broadcast flushes).
    pub batch_unmapped_pages: bool,
    /// `struct arch_tlbflush_unmap_batch {}` (arm64): no cpumask to read, and none missing.
    pub batch_empty: bool,
    /// Raw tracepoint → argument count, from BTF (empty without BTF).
    pub raw_tracepoint_args: std::collections::BTreeMap<String, usize>,
    /// Probe targets that have a BTF `FUNC` record (fentry needs one).
    pub funcs: std::collections::BTreeSet<String>,
    /// Members that could not be resolved, by name.
    pub missing: Vec<String>,
}

/// Functions the precise tier may attach to.
pub const PROBE_FUNCTIONS: &[&str] = &[
    "shrink_folio_list",
    "shrink_page_list",
    "try_to_unmap",
    "try_to_unmap_flush_dirty",
    "try_to_unmap_flush",
    "arch_tlbbatch_flush",
    "pageout",
];

impl Layout {
    pub fn resolve(btf: &KernelBtf) -> Layout {
        let mut missing = Vec::new();
        let mut want = |what: &str, v: Option<u32>| -> u32 {
            v.unwrap_or_else(|| {
                missing.push(what.to_string());
                OFF_NONE
            })
        };
        let mut o = BtfOffsets::NONE;
        o.task_flags = want("task_struct.flags", btf.offset("task_struct", &["flags"]));
        o.task_tlb_ubc_writable = want(
            "task_struct.tlb_ubc.writable",
            btf.offset("task_struct", &["tlb_ubc", "writable"]),
        );
        o.task_tlb_ubc_flush_required = want(
            "task_struct.tlb_ubc.flush_required",
            btf.offset("task_struct", &["tlb_ubc", "flush_required"]),
        );
        o.task_cgroups = want(
            "task_struct.cgroups",
            btf.offset("task_struct", &["cgroups"]),
        );
        let memory_id = btf.enum_value("cgroup_subsys_id", "memory_cgrp_id");
        o.css_set_memory_subsys = want(
            "css_set.subsys[memory_cgrp_id]",
            btf.offset("css_set", &["subsys"])
                .zip(memory_id)
                .map(|(off, id)| off + id * 8),
        );
        o.css_cgroup = want(
            "cgroup_subsys_state.cgroup",
            btf.offset("cgroup_subsys_state", &["cgroup"]),
        );
        o.cgroup_kn = want("cgroup.kn", btf.offset("cgroup", &["kn"]));
        o.kernfs_node_id = want("kernfs_node.id", btf.offset("kernfs_node", &["id"]));
        o.memcg_css = want("mem_cgroup.css", btf.offset("mem_cgroup", &["css"]));
        o.sc_target_mem_cgroup = want(
            "scan_control.target_mem_cgroup",
            btf.offset("scan_control", &["target_mem_cgroup"]),
        );
        o.sc_nr_scanned = want(
            "scan_control.nr_scanned",
            btf.offset("scan_control", &["nr_scanned"]),
        );
        // `unsigned int proactive:1` in a bitfield run: read its byte, test its bit.
        let proactive = btf
            .member("scan_control", &["proactive"])
            .filter(|l| l.bitfield_size.unwrap_or(8) <= 8 - l.bit);
        o.sc_proactive_byte = want("scan_control.proactive", proactive.map(|l| l.byte));
        if let Some(l) = proactive {
            let width = l.bitfield_size.unwrap_or(8);
            o.sc_proactive_mask = (((1u32 << width) - 1) << l.bit) & 0xff;
        }
        // reclaim_stat: counters are `unsigned int`.
        let stat = |m: &str| btf.offset("reclaim_stat", &[m]);
        o.stat_nr_dirty = want("reclaim_stat.nr_dirty", stat("nr_dirty"));
        o.stat_nr_writeback = want("reclaim_stat.nr_writeback", stat("nr_writeback"));
        o.stat_nr_pageout = want("reclaim_stat.nr_pageout", stat("nr_pageout"));
        o.stat_nr_activate0 = want("reclaim_stat.nr_activate", stat("nr_activate"));
        o.stat_nr_activate1 = if o.stat_nr_activate0 == OFF_NONE {
            OFF_NONE
        } else {
            o.stat_nr_activate0 + 4
        };
        o.stat_nr_unmap_fail = want("reclaim_stat.nr_unmap_fail", stat("nr_unmap_fail"));
        // Only kernels with the batching series have it; its absence is normal.
        o.stat_nr_reclaimed = stat("nr_reclaimed").unwrap_or(OFF_NONE);
        let batch_empty = btf.struct_is_empty("arch_tlbflush_unmap_batch");
        o.batch_cpumask = if batch_empty {
            OFF_NONE
        } else {
            want(
                "arch_tlbflush_unmap_batch.cpumask",
                btf.offset("arch_tlbflush_unmap_batch", &["cpumask"]),
            )
        };
        o.list_next = btf.offset("list_head", &["next"]).unwrap_or(0);
        // Optional: without it the programs fall back to bpf_get_current_comm.
        o.task_comm = btf.offset("task_struct", &["comm"]).unwrap_or(OFF_NONE);
        o.pg_uptodate_bit = want(
            "enum pageflags PG_uptodate",
            btf.enum_value("pageflags", "PG_uptodate")
                .filter(|&b| b < 64),
        );
        let proto = btf
            .func_proto("shrink_folio_list")
            .or_else(|| btf.func_proto("shrink_page_list"));
        Layout {
            offsets: o,
            shrink_folio_list_params: proto.map(|p| p.0),
            shrink_folio_list_void: proto.is_some_and(|p| p.1),
            cpumask_bytes: btf.struct_size("cpumask"),
            batch_unmapped_pages: btf
                .member("arch_tlbflush_unmap_batch", &["unmapped_pages"])
                .is_some(),
            batch_empty,
            raw_tracepoint_args: RAW_TRACEPOINTS
                .iter()
                .filter_map(|(_, e, _)| Some((e.to_string(), btf.raw_tracepoint_args(e)?)))
                .collect(),
            funcs: PROBE_FUNCTIONS
                .iter()
                .filter(|f| btf.func_proto(f).is_some())
                .map(|f| f.to_string())
                .collect(),
            missing,
        }
    }

    /// The layout when there is no BTF at all.
    pub fn unavailable(why: &str) -> Layout {
        Layout {
            offsets: BtfOffsets::NONE,
            shrink_folio_list_params: None,
            shrink_folio_list_void: false,
            cpumask_bytes: None,
            batch_unmapped_pages: false,
            batch_empty: false,
            raw_tracepoint_args: Default::default(),
            funcs: Default::default(),
            missing: vec![format!("everything: {why}")],
        }
    }

    pub fn has(&self, off: u32) -> bool {
        off != OFF_NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF, when it has one: the offsets the programs would get.
    #[test]
    fn resolves_this_kernels_layout() {
        let Ok(btf) = KernelBtf::load() else {
            eprintln!("SKIPPED: no {VMLINUX_BTF} on this kernel");
            return;
        };
        let l = Layout::resolve(&btf);
        assert!(l.missing.is_empty(), "missing: {:?}", l.missing);
        let o = l.offsets;
        // tlb_ubc = { arch_tlbflush_unmap_batch arch; bool flush_required; bool writable; }
        assert_eq!(o.task_tlb_ubc_writable, o.task_tlb_ubc_flush_required + 1);
        assert_eq!(o.batch_cpumask, 0);
        assert_ne!(o.sc_proactive_mask, 0);
        assert!(l.shrink_folio_list_params.is_some_and(|n| n == 5 || n == 6));
        assert!(l.cpumask_bytes.is_some_and(|b| b >= 8 && b % 8 == 0));
        assert!(l.funcs.contains("arch_tlbbatch_flush"));
    }

    #[test]
    fn member_paths_bitfields_and_enums_in_a_synthetic_blob() {
        let btf = KernelBtf {
            r: BtfReader::parse(&crate::kernel::btf_reader::tests::blob(), &["s", "e", "f"])
                .unwrap(),
        };
        assert_eq!(btf.offset("s", &["a"]), Some(0));
        assert_eq!(
            btf.offset("s", &["b"]),
            None,
            "bitfields have no byte offset"
        );
        let c = btf.member("s", &["c"]).unwrap();
        assert_eq!((c.byte, c.bit, c.bitfield_size), (4, 3, Some(1)));
        assert_eq!(btf.enum_value("e", "X"), Some(7));
        assert_eq!(btf.func_proto("f"), Some((2, true)));
        assert_eq!(btf.struct_size("s"), Some(8));
    }
}
