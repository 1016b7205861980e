//! A gate's condition: exactly one of `max`, `min` or `max_ratio_of` (+ `ratio`, optional
//! `confidence`), checked against the gate's metric so that impossible gates (a rate above 1,
//! a ratio across different metrics, a significance test on latency) are refused up front.

use super::metric_name::read_metric;
use super::model::Condition;
use super::reader::{Field, Reader, Section};
use crate::metrics::{MetricKind, MetricRef, Scope};

pub(super) fn read_condition(
    r: &mut Reader<'_>,
    s: &Section<'_>,
    label: &str,
    metric: Option<MetricRef>,
) -> Option<Condition> {
    let ratio_of = s.field("max_ratio_of");
    if ratio_of.is_none() {
        if let Some(f) = s.field("ratio") {
            r.error(
                f.key_at,
                "`ratio` applies only with `max_ratio_of`",
                "add `max_ratio_of = \"old.<metric>\"`, or remove `ratio`",
            );
        }
        if let Some(f) = s.field("confidence") {
            r.error(
                f.key_at,
                "`confidence` applies only to ratio gates",
                "remove it, or compare with another scope: `max_ratio_of = \"old.error_rate\"` with `ratio`",
            );
        }
    }
    let mut present: Vec<Field<'_>> = [s.field("max"), s.field("min"), ratio_of]
        .into_iter()
        .flatten()
        .collect();
    present.sort_by_key(|f| f.key_at);
    match present.as_slice() {
        [] => {
            r.error(
                s.at,
                format!("{label} has no condition"),
                "add one of `max = ...`, `min = ...`, or `max_ratio_of = \"old.<metric>\"` with `ratio = ...`",
            );
            None
        }
        [f] if f.key == "max_ratio_of" => read_ratio(r, s, f, metric),
        [f] => {
            let v = r.number(f, "0.02")?;
            check_bound(r, f, v, metric)?;
            Some(if f.key == "max" {
                Condition::Max(v)
            } else {
                Condition::Min(v)
            })
        }
        [first, rest @ ..] => {
            for extra in rest {
                r.error(
                    extra.key_at,
                    format!("{label} has both `{}` and `{}`", first.key, extra.key),
                    "a gate has exactly one condition: split it into two gates",
                );
            }
            None
        }
    }
}

/// A `max`/`min` must be possible for the metric: rates are fractions 0..=1, nothing is negative.
fn check_bound(r: &mut Reader<'_>, f: &Field<'_>, v: f64, metric: Option<MetricRef>) -> Option<()> {
    let key = f.key;
    if v < 0.0 {
        r.error(
            f.at,
            format!("`{key}` must not be negative, found {v}"),
            "metrics are never below 0",
        );
        return None;
    }
    if let Some(m) = metric.filter(|m| m.metric.is_rate() && v > 1.0) {
        let hint = if v <= 100.0 {
            format!("write a fraction: {v} % is `{key} = {}`", v / 100.0)
        } else {
            "write a fraction between 0 and 1, e.g. 0.02 for 2 %".to_owned()
        };
        let name = m.metric.as_str();
        r.error(
            f.at,
            format!("`{key}` {v} is above 1, but `{name}` is a fraction of requests"),
            hint,
        );
        return None;
    }
    Some(())
}

fn read_ratio(
    r: &mut Reader<'_>,
    s: &Section<'_>,
    of_field: &Field<'_>,
    metric: Option<MetricRef>,
) -> Option<Condition> {
    let of = read_metric(r, of_field);
    if let (Some(m), Some(o)) = (metric, of) {
        if o.scope == m.scope {
            r.error(
                of_field.at,
                format!("`max_ratio_of` compares `{m}` with itself"),
                format!(
                    "compare with another scope, e.g. `max_ratio_of = \"{}\"`",
                    other_scope(m)
                ),
            );
        } else if o.metric != m.metric {
            let same = MetricRef {
                scope: o.scope,
                metric: m.metric,
            };
            r.error(
                of_field.at,
                format!("`max_ratio_of` compares `{m}` with `{o}`, a different metric"),
                format!("a ratio gate compares the same metric in another scope: `max_ratio_of = \"{same}\"`"),
            );
        }
    }
    let ratio = match s.field("ratio") {
        Some(f) => r.number(&f, "2.0").and_then(|x| {
            if x > 0.0 {
                return Some(x);
            }
            r.error(
                f.at,
                format!("`ratio` must be above 0, found {x}"),
                "e.g. `ratio = 2.0`: fail when more than twice the other",
            );
            None
        }),
        None => {
            r.error(
                of_field.key_at,
                "`max_ratio_of` needs a `ratio`",
                "add `ratio = 2.0` to fail when the value is above 2 × the other scope's",
            );
            None
        }
    };
    let confidence = match s.field("confidence") {
        Some(f) => Some(read_confidence(r, &f, metric)?),
        None => None,
    };
    let of = of?;
    if metric.is_some_and(|m| m.scope == of.scope || m.metric != of.metric) {
        return None;
    }
    Some(Condition::RatioOf {
        of,
        ratio: ratio?,
        confidence,
    })
}

fn read_confidence(r: &mut Reader<'_>, f: &Field<'_>, metric: Option<MetricRef>) -> Option<f64> {
    if let Some(m) = metric.filter(|m| m.metric != MetricKind::ErrorRate) {
        r.error(
            f.key_at,
            format!("`confidence` is supported only on `error_rate` gates, not `{m}`"),
            format!("remove it, or gate on `{}.error_rate`", m.scope.as_str()),
        );
        return None;
    }
    let c = r.number(f, "0.95")?;
    if c <= 0.5 || c >= 1.0 {
        r.error(
            f.at,
            format!("`confidence` must be between 0.5 and 1 (both excluded), found {c}"),
            "e.g. `confidence = 0.95`",
        );
        return None;
    }
    Some(c)
}

fn other_scope(m: MetricRef) -> MetricRef {
    let scope = if m.scope == Scope::Old {
        Scope::New
    } else {
        Scope::Old
    };
    MetricRef {
        scope,
        metric: m.metric,
    }
}
