//! `[[gates]]`: named health conditions on `<scope>.<metric>` values — an absolute `max` or
//! `min`, or `max_ratio_of` the same metric in another scope (optionally with a significance
//! `confidence` for error rates) — plus how long to wait (`after`) and what to do (`on_fail`).
//! A gate with `query` instead of `metric` reads a PromQL value (see `query`).

use std::collections::HashMap;

use super::condition::read_condition;
use super::metric_name::read_metric;
use super::model::{Gate, OnFail, QueryGate};
use super::query::read_query;
use super::reader::{Field, Reader, Section};
use crate::diag::did_you_mean;

const GATE_KEYS: &[&str] = &[
    "name",
    "metric",
    "query",
    "max",
    "min",
    "max_ratio_of",
    "ratio",
    "confidence",
    "after",
    "on_fail",
];

/// A gate as read: on one of cutover's metrics, or on a PromQL query.
enum Read {
    Metric(Gate),
    Query(QueryGate),
}

/// Every gate of the plan, metric gates then query gates (none is fine: the plan then advances
/// on time alone).
pub(super) fn read(r: &mut Reader<'_>, root: &Section<'_>) -> (Vec<Gate>, Vec<QueryGate>) {
    let (mut gates, mut queries) = (Vec::new(), Vec::new());
    let Some(sections) = root.field("gates").and_then(|f| r.tables(&f, "[[gates]]")) else {
        return (gates, queries);
    };
    let mut seen = HashMap::new();
    for (i, s) in sections.iter().enumerate() {
        match read_gate(r, s, i + 1, &mut seen) {
            Some(Read::Metric(g)) => gates.push(g),
            Some(Read::Query(q)) => queries.push(q),
            None => {}
        }
    }
    (gates, queries)
}

fn read_gate(
    r: &mut Reader<'_>,
    s: &Section<'_>,
    n: usize,
    seen: &mut HashMap<String, usize>,
) -> Option<Read> {
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
    let query = s.field("query").map(|f| read_query(r, s, &f, &label));
    let metric = match s.field("metric") {
        _ if query.is_some() => None,
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
    let condition = match &query {
        Some(_) => None,
        None => read_condition(r, s, &label, metric),
    };
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
    let (name, after, on_fail) = (name?.to_owned(), after?, on_fail?);
    if let Some(q) = query {
        let (query, condition) = q?;
        return Some(Read::Query(QueryGate {
            name,
            query,
            condition,
            after,
            on_fail,
        }));
    }
    Some(Read::Metric(Gate {
        name,
        metric: metric?,
        condition: condition?,
        after,
        on_fail,
    }))
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
