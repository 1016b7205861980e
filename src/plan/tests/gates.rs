//! `[[gates]]`: metrics, conditions, ratio gates, confidence, after, on_fail, names.

use super::*;
use crate::metrics::{MetricKind, MetricRef, Scope};
use crate::plan::{Condition, OnFail};

/// A plan with one gate whose body is `body` (the gate header is on line 4, its first key on
/// line 5).
fn with_gate(body: &str) -> String {
    format!("{MINIMAL}[[gates]]\n{body}")
}

fn metric(scope: Scope, metric: MetricKind) -> MetricRef {
    MetricRef { scope, metric }
}

#[test]
fn gate_defaults_and_values() {
    let plan = ok(&with_gate(
        "name = \"new errors\"\nmetric = \"new.error_rate\"\nmax = 0.02\n",
    ));
    let g = &plan.gates[0];
    assert_eq!(g.name, "new errors");
    assert_eq!(g.metric, metric(Scope::New, MetricKind::ErrorRate));
    assert_eq!(g.condition, Condition::Max(0.02));
    assert_eq!(g.after, 1, "after defaults to 1");
    assert_eq!(g.on_fail, OnFail::Pause, "on_fail defaults to pause");
}

#[test]
fn min_and_ratio_gates() {
    let plan = ok(&with_gate(
        "name = \"probes\"\nmetric = \"users.probe_success\"\nmin = 0.99\nafter = 3\non_fail = \"rollback\"\n\
         [[gates]]\nname = \"slower\"\nmetric = \"new.p99_ms\"\nmax_ratio_of = \"old.p99_ms\"\nratio = 2\n\
         [[gates]]\nname = \"errors vs old\"\nmetric = \"new.error_rate\"\nmax_ratio_of = \"old.error_rate\"\n\
         ratio = 1.5\nconfidence = 0.95\n",
    ));
    assert_eq!(plan.gates[0].condition, Condition::Min(0.99));
    assert_eq!(plan.gates[0].after, 3);
    assert_eq!(plan.gates[0].on_fail, OnFail::Rollback);
    let old_p99 = metric(Scope::Old, MetricKind::P99Ms);
    assert_eq!(
        plan.gates[1].condition,
        Condition::RatioOf {
            of: old_p99,
            ratio: 2.0,
            confidence: None
        }
    );
    let old_err = metric(Scope::Old, MetricKind::ErrorRate);
    assert_eq!(
        plan.gates[2].condition,
        Condition::RatioOf {
            of: old_err,
            ratio: 1.5,
            confidence: Some(0.95)
        }
    );
}

#[test]
fn a_gate_needs_a_name() {
    let d = one(&with_gate("metric = \"new.error_rate\"\nmax = 0.02\n"));
    assert_diag(&d, 4, 1, "gate 1 has no `name`", "name = \"new errors\"");
    let d = one(&with_gate(
        "name = \"\"\nmetric = \"new.error_rate\"\nmax = 0.02\n",
    ));
    assert_diag(&d, 5, 8, "`name` must not be empty", "name = ");
}

#[test]
fn gate_names_are_unique() {
    let d = one(&with_gate(
        "name = \"errors\"\nmetric = \"new.error_rate\"\nmax = 0.02\n[[gates]]\nname = \"errors\"\nmetric = \"old.error_rate\"\nmax = 0.02\n",
    ));
    assert_diag(
        &d,
        9,
        8,
        "gate name \"errors\" is already used at line 5",
        "its own name",
    );
}

#[test]
fn a_gate_needs_a_metric() {
    let d = one(&with_gate("name = \"g\"\nmax = 1\n"));
    assert_diag(
        &d,
        4,
        1,
        "gate \"g\" has no `metric`",
        "metric = \"new.error_rate\"",
    );
}

#[test]
fn unknown_metric_suggests_the_nearest_valid_name() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.errors\"\nmax = 0.1\n",
    ));
    assert_diag(
        &d,
        6,
        10,
        "unknown metric \"new.errors\" in `metric`",
        "did you mean `new.error_rate`?",
    );
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"nwe.p99_ms\"\nmax = 100\n",
    ));
    assert_diag(&d, 6, 10, "unknown metric", "did you mean `new.p99_ms`?");
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"latency\"\nmax = 100\n",
    ));
    assert_diag(
        &d,
        6,
        10,
        "unknown metric \"latency\"",
        "old, new, fallback, users",
    );
}

#[test]
fn a_gate_needs_a_condition() {
    let d = one(&with_gate("name = \"g\"\nmetric = \"new.rps\"\n"));
    assert_diag(
        &d,
        4,
        1,
        "gate \"g\" has no condition",
        "`max = ...`, `min = ...`, or `max_ratio_of",
    );
}

#[test]
fn two_conditions_are_an_error_at_the_second() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.rps\"\nmin = 1\nmax = 100\n",
    ));
    assert_diag(
        &d,
        8,
        1,
        "gate \"g\" has both `min` and `max`",
        "split it into two gates",
    );
}

#[test]
fn a_rate_bound_above_one_suggests_the_fraction() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.error_rate\"\nmax = 2\n",
    ));
    assert_diag(
        &d,
        7,
        7,
        "`max` 2 is above 1, but `error_rate` is a fraction",
        "`max = 0.02`",
    );
}

#[test]
fn a_negative_bound_is_an_error() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.p99_ms\"\nmax = -1\n",
    ));
    assert_diag(&d, 7, 7, "`max` must not be negative", "never below 0");
}

#[test]
fn a_quoted_bound_says_to_remove_the_quotes() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.p99_ms\"\nmax = \"250\"\n",
    ));
    assert_diag(
        &d,
        7,
        7,
        "`max` must be a number, found string",
        "remove the quotes: `max = 250`",
    );
}

#[test]
fn ratio_without_max_ratio_of_is_an_error() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.p99_ms\"\nmax = 300\nratio = 2\n",
    ));
    assert_diag(
        &d,
        8,
        1,
        "`ratio` applies only with `max_ratio_of`",
        "remove `ratio`",
    );
}

#[test]
fn max_ratio_of_needs_a_ratio_above_zero() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.p99_ms\"\nmax_ratio_of = \"old.p99_ms\"\n",
    ));
    assert_diag(&d, 7, 1, "`max_ratio_of` needs a `ratio`", "ratio = 2.0");
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.p99_ms\"\nmax_ratio_of = \"old.p99_ms\"\nratio = 0\n",
    ));
    assert_diag(&d, 8, 9, "`ratio` must be above 0", "ratio = 2.0");
}

#[test]
fn a_ratio_gate_compares_the_same_metric_in_another_scope() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.p99_ms\"\nmax_ratio_of = \"old.p50_ms\"\nratio = 2\n",
    ));
    assert_diag(
        &d,
        7,
        16,
        "compares `new.p99_ms` with `old.p50_ms`, a different metric",
        "\"old.p99_ms\"",
    );
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.p99_ms\"\nmax_ratio_of = \"new.p99_ms\"\nratio = 2\n",
    ));
    assert_diag(
        &d,
        7,
        16,
        "compares `new.p99_ms` with itself",
        "\"old.p99_ms\"",
    );
}

#[test]
fn an_unknown_ratio_metric_suggests_the_nearest() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.p99_ms\"\nmax_ratio_of = \"old.p99\"\nratio = 2\n",
    ));
    assert_diag(
        &d,
        7,
        16,
        "unknown metric \"old.p99\" in `max_ratio_of`",
        "did you mean `old.p99_ms`?",
    );
}

#[test]
fn confidence_only_on_ratio_gates() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.error_rate\"\nmax = 0.1\nconfidence = 0.95\n",
    ));
    assert_diag(
        &d,
        8,
        1,
        "`confidence` applies only to ratio gates",
        "max_ratio_of = \"old.error_rate\"",
    );
}

#[test]
fn confidence_only_on_error_rate_gates() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.p99_ms\"\nmax_ratio_of = \"old.p99_ms\"\nratio = 2\nconfidence = 0.95\n",
    ));
    assert_diag(
        &d,
        9,
        1,
        "only on `error_rate` gates, not `new.p99_ms`",
        "`new.error_rate`",
    );
}

#[test]
fn confidence_must_be_between_a_half_and_one() {
    for (c, col) in [("0.5", 14), ("1", 14), ("1.5", 14)] {
        let d = one(&with_gate(&format!(
            "name = \"g\"\nmetric = \"new.error_rate\"\nmax_ratio_of = \"old.error_rate\"\nratio = 2\nconfidence = {c}\n"
        )));
        assert_diag(
            &d,
            9,
            col,
            "`confidence` must be between 0.5 and 1",
            "confidence = 0.95",
        );
    }
}

#[test]
fn after_must_be_at_least_one() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.rps\"\nmin = 1\nafter = 0\n",
    ));
    assert_diag(
        &d,
        8,
        9,
        "`after` must be a count of at least 1, found 0",
        "after = 1",
    );
}

#[test]
fn unknown_on_fail_suggests_the_near_one() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.rps\"\nmin = 1\non_fail = \"rollbak\"\n",
    ));
    assert_diag(
        &d,
        8,
        11,
        "unknown `on_fail` \"rollbak\"",
        "did you mean `rollback`?",
    );
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.rps\"\nmin = 1\non_fail = \"explode\"\n",
    ));
    assert_diag(
        &d,
        8,
        11,
        "unknown `on_fail` \"explode\"",
        "\"pause\" or \"rollback\"",
    );
}

#[test]
fn unknown_gate_key_suggests_the_near_one() {
    let d = one(&with_gate(
        "name = \"g\"\nmetric = \"new.rps\"\nmin = 1\nonfail = \"pause\"\n",
    ));
    assert_diag(
        &d,
        8,
        1,
        "unknown key `onfail` in [[gates]]",
        "did you mean `on_fail`?",
    );
}
