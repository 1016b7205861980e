//! Plans as code: the model, TOML parsing, and validation with `file:line:col` diagnostics.
//!
//! Owns: turning plan text into a validated [`Plan`] or a list of positioned errors. Pure: no
//! I/O beyond what the caller hands in (text and a file name for messages).

pub mod model;

pub use model::*;

/// `cutover plan check`: validate each file, print `file: ok (...)` to `out` for good ones and
/// every `file:line:col: what — how to fix` to `err` for bad ones. True when all are valid.
pub fn check_files(
    files: &[std::path::PathBuf],
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> bool {
    let _ = (files, out, err);
    false
}

/// One positioned problem in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: String,
}

/// Parse and validate plan text (placeholder until the plan branch lands).
pub fn parse(text: &str) -> Result<Plan, Vec<Diagnostic>> {
    let _ = text;
    Err(Vec::new())
}
