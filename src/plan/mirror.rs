//! A step's shadow traffic: `mirror` (percent of OLD's users whose requests are also copied to
//! NEW) and `compare` (NEW's answers to the copies compared with OLD's), and the one change they
//! make to the weight rule — a step that mirrors may keep the previous weight, or stay at
//! `weight = 0`, so a plan can load-test NEW before any user moves.
//!
//! Owns: reading those two keys and that exception. Must not touch: the rest of a step
//! (`super::steps`), the data path that sends the copies (`crate::proxy::mirror`).

use super::model::{Gate, Step};
use super::reader::{Field, Reader, Section};
use crate::metrics::MetricKind;
use crate::router::Weight;

/// A step's `mirror` (zero when absent) and `compare`.
pub(super) fn read(r: &mut Reader<'_>, section: &Section<'_>, n: usize) -> (Weight, bool) {
    let mirror = section
        .field("mirror")
        .and_then(|f| {
            let pct = r.number(&f, "25")?;
            if !(0.0..=100.0).contains(&pct) {
                r.error(
                    f.at,
                    format!("step {n}: `mirror` {pct} is outside 0 <= mirror <= 100"),
                    "`mirror` is the percent of OLD's users whose requests are copied to NEW: \
                     use a value from 0 to 100",
                );
                return None;
            }
            Some(Weight::from_percent(pct))
        })
        .unwrap_or(Weight::ZERO);
    let compare = section
        .field("compare")
        .and_then(|f| {
            let on = r.boolean(&f)?;
            if on && mirror == Weight::ZERO {
                r.error(
                    f.at,
                    format!("step {n}: `compare = true` without `mirror`"),
                    "only copies are compared: add `mirror = <percent of OLD's users>` to this \
                     step, or remove `compare`",
                );
                return None;
            }
            Some(on)
        })
        .unwrap_or(false);
    (mirror, compare)
}

/// The weight of a step that mirrors and moves no user: `weight = 0` before any user has
/// moved, or the previous step's weight again. A weight below the previous one is refused as
/// on any step.
pub(super) fn keep_weight(
    r: &mut Reader<'_>,
    f: &Field<'_>,
    n: usize,
    pct: f64,
    previous: &mut Option<(f64, Weight)>,
) -> Option<Weight> {
    match *previous {
        Some((prev_pct, _)) if pct < prev_pct => {
            r.error(
                f.at,
                format!("step {n}: `weight` {pct} is below the previous step's weight {prev_pct}"),
                format!(
                    "weights never fall from step to step: a step that mirrors may keep \
                     {prev_pct}, or rise above it"
                ),
            );
            None
        }
        Some((_, prev)) => Some(prev),
        None => {
            *previous = Some((pct, Weight::ZERO));
            Some(Weight::ZERO)
        }
    }
}

/// A gate on `mirror.mismatch_rate` needs a step that compares: without one no copy is ever
/// compared, and the gate would wait for evidence forever (or, outside mirror steps, pass by
/// design without ever judging). Reported at the gate's `metric`.
pub(super) fn check_compared(
    r: &mut Reader<'_>,
    root: &Section<'_>,
    steps: &[Step],
    gates: &[Gate],
) {
    let judges_mismatches = |g: &Gate| g.metric.metric == MetricKind::MismatchRate;
    if steps.iter().any(|s| s.compare) || !gates.iter().any(judges_mismatches) {
        return;
    }
    let Some(field) = root.field("gates") else {
        return;
    };
    let Some(sections) = r.tables(&field, "[[gates]]") else {
        return;
    };
    for metric in sections.iter().filter_map(|s| s.field("metric")) {
        if metric
            .item
            .as_str()
            .is_some_and(|m| m.ends_with(".mismatch_rate"))
        {
            r.error(
                metric.at,
                "`mirror.mismatch_rate` is judged, but no step compares answers",
                "add `compare = true` to the steps that mirror (with `mirror` above 0), or \
                 remove this gate",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::parse;
    use crate::router::Weight;

    #[test]
    fn mirror_steps_ramp_before_users_move() {
        let plan = parse(
            "name = \"p\"\n\
             [[steps]]\nweight = 0\nmirror = 5\n\
             [[steps]]\nweight = 0\nmirror = 100\ncompare = true\n\
             [[steps]]\nweight = 10\nmirror = 50\n\
             [[steps]]\nweight = 10\nmirror = 100\n\
             [[steps]]\nweight = 100\n",
        )
        .expect("valid plan");
        let w: Vec<_> = plan
            .steps
            .iter()
            .map(|s| (s.weight, s.mirror, s.compare))
            .collect();
        assert_eq!(
            w,
            vec![
                (Weight::ZERO, Weight::from_percent(5.0), false),
                (Weight::ZERO, Weight::FULL, true),
                (
                    Weight::from_percent(10.0),
                    Weight::from_percent(50.0),
                    false
                ),
                (Weight::from_percent(10.0), Weight::FULL, false),
                (Weight::FULL, Weight::ZERO, false),
            ]
        );
    }

    fn errors(text: &str) -> Vec<String> {
        parse(text)
            .expect_err("invalid plan")
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn bad_mirror_keys_are_positioned_errors() {
        let e = errors("name = \"p\"\n[[steps]]\nweight = 0\n[[steps]]\nweight = 100\n");
        assert!(
            e[0].starts_with("3:10: step 1: `weight` 0 is outside"),
            "{e:?}"
        );
        let e = errors("name = \"p\"\n[[steps]]\nweight = 100\nmirror = 150\n");
        assert!(
            e[0].starts_with("4:10: step 1: `mirror` 150 is outside"),
            "{e:?}"
        );
        let e = errors("name = \"p\"\n[[steps]]\nweight = 100\ncompare = true\n");
        assert!(
            e[0].starts_with("4:11: step 1: `compare = true` without"),
            "{e:?}"
        );
        let e = errors(
            "name = \"p\"\n[[steps]]\nweight = 10\n[[steps]]\nweight = 5\nmirror = 10\n\
             [[steps]]\nweight = 100\n",
        );
        assert!(
            e[0].starts_with("5:10: step 2: `weight` 5 is below"),
            "{e:?}"
        );
        let e = errors("name = \"p\"\n[[steps]]\nweight = 0\nmirror = 10\n");
        assert!(
            e[0].contains("the last step's `weight` is 0, not 100"),
            "{e:?}"
        );
        let e = errors(
            "name = \"p\"\n[[steps]]\nweight = 0\nmirror = 10\n[[steps]]\nweight = 100\n\
             [[gates]]\nname = \"same\"\nmetric = \"mirror.mismatch_rate\"\nmax = 0.01\n",
        );
        assert!(
            e[0].starts_with("9:10: `mirror.mismatch_rate` is judged, but no step"),
            "{e:?}"
        );
        let e = errors(
            "name = \"p\"\n[[steps]]\nweight = 100\n\
             [[gates]]\nname = \"d\"\nmetric = \"new.dropped_rate\"\nmax = 0.1\n",
        );
        assert!(
            e[0].starts_with("6:10: `dropped_rate` is a metric of shadow traffic only"),
            "{e:?}"
        );
    }
}
