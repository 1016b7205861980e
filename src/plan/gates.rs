//! `[[gates]]`: named health conditions on `<scope>.<metric>` values — an absolute `max` or
//! `min`, or `max_ratio_of` the same metric in another scope (optionally with a significance
//! `confidence` for error rates) — plus how long to wait (`after`) and what to do (`on_fail`).

use std::collections::HashMap;

use super::condition::read_condition;
use super::metric_name::read_metric;
use super::model::{Gate, OnFail};
use super::reader::{Field, Reader, Section};
use crate::diag::did_you_mean;

const GATE_KEYS: &[&str] = &[
    "name",
    "metric",
    "max",
    "min",
    "max_ratio_of",
    "ratio",
    "confidence",
    "after",
    "on_fail",
];

/// Every gate of the plan (none is fine: the plan then advances on time alone).
pub(super) fn read(r: &mut Reader<'_>, root: &Section<'_>) -> Vec<Gate> {
    let Some(sections) = root.field("gates").and_then(|f| r.tables(&f, "[[gates]]")) else {
        return Vec::new();
    };
    let mut seen = HashMap::new();
    sections
        .iter()
        .enumerate()
        .filter_map(|(i, s)| read_gate(r, s, i + 1, &mut seen))
        .collect()
}

fn read_gate(
    r: &mut Reader<'_>,
    s: &Section<'_>,
    n: usize,
    seen: &mut HashMap<String, usize>,
) -> Option<Gate> {
    s.check_keys(r, GATE_KEYS);
    let name = match s.field("name") {
        Some(f) => r.nonempty_string(&f, "new errors").and_then(|name| {
            if let Some(line) = seen.get(name) {
                r.error(
                    f.at,
                    format!("gate name \"{name}\" is already used at line {line}"),
                    "give each gate its own name: events and the console refer to gates by name",
                );
                return None;
            }
            seen.insert(name.to_owned(), r.line_of(f.at));
            Some(name)
        }),
        None => {
            r.error(
                s.at,
                format!("gate {n} has no `name`"),
                "add a name, e.g. `name = \"new errors\"`",
            );
            None
        }
    };
    let label = name.map_or_else(|| format!("gate {n}"), |x| format!("gate \"{x}\""));
    let metric = match s.field("metric") {
        Some(f) => read_metric(r, &f),
        None => {
            r.error(
                s.at,
                format!("{label} has no `metric`"),
                "add `metric = \"<scope>.<metric>\"`, e.g. `metric = \"new.error_rate\"`",
            );
            None
        }
    };
    let condition = read_condition(r, s, &label, metric);
    let after = match s.field("after") {
        Some(f) => r.integer(&f, "2").and_then(|a| match u32::try_from(a) {
            Ok(a) if a >= 1 => Some(a),
            _ => {
                r.error(
                    f.at,
                    format!("`after` must be a count of at least 1, found {a}"),
                    "it counts consecutive failing evaluations: `after = 1` acts on the first",
                );
                None
            }
        }),
        None => Some(1),
    };
    let on_fail = match s.field("on_fail") {
        Some(f) => read_on_fail(r, &f),
        None => Some(OnFail::Pause),
    };
    Some(Gate {
        name: name?.to_owned(),
        metric: metric?,
        condition: condition?,
        after: after?,
        on_fail: on_fail?,
    })
}
fn read_on_fail(r: &mut Reader<'_>, f: &Field<'_>) -> Option<OnFail> {
    let word = r.string(f)?;
    if let Some(on_fail) = OnFail::ALL.into_iter().find(|o| o.as_str() == word) {
        return Some(on_fail);
    }
    let hint = match did_you_mean(word, &OnFail::ALL.map(OnFail::as_str)) {
        Some(near) => format!("did you mean `{near}`?"),
        None => "use \"pause\" or \"rollback\"".to_owned(),
    };
    r.error(f.at, format!("unknown `on_fail` \"{word}\""), hint);
    None
}
