//! Output formats: the summary model and its JSON contract, and the text rendering.

pub mod summary;
pub mod text;
