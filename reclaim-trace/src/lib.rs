//! reclaim-trace: how much TLB flushing Linux page reclaim costs, measured on a live kernel.
//!
//! Layout: `kernel` (facts about the running kernel: tracefs, kallsyms, BTF), `plan` (the probe
//! chosen per signal), `probe` (the only module that uses aya), `aggregate` (the model),
//! `export` (summary JSON and text), `workload` (the built-in reclaim generator), `session`
//! (one tracing run), `cmd` (subcommands), `tui` (the `top` dashboard).

pub mod aggregate;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod export;
pub mod kernel;
pub mod plan;
pub mod probe;
pub mod programs;
pub mod session;
pub mod tui;
pub mod units;
pub mod workload;
