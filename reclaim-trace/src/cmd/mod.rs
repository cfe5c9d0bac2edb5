//! The subcommands.

pub mod doctor;
pub mod output;
pub mod summary;
pub mod top;
pub mod workload;
