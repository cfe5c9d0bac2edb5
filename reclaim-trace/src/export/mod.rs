//! Output formats: the summary model and its JSON contract, and the text rendering.

#[cfg(test)]
mod agreement;
pub mod compare;
pub mod merge;
pub mod prometheus;
pub mod record;
pub mod summary;
pub mod text;
