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

/// Σ over CPUs of the `TLB:` row of /proc/interrupts (remote TLB flushes received); `None`
/// when the row is absent (not x86).
pub fn tlb_interrupts(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.trim_start().starts_with("TLB:"))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|w| w.parse::<u64>().ok())
                .sum()
        })
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
}
