//! The subcommands.

pub mod compare;
pub mod doctor;
pub mod floor;
pub mod output;
pub mod record;
pub mod report;
pub mod serve;
pub mod summary;
pub mod workload;
