//! Unit tests of plan parsing and validation: one test per rule, asserting the position (line
//! AND column) and the hint of each diagnostic.

mod checks;
mod gates;
mod steps;
mod top;

use super::{parse, Diagnostic, Plan};

/// The smallest valid plan; tests append to it.
const MINIMAL: &str = "name = \"demo\"\n[[steps]]\nweight = 100\n";

fn ok(text: &str) -> Plan {
    match parse(text) {
        Ok(plan) => plan,
        Err(diags) => panic!("expected a valid plan, got {diags:#?}"),
    }
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse(text) {
        Ok(plan) => panic!("expected errors, got {plan:#?}"),
        Err(diags) => diags,
    }
}

/// The only diagnostic of `text`.
fn one(text: &str) -> Diagnostic {
    let diags = errors(text);
    assert_eq!(diags.len(), 1, "expected exactly one error: {diags:#?}");
    diags.into_iter().next().unwrap()
}

/// Asserts position, a fragment of the message and a fragment of the hint.
#[track_caller]
fn assert_diag(d: &Diagnostic, line: usize, col: usize, message: &str, hint: &str) {
    assert_eq!((d.line, d.col), (line, col), "position of {d:#?}");
    assert!(
        d.message.contains(message),
        "message {:?} lacks {message:?}",
        d.message
    );
    assert!(d.hint.contains(hint), "hint {:?} lacks {hint:?}", d.hint);
}
