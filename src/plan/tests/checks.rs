//! `[[steps.checks]]`: HTTP GET and command checks.

use std::time::Duration;

use super::*;
use crate::plan::{Check, JsonExpectation};
use crate::router::Env;

/// A plan whose one step has the check written in `body` (the check header is on line 4, its
/// first key on line 5).
fn with_check(body: &str) -> String {
    format!("name = \"demo\"\n[[steps]]\nweight = 100\n[[steps.checks]]\n{body}")
}

fn only_check(body: &str) -> Check {
    let plan = ok(&with_check(body));
    assert_eq!(plan.steps[0].checks.len(), 1);
    plan.steps[0].checks[0].clone()
}

#[test]
fn http_check_defaults() {
    let c = only_check("env = \"new\"\nhttp_get = \"/healthz\"\n");
    assert_eq!(
        c,
        Check::HttpGet {
            env: Env::New,
            path: "/healthz".into(),
            expect_status: 200,
            expect_json: None,
            timeout: Duration::from_secs(5),
        }
    );
}

#[test]
fn http_check_with_json_expectation() {
    let c = only_check(
        "env = \"new\"\nhttp_get = \"/config\"\nexpect_status = 204\ntimeout = \"2s\"\n\
         expect_json = { pointer = \"/db/pool_size\", equals = 40 }\n",
    );
    let Check::HttpGet {
        expect_status,
        expect_json,
        timeout,
        ..
    } = c
    else {
        panic!("expected an HTTP check, got {c:?}");
    };
    assert_eq!(expect_status, 204);
    assert_eq!(timeout, Duration::from_secs(2));
    assert_eq!(
        expect_json,
        Some(JsonExpectation {
            pointer: "/db/pool_size".into(),
            value: serde_json::json!(40)
        })
    );
}

#[test]
fn json_expectation_converts_nested_values() {
    let c = only_check(
        "env = \"old\"\nhttp_get = \"/v\"\nexpect_json = { pointer = \"/a\", equals = { ok = true, l = [1, \"x\", 2.5] } }\n",
    );
    let Check::HttpGet {
        expect_json: Some(e),
        ..
    } = c
    else {
        panic!("expected an expectation, got {c:?}");
    };
    assert_eq!(
        e.value,
        serde_json::json!({ "ok": true, "l": [1, "x", 2.5] })
    );
}

#[test]
fn command_check() {
    let c = only_check("command = \"test -f /tmp/ready\"\ntimeout = \"10s\"\n");
    assert_eq!(
        c,
        Check::Command {
            command: "test -f /tmp/ready".into(),
            timeout: Duration::from_secs(10)
        }
    );
}

#[test]
fn both_http_get_and_command_is_an_error_at_command() {
    let d = one(&with_check(
        "env = \"new\"\nhttp_get = \"/h\"\ncommand = \"true\"\n",
    ));
    assert_diag(
        &d,
        7,
        1,
        "both `http_get` and `command`",
        "split it into two",
    );
}

#[test]
fn neither_http_get_nor_command_is_an_error_at_the_header() {
    let d = one(&with_check("timeout = \"1s\"\n"));
    assert_diag(
        &d,
        4,
        1,
        "neither `http_get` nor `command`",
        "http_get = \"/healthz\"",
    );
}

#[test]
fn http_check_needs_an_env() {
    let d = one(&with_check("http_get = \"/h\"\n"));
    assert_diag(&d, 4, 1, "has no `env`", "env = \"new\"");
}

#[test]
fn unknown_env_suggests_the_near_one() {
    let d = one(&with_check("env = \"fallbak\"\nhttp_get = \"/h\"\n"));
    assert_diag(
        &d,
        5,
        7,
        "unknown env \"fallbak\"",
        "did you mean `fallback`?",
    );
    let d = one(&with_check("env = \"prod\"\nhttp_get = \"/h\"\n"));
    assert_diag(
        &d,
        5,
        7,
        "unknown env \"prod\"",
        "\"old\", \"new\", \"fallback\"",
    );
}

#[test]
fn http_get_must_be_a_path() {
    let d = one(&with_check("env = \"new\"\nhttp_get = \"healthz\"\n"));
    assert_diag(
        &d,
        6,
        12,
        "must be a path starting with `/`",
        "http_get = \"/healthz\"",
    );
}

#[test]
fn expect_status_must_be_an_http_status() {
    let d = one(&with_check(
        "env = \"new\"\nhttp_get = \"/h\"\nexpect_status = 700\n",
    ));
    assert_diag(
        &d,
        7,
        17,
        "`expect_status` 700 is not an HTTP status",
        "100 to 599",
    );
}

#[test]
fn json_pointer_must_start_with_a_slash() {
    let d = one(&with_check(
        "env = \"new\"\nhttp_get = \"/h\"\nexpect_json = { pointer = \"db/pool_size\", equals = 40 }\n",
    ));
    assert_diag(&d, 7, 27, "is not a JSON pointer", "\"/db/pool_size\"");
}

#[test]
fn json_expectation_needs_equals_and_rejects_unknown_keys() {
    let diags = errors(&with_check(
        "env = \"new\"\nhttp_get = \"/h\"\nexpect_json = { pointer = \"/a\", equal = 1 }\n",
    ));
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert_diag(
        &diags[0],
        7,
        15,
        "`expect_json` has no `equals`",
        "equals = 40",
    );
    assert_diag(
        &diags[1],
        7,
        33,
        "unknown key `equal` in expect_json",
        "did you mean `equals`?",
    );
}

#[test]
fn http_keys_on_a_command_check_are_errors() {
    let d = one(&with_check("command = \"true\"\n  expect_status = 200\n"));
    assert_diag(
        &d,
        6,
        3,
        "`expect_status` applies only to `http_get` checks",
        "exits 0",
    );
}

#[test]
fn zero_timeout_is_an_error() {
    let d = one(&with_check("command = \"true\"\ntimeout = \"0s\"\n"));
    assert_diag(
        &d,
        6,
        11,
        "`timeout` must be longer than 0s",
        "timeout = \"5s\"",
    );
}

#[test]
fn unknown_check_key_suggests_the_near_one() {
    let d = one(&with_check(
        "env = \"new\"\nhttp_get = \"/h\"\nexpect_stauts = 200\n",
    ));
    assert_diag(
        &d,
        7,
        1,
        "unknown key `expect_stauts` in [[steps.checks]]",
        "did you mean `expect_status`?",
    );
}
