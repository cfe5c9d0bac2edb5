//! The subcommands.

pub mod compare;
pub mod dist;
pub mod doctor;
pub mod floor;
pub mod output;
pub mod record;
pub mod report;
pub mod serve;
pub mod summary;
pub mod top;
pub mod workload;

use crate::{cli::SessionArgs, probe::TracerOptions, session::SessionOptions};

/// The session every tracing command starts: its probe mode, and the built-in workload when
/// one was asked for.
pub(crate) fn session_options(args: &SessionArgs, bpf_stats: bool) -> SessionOptions {
    let SessionArgs {
        workload,
        tuning,
        probe,
    } = args;
    SessionOptions {
        tracer: TracerOptions {
            mode: probe.probe_mode,
            extra_flags: 0,
            no_stale_window: probe.no_stale_window,
            ring_buffer_bytes: probe.ring_buffer_size,
        },
        workload: workload.map(|k| tuning.options(k, None)),
        bpf_stats,
    }
}
