//! `[[steps]]`: weights, holds, approvals.

use std::time::Duration;

use super::*;
use crate::router::Weight;

const HEAD: &str = "name = \"demo\"\n";

#[test]
fn steps_keep_weight_hold_and_approval() {
    let plan = ok(&format!(
        "{HEAD}[[steps]]\nweight = 2.5\nhold = \"30s\"\n[[steps]]\nweight = 50\napproval = true\n[[steps]]\nweight = 100\n"
    ));
    let weights: Vec<Weight> = plan.steps.iter().map(|s| s.weight).collect();
    assert_eq!(
        weights,
        [Weight::from_bp(250), Weight::from_bp(5000), Weight::FULL]
    );
    assert_eq!(plan.steps[0].hold, Duration::from_secs(30));
    assert_eq!(plan.steps[1].hold, Duration::ZERO, "hold defaults to 0s");
    assert!(plan.steps[1].approval);
    assert!(!plan.steps[2].approval);
}

#[test]
fn steps_may_be_an_array_of_inline_tables() {
    let plan = ok(&format!(
        "{HEAD}steps = [{{ weight = 50 }}, {{ weight = 100, hold = \"0s\" }}]\n"
    ));
    assert_eq!(plan.steps.len(), 2);
}

#[test]
fn a_plan_without_steps_is_an_error() {
    let d = one(HEAD);
    assert_diag(&d, 1, 1, "the plan has no steps", "[[steps]]");
}

#[test]
fn an_empty_steps_array_is_an_error_at_it() {
    let d = one(&format!("{HEAD}steps = []\n"));
    assert_diag(&d, 2, 9, "`steps` is empty", "[[steps]]");
}

#[test]
fn steps_as_a_single_table_asks_for_double_brackets() {
    let d = one(&format!("{HEAD}[steps]\nweight = 100\n"));
    assert_diag(
        &d,
        2,
        1,
        "`steps` must be an array of tables, found table",
        "double brackets",
    );
}

#[test]
fn a_step_without_weight_is_an_error_at_its_header() {
    let d = one(&format!(
        "{HEAD}[[steps]]\nweight = 10\n\n[[steps]]\nhold = \"1s\"\n"
    ));
    assert_diag(&d, 5, 1, "step 2 has no `weight`", "weight = 10");
}

#[test]
fn a_quoted_weight_says_to_remove_the_quotes() {
    let d = one(&format!("{HEAD}[[steps]]\nweight = \"5\"\n"));
    assert_diag(
        &d,
        3,
        10,
        "`weight` must be a number, found string",
        "remove the quotes: `weight = 5`",
    );
}

#[test]
fn weights_outside_0_to_100_are_errors() {
    for (w, col) in [("0", 10), ("-5", 10), ("100.5", 10), ("250", 10)] {
        let d = one(&format!("{HEAD}[[steps]]\nweight = {w}\n"));
        assert_diag(&d, 3, col, "is outside 0 < weight <= 100", "at most 100");
    }
}

#[test]
fn a_weight_below_a_basis_point_is_an_error() {
    let d = one(&format!("{HEAD}[[steps]]\nweight = 0.001\n"));
    assert_diag(&d, 3, 10, "rounds to 0", "at least 0.01");
}

#[test]
fn a_falling_weight_is_an_error_naming_the_previous_weight() {
    let diags = errors(&format!(
        "{HEAD}[[steps]]\nweight = 10\n[[steps]]\nweight = 25\n[[steps]]\n  weight = 5\n[[steps]]\nweight = 100\n"
    ));
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_diag(
        &diags[0],
        7,
        12,
        "step 3: `weight` 5 is not above the previous step's weight 25",
        "use a weight above 25",
    );
}

#[test]
fn an_equal_weight_is_not_an_increase() {
    let d = one(&format!(
        "{HEAD}[[steps]]\nweight = 50\n[[steps]]\nweight = 50.0\n"
    ));
    assert_diag(
        &d,
        5,
        10,
        "step 2: `weight` 50 is not above the previous step's weight 50",
        "above 50",
    );
}

#[test]
fn approval_must_be_a_boolean() {
    let d = one(&format!(
        "{HEAD}[[steps]]\nweight = 100\napproval = \"true\"\n"
    ));
    assert_diag(
        &d,
        4,
        12,
        "`approval` must be true or false, found string",
        "remove the quotes",
    );
    let d = one(&format!("{HEAD}[[steps]]\nweight = 100\napproval = 1\n"));
    assert_diag(
        &d,
        4,
        12,
        "`approval` must be true or false, found integer",
        "approval = true",
    );
}

#[test]
fn hold_may_be_zero_but_must_be_a_duration() {
    ok(&format!("{HEAD}[[steps]]\nweight = 100\nhold = \"0s\"\n"));
    let d = one(&format!(
        "{HEAD}[[steps]]\nweight = 100\nhold = \"5 parsecs\"\n"
    ));
    assert_diag(&d, 4, 8, "`hold` is not a duration", "\"500ms\"");
}

#[test]
fn every_error_of_a_plan_is_reported_at_once() {
    let diags = errors(&format!(
        "{HEAD}[[steps]]\nwieght = 10\n[[steps]]\nweight = 30\n[[steps]]\nweight = 20\nhold = 5\n"
    ));
    assert_eq!(diags.len(), 4, "{diags:#?}");
    assert_diag(&diags[0], 2, 1, "step 1 has no `weight`", "weight =");
    assert_diag(
        &diags[1],
        3,
        1,
        "unknown key `wieght` in [[steps]]",
        "did you mean `weight`?",
    );
    assert_diag(
        &diags[2],
        7,
        10,
        "`weight` 20 is not above the previous step's weight 30",
        "above 30",
    );
    assert_diag(
        &diags[3],
        8,
        8,
        "`hold` must be a duration, found integer",
        "\"5s\"",
    );
}

proptest::proptest! {
    /// Rising weights written with up to two decimals parse to exactly those basis points; swapping
    /// two neighbours gives exactly one error, at the later one's value, naming the earlier one.
    #[test]
    fn rising_weights_parse_and_a_swap_is_pinpointed(
        set in proptest::collection::btree_set(1u32..10_000, 1..7),
        swap_seed in 0usize..100,
    ) {
        // A valid plan ends at 100 %.
        let bps: Vec<u32> = set.into_iter().chain([10_000]).collect();
        let render = |bps: &[u32]| {
            let mut text = HEAD.to_owned();
            for bp in bps {
                text.push_str(&format!("[[steps]]\nweight = {}\n", f64::from(*bp) / 100.0));
            }
            text
        };
        let plan = ok(&render(&bps));
        let parsed: Vec<u32> = plan.steps.iter().map(|s| s.weight.bp()).collect();
        proptest::prop_assert_eq!(&parsed, &bps);

        let i = swap_seed % (bps.len() - 1);
        let mut swapped = bps.clone();
        swapped.swap(i, i + 1);
        let diags = errors(&render(&swapped));
        proptest::prop_assert_eq!(diags.len(), 1);
        // HEAD is one line; step k (0-based) has its weight on line 3 + 2k, value at column 10.
        proptest::prop_assert_eq!((diags[0].line, diags[0].col), (3 + 2 * (i + 1), 10));
        let previous = format!("weight {}", f64::from(bps[i + 1]) / 100.0);
        proptest::prop_assert!(diags[0].message.contains(&previous), "{:?}", diags[0]);
    }
}

#[test]
fn a_plan_that_stops_short_of_100_is_refused_and_says_why() {
    let d = one("name = \"x\"\n[[steps]]\nweight = 10\n[[steps]]\nweight = 50\n");
    assert_diag(
        &d,
        5,
        10,
        "the last step's `weight` is 50, not 100",
        "a run completes only when every user is on NEW",
    );
}

#[test]
fn headroom_check_is_on_unless_a_step_turns_it_off() {
    let plan = ok(&format!(
        "{HEAD}[[steps]]\nweight = 50\n[[steps]]\nweight = 100\nheadroom_check = false\n"
    ));
    assert!(plan.steps[0].headroom_check);
    assert!(!plan.steps[1].headroom_check);
    let d = one(&format!(
        "{HEAD}[[steps]]\nweight = 100\nheadroom_check = \"no\"\n"
    ));
    assert_diag(&d, 4, 18, "true or false", "headroom_check = true");
}
