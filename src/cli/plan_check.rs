//! `cutover plan check`: reads plan files and reports each one's verdict.
//!
//! Owns: reading the files and the report's lines. Must not touch: the rules — parsing and
//! validation are [`crate::plan`]'s, which stays pure (no filesystem).

use std::io::Write;
use std::path::PathBuf;

/// `cutover plan check`: validate each file, print `FILE: ok — N steps to W%, G gates` to `out`
/// for good ones and every `FILE:LINE:COL: what — how to fix` to `err` for bad ones (an
/// unreadable file is one error naming the file). True when all are valid.
pub fn check_files(files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> bool {
    let mut all_ok = true;
    for file in files {
        let shown = file.display();
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                all_ok = false;
                let _ = writeln!(
                    err,
                    "{shown}: cannot read the plan: {e} — check the path and its permissions"
                );
                continue;
            }
        };
        match crate::plan::parse(&text) {
            Ok(plan) => {
                let _ = writeln!(out, "{shown}: ok — {}", crate::plan::summary(&plan));
            }
            Err(diags) => {
                all_ok = false;
                for d in &diags {
                    let _ = writeln!(err, "{}", d.with_file(&shown));
                }
            }
        }
    }
    all_ok
}
