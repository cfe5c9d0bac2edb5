//! The kernel's own counters as text (/proc/vmstat, memory.stat, /proc/interrupts): the
//! independent figures the tool, its tests and `xtask vm` check the traced ones against,
//! parsed one way everywhere.

/// The `key value` lines of /proc/vmstat or a memory.stat file; lines whose value is not an
/// unsigned integer are skipped.
pub fn key_values(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        Some((it.next()?, it.next()?.parse().ok()?))
    })
}

/// Σ over CPUs of the first /proc/interrupts row that `is_row` picks (the per-CPU counts after
/// its label, without the description).
fn row_sum(text: &str, is_row: impl Fn(&str) -> bool) -> Option<u64> {
    text.lines().find(|l| is_row(l)).map(|l| {
        l.split_whitespace()
            .skip(1)
            .map_while(|w| w.parse::<u64>().ok())
            .sum()
    })
}

/// Σ over CPUs of the `TLB:` row of /proc/interrupts (remote TLB flushes received); `None`
/// when the row is absent (not x86).
pub fn tlb_interrupts(text: &str) -> Option<u64> {
    row_sum(text, |l| l.trim_start().starts_with("TLB:"))
}

/// Σ over CPUs of the "Function call interrupts" row (x86 `CAL:`, arm64 `IPI1:`): the
/// cross-CPU calls received, among them any TLB flush sent by IPI. `None` when absent.
pub fn function_call_interrupts(text: &str) -> Option<u64> {
    row_sum(text, |l| l.trim_end().ends_with("Function call interrupts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmstat_lines() {
        let text = "pgsteal_kswapd 12\npswpout 7\nnr_foo x\n\nthp_swpout 18446744073709551615\n";
        let mut it = key_values(text);
        assert_eq!(it.next(), Some(("pgsteal_kswapd", 12)));
        assert_eq!(it.next(), Some(("pswpout", 7)));
        assert_eq!(it.next(), Some(("thp_swpout", u64::MAX)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn tlb_row_summed_over_cpus_without_the_description() {
        let text = "           CPU0       CPU1\n  0:         31          0   IO-APIC   2-edge      timer\n TLB:      45138      51008   TLB shootdowns\n";
        assert_eq!(tlb_interrupts(text), Some(96146));
        assert_eq!(tlb_interrupts("  0: 1 2 timer\n"), None);
    }

    #[test]
    fn function_call_row_on_arm64_and_x86() {
        // Debian 6.12.118 arm64 under qemu -M virt (trimmed).
        let arm64 = "           CPU0       CPU1\nIPI0:        67         49       Rescheduling interrupts\nIPI1:       764        632       Function call interrupts\n";
        assert_eq!(function_call_interrupts(arm64), Some(1396));
        let x86 =
            " CAL:       1000        234   Function call interrupts\n TLB:  5 5   TLB shootdowns\n";
        assert_eq!(function_call_interrupts(x86), Some(1234));
        assert_eq!(function_call_interrupts(" TLB: 5 5 TLB shootdowns\n"), None);
    }
}
