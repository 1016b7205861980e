//! Plans as code: the model, TOML parsing, and validation with `file:line:col` diagnostics.
//!
//! Owns: turning plan text into a validated [`Plan`] or the list of every positioned error
//! ([`parse`]), and the `cutover plan check` report ([`check_files`]). Pure apart from
//! `check_files` reading the files it is given: no clocks, sockets or store.
//!
//! Layout: [`model`] (the validated data), `parse` (top level, `[analysis]`, `[rollback]`),
//! `steps` and `checks` (`[[steps]]`, `[[steps.checks]]`), `gates`, `condition` and `metric_name` (`[[gates]]`), `reader`
//! (typed access to a `toml_edit` document with spans), [`diagnostic`] (the error shape).
//! The keys and their rules are documented for users in `docs/plans.md`.

mod checks;
mod condition;
pub mod diagnostic;
mod gates;
mod metric_name;
pub mod model;
mod parse;
mod reader;
mod steps;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::PathBuf;

pub use diagnostic::{render, Diagnostic, WithFile};
pub use model::*;
pub use parse::parse;

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
        match parse(&text) {
            Ok(plan) => {
                let _ = writeln!(out, "{shown}: ok — {}", summary(&plan));
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

/// `N steps to W%, G gates`.
pub fn summary(plan: &Plan) -> String {
    let last = plan.steps.last().map_or(0.0, |s| s.weight.percent());
    let steps = plural(plan.steps.len(), "step");
    let gates = plural(plan.gates.len(), "gate");
    format!("{steps} to {last}%, {gates}")
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
