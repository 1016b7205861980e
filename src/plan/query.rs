//! A `[[gates]]` entry with `query = "<PromQL>"`: the query's syntax, checked offline with
//! `promql-parser`, and its condition (`max` or `min`, never a ratio, never with `metric`).
//!
//! Pure: the text is parsed, never sent anywhere — Prometheus is asked by
//! [`crate::prometheus`] while a run is active.

use super::condition::read_condition;
use super::model::Condition;
use super::reader::{Field, Reader, Section};

/// The query text and its condition, or `None` once every problem is reported.
pub(super) fn read_query(
    r: &mut Reader<'_>,
    s: &Section<'_>,
    f: &Field<'_>,
    label: &str,
) -> Option<(String, Condition)> {
    let text = r.nonempty_string(f, "max(db_pool_in_use / db_pool_size)");
    if let Some(m) = s.field("metric") {
        r.error(
            m.key_at,
            format!("{label} has both `metric` and `query`"),
            "a gate reads one value: keep `metric` for cutover's own numbers or `query` for Prometheus's, and split it into two gates",
        );
    }
    for key in ["max_ratio_of", "ratio", "confidence"] {
        if let Some(k) = s.field(key) {
            r.error(
                k.key_at,
                format!("`{key}` does not apply to a query gate"),
                "a query gate takes `max` or `min`; compare inside the query instead, e.g. `a / b`",
            );
        }
    }
    let checked = text.and_then(|q| match promql_parser::parser::parse(q) {
        Ok(_) => Some(q.to_owned()),
        Err(why) => {
            r.error(
                f.at,
                format!("`query` is not valid PromQL: {why}"),
                "check it in Prometheus's expression browser; inside a TOML string write `\\\"` for a quote, or use '...' literal quotes",
            );
            None
        }
    });
    if s.field("max_ratio_of").is_some() {
        return None;
    }
    let condition = read_condition(r, s, label, None);
    Some((checked?, condition?))
}

#[cfg(test)]
mod tests {
    use crate::plan::{parse, Condition, OnFail};

    const HEAD: &str = "name = \"demo\"\n[[steps]]\nweight = 100\n[[gates]]\nname = \"db\"\n";

    #[test]
    fn a_query_gate_is_read_with_its_condition() {
        let plan = parse(&format!(
            "{HEAD}query = 'max(db_pool_in_use{{env=\"new\"}} / db_pool_size)'\nmax = 0.8\nafter = 2\non_fail = \"rollback\"\n"
        ))
        .expect("valid");
        assert!(plan.gates.is_empty());
        let q = &plan.queries[0];
        assert_eq!(q.query, "max(db_pool_in_use{env=\"new\"} / db_pool_size)");
        assert_eq!(
            (q.condition, q.after, q.on_fail),
            (Condition::Max(0.8), 2, OnFail::Rollback)
        );
        assert_eq!(crate::plan::summary(&plan), "1 step to 100%, 1 gate");
    }

    #[test]
    fn bad_promql_is_reported_at_the_query() {
        let d = parse(&format!("{HEAD}query = \"sum(rate(x[1m])\"\nmax = 1\n")).unwrap_err();
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!((d[0].line, d[0].col), (6, 9));
        assert!(
            d[0].message.contains("not valid PromQL"),
            "{}",
            d[0].message
        );
    }

    #[test]
    fn a_query_gate_takes_no_metric_and_no_ratio() {
        let d = parse(&format!(
            "{HEAD}query = \"up\"\nmetric = \"new.error_rate\"\nmax_ratio_of = \"old.error_rate\"\n"
        ))
        .unwrap_err();
        let lines: Vec<_> = d.iter().map(|d| (d.line, d.col)).collect();
        assert_eq!(lines, [(7, 1), (8, 1)], "{d:#?}");
        assert!(d[0].message.contains("both `metric` and `query`"));
        assert!(d[1].message.contains("does not apply to a query gate"));
        let d = parse(&format!("{HEAD}query = \"up\"\n")).unwrap_err();
        assert!(d[0].message.contains("has no condition"), "{d:#?}");
    }

    #[test]
    fn query_and_metric_gate_names_are_one_namespace() {
        let d = parse(&format!(
            "{HEAD}query = \"up\"\nmin = 1\n[[gates]]\nname = \"db\"\nmetric = \"new.error_rate\"\nmax = 0.1\n"
        ))
        .unwrap_err();
        assert!(d[0].message.contains("already used"), "{d:#?}");
    }
}
