//! `reclaim-trace doctor`: the kernel, privileges, and the probe for every signal.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use anyhow::Result;
use serde::Serialize;

use crate::{
    export::summary::PlanRow,
    kernel::{KernelFacts, Privileges, tracefs::Tracefs},
    plan::{self, Failures, ProbeMode},
    probe::{AttachOutcome, Tracer, TracerOptions, object_embedded},
    session::{gather_facts, require_privileges},
};

#[derive(Serialize)]
struct Report<'a> {
    kernel: &'a KernelFacts,
    probe_mode: String,
    /// Whether the plan was verified by loading and attaching (root only).
    verified_by_attach: bool,
    plan: Vec<PlanRow>,
    attach: Vec<AttachOutcome>,
    load_attach_s: Option<f64>,
    /// Anomalies the programs counted in [`WATCH`] attached (root only), by kind: whether
    /// this kernel surprises their state machines.
    anomalies: Option<BTreeMap<String, u64>>,
    error: Option<String>,
}

/// How long doctor leaves the programs attached to see anomalies.
const WATCH: Duration = Duration::from_secs(1);

/// The anomalies counted while the programs stay attached for [`WATCH`]; their first log
/// records are forwarded to the logger (`-v`).
fn watch_anomalies(tracer: &mut Tracer) -> Result<BTreeMap<String, u64>> {
    let before = tracer.snapshot()?.anomalies();
    std::thread::sleep(WATCH);
    if let Some(mut l) = tracer.take_kernel_log() {
        l.flush();
    }
    let after = tracer.snapshot()?.anomalies();
    Ok(after
        .into_iter()
        .map(|(k, v)| {
            let d = v.saturating_sub(before.get(&k).copied().unwrap_or(0));
            (k, d)
        })
        .collect())
}

pub fn run(json: bool, mode: ProbeMode) -> Result<()> {
    let facts = gather_facts();
    let privileges = Privileges::current();
    let mut error = None;
    let mut anomalies = None;
    // Loading is the only way to know what the kernel really accepts (fentry can be refused at
    // load time); without privileges, show the plan the facts predict.
    let (plan_rows, mode_str, attach, verified, t) = match require_privileges(&privileges, false)
        .and_then(|()| {
            if object_embedded() {
                Tracer::start(
                    &facts,
                    &TracerOptions {
                        mode,
                        extra_flags: 0,
                        no_stale_window: false,
                        ring_buffer_bytes: 0,
                    },
                )
            } else {
                anyhow::bail!("binary built without eBPF programs")
            }
        }) {
        Ok(mut tracer) => {
            anomalies = watch_anomalies(&mut tracer)
                .map_err(|e| log::warn!("reading the anomaly counters failed: {e:#}"))
                .ok();
            (
                PlanRow::rows(&tracer.plan),
                tracer.plan.probe_mode().to_string(),
                tracer.outcomes.clone(),
                true,
                Some(tracer.load_attach_s),
            )
        }
        Err(e) => {
            error = Some(format!("{e:#}"));
            match plan::plan(&facts, mode, &Failures::default()) {
                Ok(p) => (
                    PlanRow::rows(&p),
                    p.probe_mode().to_string(),
                    vec![],
                    false,
                    None,
                ),
                Err(e) => (vec![], "none".into(), vec![], false, None)
                    .tap(|_| error = Some(e.to_string())),
            }
        }
    };
    let report = Report {
        kernel: &facts,
        probe_mode: mode_str,
        verified_by_attach: verified,
        plan: plan_rows,
        attach,
        load_attach_s: t,
        anomalies,
        error,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&Self)) -> Self {
        f(&self);
        self
    }
}
impl<T> Tap for T {}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn render(r: &Report<'_>) -> String {
    let mut o = String::new();
    render_kernel(&mut o, r.kernel);
    render_plan(&mut o, r);
    o
}

/// Capabilities held and missing, and the sysctls that decide them.
fn render_privileges(o: &mut String, p: &Privileges) {
    let _ = writeln!(
        o,
        "privileges    euid {}  CAP_SYS_ADMIN {}  CAP_BPF {}  CAP_PERFMON {}  \
         CAP_DAC_READ_SEARCH {}  CAP_SYSLOG {}",
        p.euid,
        yes(p.cap_sys_admin),
        yes(p.cap_bpf),
        yes(p.cap_perfmon),
        yes(p.cap_dac_read_search),
        yes(p.cap_syslog)
    );
    let show = |v: Option<i64>| v.map_or("?".to_string(), |v| v.to_string());
    let s = &p.sysctls;
    let _ = writeln!(
        o,
        "sysctls       kernel.perf_event_paranoid={}  kernel.unprivileged_bpf_disabled={}  \
         kernel.kptr_restrict={}",
        show(s.perf_event_paranoid),
        show(s.unprivileged_bpf_disabled),
        show(s.kptr_restrict)
    );
    for m in p.missing(Tracefs::denied().is_some()) {
        let _ = writeln!(o, "  missing: {m}");
    }
}

/// What this kernel offers: privileges, tracefs, BTF, kprobes, tracepoints, layout.
fn render_kernel(o: &mut String, k: &KernelFacts) {
    let _ = writeln!(o, "kernel        Linux {} ({})", k.release, k.machine);
    let _ = writeln!(
        o,
        "cpus          {} online, {} possible{}",
        k.online_cpus,
        k.possible_cpus,
        k.hypervisor
            .as_deref()
            .map(|h| format!(", hypervisor: {h}"))
            .unwrap_or_default()
    );
    render_privileges(o, &k.privileges);
    let _ = writeln!(
        o,
        "tracefs       {}",
        k.tracefs
            .clone()
            .or_else(|| k.tracefs_error.clone())
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "BTF           {}",
        if k.btf {
            "/sys/kernel/btf/vmlinux".to_string()
        } else {
            k.btf_error.clone().unwrap_or_default()
        }
    );
    let _ = writeln!(o, "kprobes       {}", yes(k.kprobes));
    let _ = writeln!(
        o,
        "MGLRU         {}    INVLPGB {}",
        k.lru_gen.map_or("absent", |b| if b { "on" } else { "off" }),
        yes(k.invlpgb)
    );
    let present: Vec<&str> = k
        .tracepoints
        .iter()
        .filter(|(_, t)| t.present)
        .map(|(n, _)| n.as_str())
        .collect();
    let missing: Vec<&str> = k
        .tracepoints
        .iter()
        .filter(|(_, t)| !t.present)
        .map(|(n, _)| n.as_str())
        .collect();
    let _ = writeln!(
        o,
        "tracepoints   {} present; missing: {}",
        present.len(),
        if missing.is_empty() {
            "none".to_string()
        } else {
            missing.join(", ")
        }
    );
    let l = &k.layout;
    let _ = writeln!(
        o,
        "layout        shrink_folio_list: {}; struct cpumask {} bytes; BTF functions: {}",
        match (l.shrink_folio_list_params, l.shrink_folio_list_void) {
            (Some(n), true) => format!("{n} args, void (reclaimed in stat->nr_reclaimed)"),
            (Some(n), false) => format!("{n} args, returns reclaimed pages"),
            (None, _) => "not in BTF".into(),
        },
        l.cpumask_bytes.map_or("?".into(), |b| b.to_string()),
        l.funcs.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    for v in &k.variants {
        let _ = writeln!(o, "variant       {}: {}", v.about, v.found);
    }
    if !l.missing.is_empty() {
        let _ = writeln!(
            o,
            "              missing from BTF: {}",
            l.missing.join(", ")
        );
    }
}

/// The probe plan per signal, and what failed to attach.
fn render_plan(o: &mut String, r: &Report<'_>) {
    let _ = writeln!(
        o,
        "\nprobe plan    mode {}{}",
        r.probe_mode,
        if r.verified_by_attach {
            format!(
                " (verified: loaded and attached in {:.2} s)",
                r.load_attach_s.unwrap_or(0.0)
            )
        } else {
            " (predicted, not verified by loading)".into()
        }
    );
    for row in &r.plan {
        let _ = writeln!(o, "  {:<18} {:<10} {}", row.signal, row.tier, row.source);
        if let Some(n) = &row.note {
            let _ = writeln!(o, "  {:<18} {:<10} ↳ {}", "", "", n);
        }
    }
    let failed: Vec<&AttachOutcome> = r.attach.iter().filter(|a| !a.ok).collect();
    for a in failed {
        let _ = writeln!(
            o,
            "  attach failed: {} → {}: {}",
            a.program,
            a.target,
            a.error.as_deref().unwrap_or("")
        );
    }
    if let Some(a) = &r.anomalies {
        let seen: Vec<String> = a
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            o,
            "  anomalies in {} s attached: {}",
            WATCH.as_secs(),
            if seen.is_empty() {
                "none".into()
            } else {
                format!("{} (-v logs the first ones)", seen.join(", "))
            }
        );
    }
    if let Some(e) = &r.error {
        let _ = writeln!(o, "\nnote: {e}");
    }
}
