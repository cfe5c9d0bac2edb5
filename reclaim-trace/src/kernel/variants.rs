//! Which variant of the reclaim/TLB path this kernel has: the facts that change what the
//! probes see, each said with what it means for the figures. `doctor` prints them; the kernel
//! versions named are where each variant was seen (Debian cloud kernels under qemu:
//! 6.1.192, 6.12.118, 7.2.13; and a live 6.18.44).

use serde::Serialize;

use super::{Arch, btf::Layout, kallsyms::Kallsyms};

/// One variant: what it is about, what this kernel has, and what follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub about: &'static str,
    pub found: String,
}

/// What the variants are computed from (a subset of `KernelFacts`, so tests can build it).
pub struct VariantInputs<'a> {
    pub kallsyms: &'a Kallsyms,
    pub layout: &'a Layout,
    pub has_tracepoint: &'a dyn Fn(&str, &str) -> bool,
    pub lru_gen: Option<bool>,
    pub invlpgb: bool,
    pub arch: Arch,
}

pub fn variants(i: &VariantInputs<'_>) -> Vec<Variant> {
    let mut out = Vec::new();
    let v = |about: &'static str, found: String| Variant { about, found };
    let l = i.layout;

    let shrink_list = i.kallsyms.shrink_list_function().unwrap_or("");
    out.push(v(
        "reclaim pass function",
        match (
            shrink_list,
            l.shrink_folio_list_params,
            l.shrink_folio_list_void,
        ) {
            ("", _, _) => "neither shrink_folio_list nor shrink_page_list is in kallsyms \
                           (inlined?): passes come from the vmscan tracepoints"
                .into(),
            (f, Some(5), false) => {
                format!("{f}(folio_list, pgdat, sc, stat, ignore_references) (6.1 .. 6.12)")
            }
            (f, Some(6), false) => format!(
                "{f}(folio_list, pgdat, sc, stat, ignore_references, memcg): the 6-argument \
                 form (6.18, 7.2)"
            ),
            (f, Some(n), true) => format!(
                "{f} with {n} arguments returns void: reclaimed pages are read from \
                 stat->nr_reclaimed (the dirty-folio TLB batching series)"
            ),
            (f, _, _) => format!("{f} (no BTF prototype: fentry impossible, kprobe only)"),
        },
    ));
    out.push(v(
        "pageout",
        match i.kallsyms.unprobeable_reason("pageout") {
            None => "pageout() is a real function: pageouts are its PAGE_SUCCESS returns \
                     (6.1, 6.12)"
                .into(),
            Some(why) => format!(
                "pageout() cannot be probed ({why}; inlined on 6.18 and 7.2): pageouts come \
                 from vmscan:mm_vmscan_write_folio, which fires on the same PAGE_SUCCESS path"
            ),
        },
    ));
    let csd = (i.has_tracepoint)("csd", "csd_queue_cpu");
    let ipi = (i.has_tracepoint)("ipi", "ipi_send_cpu");
    out.push(v(
        "fan-out",
        match (csd, ipi) {
            _ if i.arch == Arch::Arm64 => "arm64: each unmap broadcasts its TLBI (TLBI ...IS) \
                                           to every CPU in hardware; a batched flush is the DSB \
                                           that waits for them: no IPIs, no per-CPU targets \
                                           (fan-out is reported as broadcast)"
                .into(),
            (true, true) => "csd:csd_queue_cpu and ipi:ipi_send_* present (6.5+): real targets \
                             and IPIs per flush"
                .into(),
            (false, true) => "ipi:ipi_send_* present but csd:csd_queue_cpu absent (6.4): IPIs \
                              per flush, fan-out from the batch cpumask"
                .into(),
            (false, false) => "csd:* and ipi:* tracepoints absent (before 6.4/6.5, e.g. \
                               6.1.192): the fan-out histogram is the batch cpumask \
                               (candidate CPUs, precise tier), victims are counted from \
                               tlb_flush reason 1"
                .into(),
            (true, false) => "csd:csd_queue_cpu present, ipi:* absent: real targets, no IPI \
                              count"
                .into(),
        },
    ));
    out.push(v(
        "LRU",
        match i.lru_gen {
            Some(true) => "MGLRU on (the default of Debian's 6.12.118 and 7.2.13): passes come \
                           from evict_folios, which calls shrink_folio_list (the precise tier \
                           sees them; before 6.12 evict_folios emits no lru_shrink_inactive). \
                           pageout() then keeps 0-12% of the folios right after their dirty \
                           flush (dirty_flushes_without_pageout; 0 with MGLRU off)"
                .into(),
            Some(false) => "classic LRU (MGLRU built in but off: Debian 6.1.192's default): \
                            shrink_inactive_list passes"
                .into(),
            None => "classic LRU (no MGLRU)".into(),
        },
    ));
    out.push(v("flush batch", flush_batch(i)));
    out
}

/// Where a batched flush is and what its batch records.
fn flush_batch(i: &VariantInputs<'_>) -> String {
    let l = i.layout;
    if l.batch_empty {
        let functions = match i.kallsyms.unprobeable_reason("try_to_unmap_flush") {
            None => "try_to_unmap_flush and try_to_unmap_flush_dirty",
            Some(_) => "try_to_unmap_flush_dirty (try_to_unmap_flush is not probeable)",
        };
        return format!(
            "struct arch_tlbflush_unmap_batch {{}} is empty and arch_tlbbatch_flush is inline \
             (arm64, 6.5+): a flush is {functions} finding the batch pending"
        );
    }
    format!(
        "struct arch_tlbflush_unmap_batch: cpumask at +{} ({} bytes){}",
        if l.offsets.batch_cpumask == reclaim_trace_common::OFF_NONE {
            "?".to_string()
        } else {
            l.offsets.batch_cpumask.to_string()
        },
        l.cpumask_bytes.map_or("?".into(), |b| b.to_string()),
        match (l.batch_unmapped_pages, i.invlpgb) {
            (true, true) =>
                ", unmapped_pages (6.15+) and the CPU has INVLPGB: batched \
                             flushes may be broadcast without IPIs or tlb_flush events \
                             (counted in flushes_without_ipi)",
            (true, false) => ", unmapped_pages (6.15+; no INVLPGB on this CPU: IPIs)",
            _ => "",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(params: usize, unmapped: bool) -> Layout {
        let mut l = Layout::unavailable("test");
        l.shrink_folio_list_params = Some(params);
        l.cpumask_bytes = Some(1024);
        l.offsets.batch_cpumask = 0;
        l.batch_unmapped_pages = unmapped;
        l
    }

    #[test]
    fn debian_6_1_and_7_2_variants() {
        // 6.1.192: pageout real, no csd/ipi, MGLRU off.
        let k =
            Kallsyms::parse("ffffffff81000000 t shrink_folio_list\nffffffff81000100 t pageout\n");
        let l = layout(5, false);
        let none = |_: &str, _: &str| false;
        let v = variants(&VariantInputs {
            kallsyms: &k,
            layout: &l,
            has_tracepoint: &none,
            lru_gen: Some(false),
            invlpgb: false,
            arch: Arch::X86_64,
        });
        let found = |about: &str| v.iter().find(|x| x.about == about).unwrap().found.clone();
        assert!(found("reclaim pass function").contains("6.1 .. 6.12"));
        assert!(found("pageout").contains("real function"));
        assert!(found("fan-out").contains("batch cpumask"));
        assert!(found("LRU").contains("classic"));
        // 7.2.13: 6 arguments, pageout inlined, csd and ipi, MGLRU on.
        let k = Kallsyms::parse("ffffffff81000000 t shrink_folio_list\n");
        let l = layout(6, true);
        let all = |_: &str, _: &str| true;
        let v = variants(&VariantInputs {
            kallsyms: &k,
            layout: &l,
            has_tracepoint: &all,
            lru_gen: Some(true),
            invlpgb: false,
            arch: Arch::X86_64,
        });
        let found = |about: &str| v.iter().find(|x| x.about == about).unwrap().found.clone();
        assert!(found("reclaim pass function").contains("memcg"));
        assert!(found("pageout").contains("mm_vmscan_write_folio"));
        assert!(found("fan-out").contains("real targets"));
        assert!(found("LRU").contains("MGLRU on"));
        assert!(found("flush batch").contains("unmapped_pages"));
    }
}
