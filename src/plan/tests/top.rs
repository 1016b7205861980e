//! Top level, `[analysis]`, `[rollback]`, syntax errors, defaults and the text form.

use std::time::Duration;

use super::*;
use crate::plan::{Analysis, Rollback};

#[test]
fn minimal_plan_gets_the_documented_defaults() {
    let plan = ok(MINIMAL);
    assert_eq!(plan.name, "demo");
    assert_eq!(plan.salt, "demo", "salt defaults to the name");
    assert_eq!(plan.analysis, Analysis::default());
    assert_eq!(plan.analysis.interval, Duration::from_secs(1));
    assert_eq!(plan.analysis.window, Duration::from_secs(10));
    assert_eq!(plan.analysis.min_requests, 50);
    assert_eq!(plan.rollback, Rollback::default());
    assert_eq!(plan.rollback.ramp, Duration::from_secs(30));
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.steps[0].hold, Duration::ZERO);
    assert!(!plan.steps[0].approval);
    assert!(plan.gates.is_empty());
}

#[test]
fn explicit_values_are_kept() {
    let plan = ok("name = \"demo\"\nsalt = \"s-1\"\n\
        [analysis]\ninterval = \"500ms\"\nwindow = \"5s\"\nmin_requests = 20\n\
        [rollback]\nramp = \"0s\"\n[[steps]]\nweight = 100\n");
    assert_eq!(plan.salt, "s-1");
    assert_eq!(plan.analysis.interval, Duration::from_millis(500));
    assert_eq!(plan.analysis.window, Duration::from_secs(5));
    assert_eq!(plan.analysis.min_requests, 20);
    assert_eq!(plan.rollback.ramp, Duration::ZERO, "ramp may be 0s");
}

#[test]
fn syntax_error_is_one_positioned_diagnostic() {
    let d = one("name = \"demo\"\nweight = \n");
    assert_eq!(d.line, 2);
    assert!(d.message.starts_with("invalid TOML"), "{d:?}");
    assert!(d.hint.contains("TOML syntax"), "{d:?}");
}

#[test]
fn duplicate_key_is_a_syntax_error_with_its_own_hint() {
    let d = one("name = \"a\"\nname = \"b\"\n[[steps]]\nweight = 100\n");
    assert_eq!(d.line, 2);
    assert!(d.message.contains("duplicate key"), "{d:?}");
    assert!(d.hint.contains("only once"), "{d:?}");
}

#[test]
fn unknown_top_level_key_suggests_the_near_one_and_missing_name_is_reported_too() {
    let diags = errors("nmae = \"demo\"\n[[steps]]\nweight = 100\n");
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert_diag(&diags[1], 1, 1, "the plan has no `name`", "name = ");
    assert_diag(
        &diags[0],
        1,
        1,
        "unknown key `nmae` in the plan",
        "did you mean `name`?",
    );
}

#[test]
fn unknown_key_without_a_near_miss_lists_the_allowed_keys() {
    let d = one(&format!("{MINIMAL}[analysis]\n  zzz = 1\n"));
    assert_diag(
        &d,
        5,
        3,
        "unknown key `zzz` in [analysis]",
        "interval, window, min_requests",
    );
}

#[test]
fn unknown_key_in_analysis_and_rollback() {
    let diags = errors(&format!(
        "{MINIMAL}[analysis]\nwindw = \"5s\"\n[rollback]\nrmap = \"1s\"\n"
    ));
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert_diag(
        &diags[0],
        5,
        1,
        "unknown key `windw`",
        "did you mean `window`?",
    );
    assert_diag(
        &diags[1],
        7,
        1,
        "unknown key `rmap` in [rollback]",
        "did you mean `ramp`?",
    );
}

#[test]
fn empty_name_and_salt_are_errors_at_their_values() {
    let diags = errors("name = \"  \"\nsalt = \"\"\n[[steps]]\nweight = 100\n");
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert_diag(&diags[0], 1, 8, "`name` must not be empty", "name = ");
    assert_diag(&diags[1], 2, 8, "`salt` must not be empty", "salt = ");
}

#[test]
fn name_of_the_wrong_type() {
    let d = one("name = 5\n[[steps]]\nweight = 100\n");
    assert_diag(
        &d,
        1,
        8,
        "`name` must be a string, found integer",
        "in quotes",
    );
}

#[test]
fn zero_interval_is_an_error() {
    let d = one(&format!("{MINIMAL}[analysis]\ninterval = \"0s\"\n"));
    assert_diag(
        &d,
        5,
        12,
        "`interval` must be longer than 0s",
        "interval = \"1s\"",
    );
}

#[test]
fn window_shorter_than_interval_is_an_error_at_window() {
    let d = one(&format!(
        "{MINIMAL}[analysis]\ninterval = \"10s\"\nwindow = \"5s\"\n"
    ));
    assert_diag(
        &d,
        6,
        10,
        "`window` (5s) is shorter than `interval` (10s)",
        "window` >= `interval`",
    );
}

#[test]
fn window_shorter_than_the_default_interval_is_caught_too() {
    let d = one(&format!("{MINIMAL}[analysis]\nwindow = \"100ms\"\n"));
    assert_diag(&d, 5, 10, "shorter than `interval` (1s)", ">=");
}

#[test]
fn an_invalid_window_does_not_also_report_window_shorter_than_interval() {
    let d = one(&format!(
        "{MINIMAL}[analysis]\ninterval = \"30s\"\nwindow = \"soon\"\n"
    ));
    assert_diag(&d, 6, 10, "`window` is not a duration", "\"30s\"");
}

#[test]
fn duration_written_as_a_number_suggests_the_string() {
    let d = one(&format!("{MINIMAL}[rollback]\nramp = 30\n"));
    assert_diag(
        &d,
        5,
        8,
        "`ramp` must be a duration, found integer",
        "`ramp = \"30s\"`",
    );
}

#[test]
fn min_requests_must_be_a_positive_whole_number() {
    let d = one(&format!("{MINIMAL}[analysis]\nmin_requests = 0\n"));
    assert_diag(
        &d,
        5,
        16,
        "`min_requests` must be at least 1",
        "min_requests = 50",
    );
    let d = one(&format!("{MINIMAL}[analysis]\nmin_requests = 2.5\n"));
    assert_diag(
        &d,
        5,
        16,
        "must be a whole number, found float",
        "min_requests = 50",
    );
}

#[test]
fn analysis_must_be_a_table() {
    let d = one("analysis = 5\nname = \"demo\"\n[[steps]]\nweight = 100\n");
    assert_diag(
        &d,
        1,
        12,
        "`analysis` must be a table, found integer",
        "[analysis]",
    );
}

#[test]
fn inline_tables_work_like_header_tables() {
    let plan = ok("name = \"d\"\nanalysis = { window = \"20s\" }\nrollback = { ramp = \"1m\" }\n[[steps]]\nweight = 100\n");
    assert_eq!(plan.analysis.window, Duration::from_secs(20));
    assert_eq!(plan.rollback.ramp, Duration::from_secs(60));
}

#[test]
fn diagnostics_format_with_and_without_a_file() {
    let d = one(&format!("{MINIMAL}[rollback]\nrmap = \"1s\"\n"));
    assert_eq!(
        d.to_string(),
        format!("{}:{}: {} — {}", d.line, d.col, d.message, d.hint)
    );
    let shown = d.with_file("plans/x.toml").to_string();
    assert_eq!(
        shown,
        "plans/x.toml:5:1: unknown key `rmap` in [rollback] — did you mean `ramp`?"
    );
    let bare = Diagnostic {
        hint: String::new(),
        ..d
    };
    assert!(!bare.to_string().contains('—'));
}
