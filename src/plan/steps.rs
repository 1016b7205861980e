//! `[[steps]]`: weights that rise strictly within (0, 100] % (or stay, on a step that
//! mirrors), holds, approvals, the pre-flight checks of each step (read by [`super::checks`])
//! and its shadow traffic (read by [`super::mirror`]).

use std::time::Duration;

use super::checks;
use super::mirror;
use super::model::bounds::MAX_HOLD;
use super::model::Step;
use super::reader::{Reader, Section};
use crate::router::Weight;

const STEP_KEYS: &[&str] = &[
    "weight",
    "hold",
    "approval",
    "checks",
    "mirror",
    "compare",
    "headroom_check",
];

/// Every step of the plan; reports a missing or empty `steps`.
pub(super) fn read(r: &mut Reader<'_>, root: &Section<'_>) -> Vec<Step> {
    let Some(field) = root.field("steps") else {
        r.error(
            0,
            "the plan has no steps",
            "add at least one `[[steps]]` table, e.g. `[[steps]]` then `weight = 100`",
        );
        return Vec::new();
    };
    let Some(sections) = r.tables(&field, "[[steps]]") else {
        return Vec::new();
    };
    if sections.is_empty() {
        r.error(
            field.at,
            "`steps` is empty",
            "add at least one `[[steps]]` table, e.g. `[[steps]]` then `weight = 100`",
        );
    }
    // The highest valid weight so far, as written (for messages) and in basis points.
    let mut previous: Option<(f64, Weight)> = None;
    let mut steps = Vec::with_capacity(sections.len());
    let mut last_weight_at = None;
    for (i, section) in sections.iter().enumerate() {
        last_weight_at = section.field("weight").map(|f| f.at);
        section.check_keys(r, STEP_KEYS);
        let n = i + 1;
        let (mirror, compare) = mirror::read(r, section, n);
        let weight = read_weight(r, section, n, &mut previous, mirror > Weight::ZERO);
        let hold = section
            .field("hold")
            .and_then(|f| r.bounded_duration(&f, Duration::ZERO, MAX_HOLD, "10m"))
            .unwrap_or(Duration::ZERO);
        let approval = section
            .field("approval")
            .and_then(|f| r.boolean(&f))
            .unwrap_or(false);
        let headroom_check = section
            .field("headroom_check")
            .and_then(|f| r.boolean(&f))
            .unwrap_or(true);
        let checks = match section.field("checks") {
            Some(f) => r
                .tables(&f, "[[steps.checks]]")
                .map(|cs| cs.iter().filter_map(|c| checks::read(r, c)).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        steps.push(Step {
            weight: weight.unwrap_or(Weight::ZERO),
            hold,
            approval,
            checks,
            mirror,
            compare,
            headroom_check,
        });
    }
    // `completed` means every user is on NEW: a plan that stops short could never say so.
    if let (Some((pct, last)), Some(at)) = (previous, last_weight_at) {
        if last != Weight::FULL && steps.last().is_some_and(|s| s.weight == last) {
            r.error(
                at,
                format!("the last step's `weight` is {pct}, not 100"),
                "a run completes only when every user is on NEW: end with a step at `weight = 100` \
                 (to stop part-way, pause or abort the run there instead)",
            );
        }
    }
    steps
}

fn read_weight(
    r: &mut Reader<'_>,
    section: &Section<'_>,
    n: usize,
    previous: &mut Option<(f64, Weight)>,
    mirrors: bool,
) -> Option<Weight> {
    let Some(f) = section.field("weight") else {
        r.error(
            section.at,
            format!("step {n} has no `weight`"),
            "add `weight = <percent of users on NEW>`, e.g. `weight = 10`",
        );
        return None;
    };
    let pct = r.number(&f, "10")?;
    // A step that only mirrors moves no user: `weight = 0` with `mirror` above 0.
    if mirrors && (pct == 0.0 || previous.is_some_and(|(p, _)| pct <= p)) {
        return mirror::keep_weight(r, &f, n, pct, previous);
    }
    if pct <= 0.0 || pct > 100.0 {
        r.error(
            f.at,
            format!("step {n}: `weight` {pct} is outside 0 < weight <= 100"),
            "weights are percent of users on NEW: use a value above 0 and at most 100 (or \
             `weight = 0` on a step that only mirrors, with `mirror` above 0)",
        );
        return None;
    }
    let weight = Weight::from_percent(pct);
    if weight == Weight::ZERO {
        r.error(
            f.at,
            format!("step {n}: `weight` {pct} rounds to 0 (weights are kept to 0.01 %)"),
            "use a weight of at least 0.01",
        );
        return None;
    }
    if let Some((prev_pct, prev)) = *previous {
        if weight <= prev {
            r.error(
                f.at,
                format!("step {n}: `weight` {pct} is not above the previous step's weight {prev_pct}"),
                format!("weights must rise from step to step: use a weight above {prev_pct}, or reorder the steps"),
            );
            return None;
        }
    }
    *previous = Some((pct, weight));
    Some(weight)
}
