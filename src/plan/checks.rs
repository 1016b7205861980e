//! `[[steps.checks]]`: pre-flight checks run before a step's weight is applied. Either an HTTP
//! GET on one env (`env`, `http_get`, `expect_status`, `expect_json`) or a shell `command`.
//!
//! Only validation lives here; running checks is the orchestrator's job.

use std::time::Duration;

use toml_edit::{Item, Value};

use super::model::{Check, JsonExpectation};
use super::reader::{Field, Reader, Section};
use crate::diag::did_you_mean;
use crate::router::Env;

const CHECK_KEYS: &[&str] = &[
    "env",
    "http_get",
    "expect_status",
    "expect_json",
    "command",
    "timeout",
];
const HTTP_ONLY: &[&str] = &["env", "expect_status", "expect_json"];
const JSON_KEYS: &[&str] = &["pointer", "equals"];
const ENV_NAMES: &[&str] = &["old", "new", "fallback"];
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One check, or `None` after reporting why it is invalid.
pub(super) fn read(r: &mut Reader<'_>, s: &Section<'_>) -> Option<Check> {
    s.check_keys(r, CHECK_KEYS);
    let timeout = match s.field("timeout") {
        Some(f) => {
            let (lo, hi) = super::model::bounds::CHECK_TIMEOUT;
            r.bounded_duration(&f, lo, hi, "5s")
        }
        None => Some(DEFAULT_TIMEOUT),
    };
    match (s.field("http_get"), s.field("command")) {
        (Some(_), Some(command)) => {
            r.error(
                command.key_at,
                "a check has both `http_get` and `command`",
                "a check is either an HTTP GET or a command: split it into two [[steps.checks]]",
            );
            None
        }
        (None, None) => {
            r.error(
                s.at,
                "the check has neither `http_get` nor `command`",
                "add `env = \"new\"` and `http_get = \"/healthz\"`, or `command = \"...\"`",
            );
            None
        }
        (None, Some(command)) => {
            for key in HTTP_ONLY {
                if let Some(f) = s.field(key) {
                    r.error(
                        f.key_at,
                        format!("`{key}` applies only to `http_get` checks"),
                        "remove it: a command check passes when the command exits 0",
                    );
                }
            }
            let command = r.nonempty_string(&command, "./preflight.sh")?;
            Some(Check::Command {
                command: command.to_owned(),
                timeout: timeout?,
            })
        }
        (Some(path), None) => read_http(r, s, &path, timeout),
    }
}

fn read_http(
    r: &mut Reader<'_>,
    s: &Section<'_>,
    path: &Field<'_>,
    timeout: Option<Duration>,
) -> Option<Check> {
    let path = r.string(path).and_then(|p| {
        if p.starts_with('/') {
            Some(p)
        } else {
            r.error(
                path.at,
                format!("`http_get` must be a path starting with `/`, found \"{p}\""),
                format!(
                    "write the path only, e.g. `http_get = \"/{}\"`",
                    p.trim_start_matches('/')
                ),
            );
            None
        }
    });
    let env = match s.field("env") {
        Some(f) => read_env(r, &f),
        None => {
            r.error(
                s.at,
                "the `http_get` check has no `env`",
                "say which environment to ask: `env = \"new\"` (or \"old\", \"fallback\")",
            );
            None
        }
    };
    let expect_status = match s.field("expect_status") {
        Some(f) => r.integer(&f, "200").and_then(|n| match n {
            100..=599 => Some(n as u16),
            _ => {
                r.error(
                    f.at,
                    format!("`expect_status` {n} is not an HTTP status"),
                    "use a status code from 100 to 599, e.g. `expect_status = 200`",
                );
                None
            }
        }),
        None => Some(200),
    };
    let expect_json = s.field("expect_json").map(|f| read_json_expectation(r, &f));
    Some(Check::HttpGet {
        env: env?,
        path: path?.to_owned(),
        expect_status: expect_status?,
        expect_json: match expect_json {
            Some(valid) => Some(valid?),
            None => None,
        },
        timeout: timeout?,
    })
}

fn read_env(r: &mut Reader<'_>, f: &Field<'_>) -> Option<Env> {
    let name = r.string(f)?;
    if let Some(env) = ENV_NAMES
        .contains(&name)
        .then(|| Env::parse(name))
        .flatten()
    {
        return Some(env);
    }
    let hint = match did_you_mean(name, ENV_NAMES) {
        Some(near) => format!("did you mean `{near}`?"),
        None => "use one of \"old\", \"new\", \"fallback\"".to_owned(),
    };
    r.error(f.at, format!("unknown env \"{name}\""), hint);
    None
}

fn read_json_expectation(r: &mut Reader<'_>, f: &Field<'_>) -> Option<JsonExpectation> {
    let s = r.table(f, "expect_json")?;
    s.check_keys(r, JSON_KEYS);
    const EXAMPLE: &str = "`expect_json = { pointer = \"/db/pool_size\", equals = 40 }`";
    let pointer = match s.field("pointer") {
        Some(p) => r.string(&p).and_then(|ptr| {
            if ptr.starts_with('/') {
                Some(ptr)
            } else {
                r.error(
                    p.at,
                    format!("`pointer` \"{ptr}\" is not a JSON pointer"),
                    format!("a JSON pointer (RFC 6901) starts with `/`, e.g. \"/{ptr}\""),
                );
                None
            }
        }),
        None => {
            r.error(
                s.at,
                "`expect_json` has no `pointer`",
                format!("e.g. {EXAMPLE}"),
            );
            None
        }
    };
    let value = match s.field("equals") {
        Some(e) => to_json(r, &e, e.item),
        None => {
            r.error(
                s.at,
                "`expect_json` has no `equals`",
                format!("e.g. {EXAMPLE}"),
            );
            None
        }
    };
    Some(JsonExpectation {
        pointer: pointer?.to_owned(),
        value: value?,
    })
}

/// A TOML value as the JSON value it must equal.
fn to_json(r: &mut Reader<'_>, f: &Field<'_>, item: &Item) -> Option<serde_json::Value> {
    let Some(v) = item.as_value() else {
        r.error(
            f.at,
            "`equals` must be a value, found a table",
            "write it inline, e.g. `equals = { a = 1 }`",
        );
        return None;
    };
    value_to_json(v).or_else(|| {
        r.error(
            f.at,
            "`equals` holds a value JSON cannot express (a date or a non-finite number)",
            "compare with a string, number, boolean, array or inline table",
        );
        None
    })
}

fn value_to_json(v: &Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        Value::String(s) => J::String(s.value().clone()),
        Value::Integer(i) => J::from(*i.value()),
        Value::Float(x) => J::Number(serde_json::Number::from_f64(*x.value())?),
        Value::Boolean(b) => J::Bool(*b.value()),
        Value::Datetime(_) => return None,
        Value::Array(a) => J::Array(a.iter().map(value_to_json).collect::<Option<_>>()?),
        Value::InlineTable(t) => J::Object(
            t.iter()
                .map(|(k, v)| Some((k.to_owned(), value_to_json(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}
