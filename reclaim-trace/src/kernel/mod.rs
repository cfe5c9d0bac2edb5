//! Facts about the running kernel and this process, gathered before anything is loaded.
//! Plain data: the probe plan is computed from it by a pure function.

pub mod btf;
pub mod btf_reader;
pub mod kallsyms;
pub mod tracefs;
pub mod variants;

use std::{collections::BTreeMap, fs, path::Path};

use serde::Serialize;

use self::{btf::Layout, kallsyms::Kallsyms, tracefs::EventFormat};

/// Every tracepoint the tool may use, as (category, event).
pub const TRACEPOINTS: &[(&str, &str)] = &[
    ("vmscan", "mm_vmscan_lru_isolate"),
    ("vmscan", "mm_vmscan_lru_shrink_inactive"),
    ("vmscan", "mm_vmscan_reclaim_pages"),
    ("vmscan", "mm_vmscan_write_folio"),
    ("vmscan", "mm_vmscan_direct_reclaim_begin"),
    ("vmscan", "mm_vmscan_direct_reclaim_end"),
    ("vmscan", "mm_vmscan_memcg_reclaim_begin"),
    ("vmscan", "mm_vmscan_memcg_reclaim_end"),
    ("vmscan", "mm_vmscan_node_reclaim_begin"),
    ("vmscan", "mm_vmscan_node_reclaim_end"),
    ("vmscan", "mm_vmscan_memcg_softlimit_reclaim_begin"),
    ("vmscan", "mm_vmscan_memcg_softlimit_reclaim_end"),
    ("tlb", "tlb_flush"),
    ("ipi", "ipi_send_cpu"),
    ("ipi", "ipi_send_cpumask"),
    ("csd", "csd_queue_cpu"),
    ("kmem", "mm_page_free"),
];

/// Linux capability numbers (include/uapi/linux/capability.h).
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Clone, Debug, Serialize)]
pub struct Privileges {
    pub euid: u32,
    pub cap_sys_admin: bool,
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
    /// Enters tracefs, which is mode 0700 on most distributions.
    pub cap_dac_read_search: bool,
    /// Reads /proc/kallsyms addresses when `kernel.kptr_restrict` is 1.
    pub cap_syslog: bool,
    pub sysctls: Sysctls,
}

/// The sysctls that decide what a process without CAP_SYS_ADMIN may do (`None`: unreadable).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sysctls {
    pub kptr_restrict: Option<i64>,
    pub perf_event_paranoid: Option<i64>,
    pub unprivileged_bpf_disabled: Option<i64>,
}

impl Sysctls {
    pub fn current() -> Sysctls {
        let read = |name: &str| {
            fs::read_to_string(format!("/proc/sys/kernel/{name}"))
                .ok()
                .and_then(|v| v.trim().parse().ok())
        };
        Sysctls {
            kptr_restrict: read("kptr_restrict"),
            perf_event_paranoid: read("perf_event_paranoid"),
            unprivileged_bpf_disabled: read("unprivileged_bpf_disabled"),
        }
    }
}

impl Privileges {
    pub fn current() -> Privileges {
        let effective = effective_caps();
        let has = |cap: u32| effective.is_some_and(|e| e & (1u64 << cap) != 0);
        Privileges {
            // SAFETY: geteuid has no preconditions.
            euid: unsafe { libc::geteuid() },
            cap_sys_admin: has(CAP_SYS_ADMIN),
            cap_bpf: has(CAP_BPF),
            cap_perfmon: has(CAP_PERFMON),
            cap_dac_read_search: has(CAP_DAC_READ_SEARCH),
            cap_syslog: has(CAP_SYSLOG),
            sysctls: Sysctls::current(),
        }
    }

    /// Loading tracing programs needs CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON (5.8+).
    pub fn can_trace(&self) -> bool {
        self.cap_sys_admin || (self.cap_bpf && self.cap_perfmon)
    }

    /// Creating cgroups, swap devices and mounting tracefs needs root proper.
    pub fn can_admin(&self) -> bool {
        self.cap_sys_admin
    }

    /// What tracing without root lacks here, each with the reason (empty: nothing). The
    /// least a service needs is CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH, and CAP_SYSLOG
    /// where `kernel.kptr_restrict` is 1 (dist/reclaim-trace.service).
    pub fn missing(&self, tracefs_denied: bool) -> Vec<String> {
        let mut out = Vec::new();
        if !self.can_trace() {
            out.push(
                "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): loading and attaching the programs"
                    .to_string(),
            );
        }
        if tracefs_denied {
            out.push(
                "CAP_DAC_READ_SEARCH: tracefs (/sys/kernel/tracing) is not readable without it"
                    .to_string(),
            );
        }
        match self.sysctls.kptr_restrict {
            Some(1) if !self.cap_syslog => out.push(
                "CAP_SYSLOG: kernel.kptr_restrict=1 hides /proc/kallsyms addresses (the flush \
                 and IPI callbacks the hot programs compare against)"
                    .to_string(),
            ),
            Some(n) if n >= 2 => out.push(
                "kernel.kptr_restrict=2 hides /proc/kallsyms addresses from every process: \
                 set it to 1 (and grant CAP_SYSLOG) or 0"
                    .to_string(),
            ),
            _ => {}
        }
        out
    }
}

/// Effective capability set of this process, from /proc/self/status (`CapEff`).
fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

/// One tracepoint: present or not, and its fields.
#[derive(Clone, Debug, Serialize)]
pub struct TracepointInfo {
    pub present: bool,
    #[serde(skip)]
    pub format: EventFormat,
}

/// The machine architecture, as far as reclaim's TLB flushes differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// A batched flush is `arch_tlbbatch_flush()`: IPIs to the CPUs of the batch's cpumask.
    X86_64,
    /// TLBIs broadcast in hardware at each unmap; `arch_tlbbatch_flush()` is an inline DSB
    /// that waits for them (no IPIs, no cpumask, no `tlb:tlb_flush` event).
    Arm64,
    Other,
}

impl Arch {
    /// From `uname -m`.
    pub fn of_machine(machine: &str) -> Arch {
        match machine {
            "x86_64" => Arch::X86_64,
            "aarch64" | "arm64" => Arch::Arm64,
            _ => Arch::Other,
        }
    }
}

/// Everything the planner needs.
#[derive(Clone, Debug, Serialize)]
pub struct KernelFacts {
    pub release: String,
    pub machine: String,
    pub privileges: Privileges,
    pub tracefs: Option<String>,
    pub tracefs_error: Option<String>,
    pub btf: bool,
    pub btf_error: Option<String>,
    /// `perf_kprobe` PMU present (CONFIG_KPROBES with perf support).
    pub kprobes: bool,
    /// The kernel accepts tracing (fentry/fexit) programs; None when not probed.
    pub fentry_supported: Option<bool>,
    pub kallsyms_addresses_hidden: bool,
    /// `nr_cpu_ids` (from /sys/devices/system/cpu/possible).
    pub possible_cpus: u32,
    pub online_cpus: u32,
    /// MGLRU enabled (`/sys/kernel/mm/lru_gen/enabled` non-zero).
    pub lru_gen: Option<bool>,
    /// CPU advertises INVLPGB (AMD broadcast TLB flush: flushes without IPIs on 6.15+).
    pub invlpgb: bool,
    pub hypervisor: Option<String>,
    pub tracepoints: BTreeMap<String, TracepointInfo>,
    #[serde(skip)]
    pub kallsyms: Kallsyms,
    pub layout: Layout,
    /// Which variant of the reclaim/TLB path this kernel has (doctor prints them).
    pub variants: Vec<variants::Variant>,
}

impl KernelFacts {
    pub fn arch(&self) -> Arch {
        Arch::of_machine(&self.machine)
    }

    /// Gather the facts. Never fails: what cannot be read is recorded as absent, with why.
    pub fn gather(tracefs: Result<&tracefs::Tracefs, &anyhow::Error>) -> KernelFacts {
        let uts = uname();
        let (btf, btf_error, layout) = match btf::KernelBtf::load() {
            Ok(b) => (true, None, Layout::resolve(&b)),
            Err(e) => {
                let why = format!("{e:#}");
                (false, Some(why.clone()), Layout::unavailable(&why))
            }
        };
        let kallsyms = Kallsyms::load().unwrap_or_default();
        let mut tracepoints = BTreeMap::new();
        for (cat, name) in TRACEPOINTS {
            let info = match tracefs {
                Ok(t) if t.has_event(cat, name) => TracepointInfo {
                    present: true,
                    format: t.format(cat, name).unwrap_or_default(),
                },
                _ => TracepointInfo {
                    present: false,
                    format: EventFormat::default(),
                },
            };
            tracepoints.insert(format!("{cat}:{name}"), info);
        }
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let flags = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .unwrap_or("");
        let mut facts = KernelFacts {
            release: uts.0,
            machine: uts.1,
            privileges: Privileges::current(),
            tracefs: tracefs.ok().map(|t| t.root.display().to_string()),
            tracefs_error: tracefs.err().map(|e| format!("{e:#}")),
            btf,
            btf_error,
            kprobes: Path::new("/sys/bus/event_source/devices/kprobe").exists(),
            fentry_supported: None,
            kallsyms_addresses_hidden: kallsyms.addresses_hidden,
            possible_cpus: cpu_list_len("/sys/devices/system/cpu/possible").unwrap_or(1),
            online_cpus: cpu_list_len("/sys/devices/system/cpu/online").unwrap_or(1),
            lru_gen: fs::read_to_string("/sys/kernel/mm/lru_gen/enabled")
                .ok()
                .map(|s| parse_hex_or_dec(s.trim()).unwrap_or(0) != 0),
            invlpgb: flags.split_whitespace().any(|f| f == "invlpgb"),
            hypervisor: fs::read_to_string("/sys/hypervisor/type")
                .ok()
                .map(|s| s.trim().to_string())
                .or_else(|| {
                    flags
                        .split_whitespace()
                        .any(|f| f == "hypervisor")
                        .then(|| "unknown (cpuid hypervisor bit)".to_string())
                }),
            tracepoints,
            kallsyms,
            layout,
            variants: Vec::new(),
        };
        facts.variants = variants::variants(&variants::VariantInputs {
            kallsyms: &facts.kallsyms,
            layout: &facts.layout,
            has_tracepoint: &|c, n| facts.tracepoint(c, n).is_some(),
            lru_gen: facts.lru_gen,
            invlpgb: facts.invlpgb,
            arch: facts.arch(),
        });
        facts
    }

    pub fn tracepoint(&self, cat: &str, name: &str) -> Option<&EventFormat> {
        self.tracepoints
            .get(&format!("{cat}:{name}"))
            .filter(|t| t.present)
            .map(|t| &t.format)
    }
}

fn parse_hex_or_dec(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return ("unknown".into(), "unknown".into());
    }
    let s = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (s(&u.release), s(&u.machine))
}

/// Number of CPUs in a sysfs cpu list such as `0-3,8-11` (the highest id + 1 for `possible`,
/// which is how the kernel sizes nr_cpu_ids).
pub fn cpu_list_len(path: &str) -> Option<u32> {
    parse_cpu_list(fs::read_to_string(path).ok()?.trim())
        .and_then(|cpus| cpus.iter().max().map(|m| m + 1))
}

/// CPU ids in a list such as `0-3,8-11`.
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.trim().parse::<u32>().ok()?..=b.trim().parse().ok()?),
            None => out.push(part.trim().parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8"), Some(vec![0, 1, 2, 3, 8]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("x"), None);
    }
}
