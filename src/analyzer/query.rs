//! Query gates judged on Prometheus's answers: the answer's shape, the value, and what a
//! failure to ask means.
//!
//! Owns: reading an instant-query answer (`/api/v1/query`'s JSON) into one number or an error
//! text ([`read_answer`]), and judging a [`QueryGate`] on a [`QueryOutcome`] ([`judge_query`]).
//! Pure: the answers and how long asking has failed come in as data; the HTTP client that gets
//! them is [`crate::prometheus`]. Must not touch: streaks and health ([`super::gates`]).
//!
//! Rules. The result must be a scalar or a vector of exactly one sample; several series, none,
//! a string, a matrix, `NaN` or an error status is an error naming what came back. An error
//! cannot judge (verdict `no_answer`): the gate holds the run, as with too little traffic —
//! never advancing blind — and once asking has failed for [`QueryResults::pause_after`] the
//! run pauses.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::judge::{num, Verdict};
use crate::plan::model::{Condition, QueryGate};
use crate::vocab::GateVerdict;

/// What asking Prometheus for one query gave this interval.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutcome {
    /// The value, or why there is none (unreachable, timeout, error status, wrong shape).
    pub value: Result<f64, String>,
    /// How long asking has failed without a break (zero when `value` is a number).
    pub failing_for: Duration,
}

/// Every query gate's outcome this interval, by gate name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResults {
    pub outcomes: HashMap<String, QueryOutcome>,
    /// How long a query may fail before the run pauses (`[prometheus] pause_after`).
    pub pause_after: Duration,
}

/// One judged query gate, and whether its failures have lasted long enough to pause.
pub struct QueryVerdict {
    pub verdict: Verdict,
    /// Set when asking has failed for `pause_after`: the reason to pause.
    pub give_up: Option<String>,
}

/// The number in an instant-query answer, or what is wrong with it.
pub fn read_answer(body: &[u8]) -> Result<f64, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the answer is not Prometheus's JSON ({e})"))?;
    if v["status"] != "success" {
        let kind = v["errorType"].as_str().unwrap_or("error");
        let why = v["error"].as_str().unwrap_or("no error text");
        return Err(format!("Prometheus answered {kind}: {why}"));
    }
    let data = &v["data"];
    let result = &data["result"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => result,
        Some("vector") => match result.as_array().map(Vec::as_slice) {
            Some([one]) => &one["value"],
            Some([]) => return Err("the query returned no series (an empty vector)".into()),
            Some(many) => {
                let shown: Vec<String> = many
                    .iter()
                    .take(3)
                    .map(|s| s["metric"].to_string())
                    .collect();
                return Err(format!(
                    "the query returned {} series, not one: {}{}; aggregate it, e.g. max(...) or sum(...)",
                    many.len(),
                    shown.join(", "),
                    if many.len() > 3 { ", ..." } else { "" }
                ));
            }
            None => return Err("the answer's vector is not a list".into()),
        },
        Some(other) => {
            return Err(format!(
                "the query returned a {other}, not a number: give an instant vector of one series or a scalar"
            ))
        }
        None => return Err("the answer has no resultType".into()),
    };
    let text = sample[1]
        .as_str()
        .ok_or_else(|| format!("the answer's sample is not [time, \"value\"]: {sample}"))?;
    let x: f64 = text
        .parse()
        .map_err(|_| format!("the answer's value {text:?} is not a number"))?;
    if x.is_nan() {
        return Err("the query's value is NaN (a division of zero by zero?)".into());
    }
    Ok(x)
}

/// Judges `gate` on `outcome` (`None`: nobody asked — no `[prometheus]` configured).
pub fn judge_query(
    gate: &QueryGate,
    outcome: Option<&QueryOutcome>,
    pause_after: Duration,
) -> QueryVerdict {
    let mut data = Map::new();
    data.insert("gate".into(), json!(gate.name));
    data.insert("query".into(), json!(gate.query));
    let q = &gate.query;
    let v = match outcome {
        Some(QueryOutcome { value: Ok(v), .. }) => *v,
        other => {
            let (why, failing_for) = match other {
                Some(QueryOutcome {
                    value: Err(e),
                    failing_for,
                }) => (e.clone(), *failing_for),
                _ => ("no answer from Prometheus".to_owned(), Duration::ZERO),
            };
            data.insert("error".into(), json!(why));
            data.insert("failing_for_s".into(), json!(failing_for.as_secs_f64()));
            let text = format!("cannot judge query `{q}`: {why}");
            let give_up = (other.is_some() && failing_for >= pause_after).then(|| {
                format!(
                    "gate \"{}\": Prometheus has not answered query `{q}` for {}: {why}",
                    gate.name,
                    humantime::format_duration(Duration::from_secs(failing_for.as_secs()))
                )
            });
            let verdict = Verdict {
                kind: GateVerdict::NoAnswer,
                by_design: false,
                value: None,
                text,
                data,
            };
            return QueryVerdict { verdict, give_up };
        }
    };
    data.insert("value".into(), json!(v));
    let (fails, text) = match gate.condition {
        Condition::Min(t) => {
            data.insert("condition".into(), json!("min"));
            data.insert("threshold".into(), json!(t));
            let op = if v < t { "<" } else { ">=" };
            (
                v < t,
                format!("query `{q}` = {} {op} min {}", num(v), num(t)),
            )
        }
        // The plan allows only `max` or `min`; a ratio (from a hand-made plan) reads as `max`.
        Condition::Max(t) | Condition::RatioOf { ratio: t, .. } => {
            data.insert("condition".into(), json!("max"));
            data.insert("threshold".into(), json!(t));
            let op = if v > t { ">" } else { "<=" };
            (
                v > t,
                format!("query `{q}` = {} {op} max {}", num(v), num(t)),
            )
        }
    };
    let kind = if fails {
        GateVerdict::Failing
    } else {
        GateVerdict::Ok
    };
    let verdict = Verdict {
        kind,
        by_design: false,
        value: Some(v),
        text,
        data,
    };
    QueryVerdict {
        verdict,
        give_up: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::OnFail;

    const SCALAR: &str =
        r#"{"status":"success","data":{"resultType":"scalar","result":[1733400000.123,"0.25"]}}"#;
    const ONE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pool":"new"},"value":[1733400000,"0.75"]}]}}"#;
    const MANY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pool":"a"},"value":[1,"1"]},{"metric":{"pool":"b"},"value":[1,"2"]}]}}"#;
    const NONE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    const ERROR: &str = r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}"#;
    const NAN: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
    const INF: &str = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#;
    const STRING: &str =
        r#"{"status":"success","data":{"resultType":"string","result":[1,"hello"]}}"#;
    const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"2"]]}]}}"#;

    #[test]
    fn one_number_is_read_from_a_scalar_or_a_single_sample() {
        assert_eq!(read_answer(SCALAR.as_bytes()), Ok(0.25));
        assert_eq!(read_answer(ONE.as_bytes()), Ok(0.75));
        assert_eq!(read_answer(INF.as_bytes()), Ok(f64::INFINITY));
    }

    #[test]
    fn every_other_shape_is_an_error_that_says_what_came_back() {
        let e = |s: &str| read_answer(s.as_bytes()).unwrap_err();
        let many = e(MANY);
        assert!(
            many.contains("2 series") && many.contains("\"pool\":\"b\""),
            "{many}"
        );
        assert!(e(NONE).contains("no series"));
        assert_eq!(
            e(ERROR),
            "Prometheus answered bad_data: 1:5: parse error: unexpected end of input"
        );
        assert!(e(NAN).contains("NaN"));
        assert!(e(STRING).contains("returned a string"));
        assert!(e(MATRIX).contains("returned a matrix"));
        assert!(e("<html>bad gateway</html>").contains("not Prometheus's JSON"));
    }

    fn gate(condition: Condition) -> QueryGate {
        QueryGate {
            name: "db".into(),
            query: "max(pool)".into(),
            condition,
            after: 1,
            on_fail: OnFail::Pause,
        }
    }

    fn ok(v: f64) -> QueryOutcome {
        QueryOutcome {
            value: Ok(v),
            failing_for: Duration::ZERO,
        }
    }

    #[test]
    fn values_are_judged_against_max_or_min() {
        let long = Duration::from_secs(60);
        let v = judge_query(&gate(Condition::Max(0.8)), Some(&ok(0.9)), long).verdict;
        assert_eq!(v.kind, GateVerdict::Failing);
        assert_eq!(v.text, "query `max(pool)` = 0.90 > max 0.80");
        assert_eq!(v.data["threshold"], json!(0.8));
        let v = judge_query(&gate(Condition::Min(0.5)), Some(&ok(0.9)), long).verdict;
        assert_eq!((v.kind, v.value), (GateVerdict::Ok, Some(0.9)));
    }

    #[test]
    fn an_error_cannot_judge_until_it_lasts_long_enough_to_pause() {
        let g = gate(Condition::Max(0.8));
        let failing = |s| QueryOutcome {
            value: Err("connection refused".into()),
            failing_for: Duration::from_secs(s),
        };
        let pause_after = Duration::from_secs(30);
        let early = judge_query(&g, Some(&failing(5)), pause_after);
        assert_eq!(early.verdict.kind, GateVerdict::NoAnswer);
        assert_eq!(
            early.verdict.text,
            "cannot judge query `max(pool)`: connection refused"
        );
        assert!(early.give_up.is_none());
        let late = judge_query(&g, Some(&failing(30)), pause_after);
        let why = late.give_up.expect("pauses");
        assert!(why.contains("for 30s: connection refused"), "{why}");
        let unasked = judge_query(&g, None, pause_after);
        assert!(unasked.verdict.text.contains("no answer from Prometheus"));
    }
}
