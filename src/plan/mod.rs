//! Plans as code: the model, TOML parsing, and validation with `file:line:col` diagnostics.
//!
//! Owns: turning plan text into a validated [`Plan`] or the list of every positioned error
//! ([`parse`]), and the one-line [`summary`] of a valid plan. Pure: text in, plan or
//! diagnostics out — no files (`cutover plan check` reads them, in `cli`), clocks, sockets or
//! store.
//!
//! Layout: [`model`] (the validated data), `parse` (top level, `[analysis]`, `[rollback]`),
//! `steps`, `checks` and `mirror` (`[[steps]]`, `[[steps.checks]]`, a step's shadow traffic), `gates`, `condition` and `metric_name` (`[[gates]]`), `reader`
//! `steps` and `checks` (`[[steps]]`, `[[steps.checks]]`), `gates`, `condition`, `metric_name` and `query` (`[[gates]]`), `reader`
//! (typed access to a `toml_edit` document with spans), [`diagnostic`] (the error shape).
//! The keys and their rules are documented for users in `docs/plans.md`.

mod checks;
mod condition;
pub mod diagnostic;
mod gates;
mod metric_name;
mod mirror;
pub mod model;
mod parse;
mod query;
mod reader;
mod steps;

#[cfg(test)]
mod tests;

pub use diagnostic::{render, Diagnostic, WithFile};
pub use model::*;
pub use parse::parse;

/// `N steps to W%, G gates`.
pub fn summary(plan: &Plan) -> String {
    let last = plan.steps.last().map_or(0.0, |s| s.weight.percent());
    let steps = plural(plan.steps.len(), "step");
    let gates = plural(plan.gates.len() + plan.queries.len(), "gate");
    format!("{steps} to {last}%, {gates}")
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
