//! Output formats: the summary model and its JSON contract, and the text rendering.

pub mod compare;
pub mod merge;
pub mod prometheus;
pub mod record;
pub mod summary;
pub mod text;
