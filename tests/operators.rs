//! Issue 20 §3 through the real binary: named operators from `[admin] tokens_file`. Each role
//! gets 200 (or a state answer) on its routes and 403 above them, a wrong or missing token
//! 401; the event's actor is the token's name with the client's `x-cutover-actor` as a note;
//! a reload takes a new tokens file for the next request and refuses a bad one whole; a tokens
//! file other users can read stops the start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::server::{serve_refused, write_config, Server};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const VIEWER: &str = "viewer-secret-0123456789";
const OPERATOR: &str = "operator-secret-0123456789";
const ADMIN: &str = "admin-secret-0123456789";
const SHARED: &str = "shared-secret-0123456789";
const BOB: &str = "bob-secret-0123456789";

const PLAN: &str =
    "name = \"ops\"\n[[steps]]\nweight = 10\nhold = \"1h\"\n[[steps]]\nweight = 100\n";

fn entry(name: &str, role: &str, token: &str) -> String {
    format!("[[tokens]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken = \"{token}\"\n\n")
}

fn write_tokens(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write tokens");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn team() -> String {
    [
        entry("vera", "viewer", VIEWER),
        entry("olga", "operator", OPERATOR),
        entry("ada", "admin", ADMIN),
    ]
    .concat()
}

/// Add `lines` to the `[admin]` table of the config at `cfg`.
fn add_admin_keys(cfg: &Path, lines: &str) {
    let text = std::fs::read_to_string(cfg).expect("read config");
    let text = text.replacen("[admin]\n", &format!("[admin]\n{lines}"), 1);
    std::fs::write(cfg, text).expect("write config");
}

/// A server with the team's tokens file and a shared `token_file` too; returns the tokens
/// file's path.
async fn team_server() -> (
    Server,
    [cutover::demo::upstream::SimEnv; 3],
    tempfile::TempDir,
    PathBuf,
) {
    let envs = common::sim_envs().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens.toml");
    write_tokens(&tokens, &team(), 0o600);
    std::fs::write(dir.path().join("shared.token"), SHARED).expect("shared token");
    let cfg = write_config(dir.path(), envs[0].addr, envs[1].addr, envs[2].addr, "");
    add_admin_keys(
        &cfg,
        "tokens_file = \"tokens.toml\"\ntoken_file = \"shared.token\"\n",
    );
    (Server::start(&cfg), envs, dir, tokens)
}

/// `method path` with `token` (none: no header) and an optional note; (status, JSON body).
async fn call(
    s: &Server,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: &str,
    note: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, s.url(path))
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(n) = note {
        req = req.header("x-cutover-actor", n);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_gets_its_routes_and_403_above_them() {
    let (s, _envs, _dir, _tokens) = team_server().await;

    // Nobody: 401 everywhere but /metrics, which stays open as before.
    for token in [None, Some("wrong-secret-0123456789")] {
        let (code, body) = call(&s, token, Method::GET, "/v1/status", "", None).await;
        assert_eq!(code, 401, "{body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("viewer role")),
            "{body}"
        );
        let (code, body) = call(&s, token, Method::POST, "/v1/pause", "", None).await;
        assert_eq!(code, 401, "{body}");
        assert!(
            body["hint"]
                .as_str()
                .is_some_and(|h| h.contains("operator or admin")),
            "{body}"
        );
    }
    let metrics = reqwest::get(s.url("/metrics")).await.expect("metrics");
    assert_eq!(metrics.status(), 200);

    // The viewer reads everything, the event stream too, and changes nothing.
    for path in ["/v1/status", "/v1/events", "/v1/plans"] {
        let (code, body) = call(&s, Some(VIEWER), Method::GET, path, "", None).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let stream = reqwest::Client::new()
        .get(s.url("/v1/events?follow=1"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    drop(stream);
    for (path, needs) in [
        ("/v1/pause", "operator"),
        ("/v1/weight", "operator"),
        ("/v1/start", "admin"),
        ("/v1/reload", "admin"),
    ] {
        let (code, body) = call(&s, Some(VIEWER), Method::POST, path, "", None).await;
        assert_eq!(code, 403, "{path}: {body}");
        let want = format!("`vera` has the viewer role: POST {path} needs the {needs} role");
        assert_eq!(body["error"], want.as_str(), "{body}");
    }

    // The operator steers a run but neither starts one nor reloads.
    for path in ["/v1/start", "/v1/reload"] {
        let (code, body) = call(&s, Some(OPERATOR), Method::POST, path, PLAN, None).await;
        assert_eq!(code, 403, "{path}: {body}");
        assert!(
            body["hint"]
                .as_str()
                .is_some_and(|h| h.contains("role admin")),
            "{body}"
        );
    }
    let (code, body) = call(&s, Some(ADMIN), Method::POST, "/v1/start", PLAN, None).await;
    assert_eq!(code, 200, "{body}");
    for path in ["/v1/pause", "/v1/resume"] {
        let (code, body) = call(&s, Some(OPERATOR), Method::POST, path, "", None).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, body) = call(&s, Some(OPERATOR), Method::POST, "/v1/approve", "", None).await;
    assert_eq!(
        code, 409,
        "authorised, but nothing waits for approval: {body}"
    );
    let (code, body) = call(
        &s,
        Some(OPERATOR),
        Method::POST,
        "/v1/weight",
        "{\"weight\": 5}",
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(&s, Some(OPERATOR), Method::POST, "/v1/abort", "", None).await;
    assert_eq!(code, 200, "{body}");

    // The admin and the shared token (`admin-token`) may do everything.
    for token in [ADMIN, SHARED] {
        let (code, body) = call(&s, Some(token), Method::POST, "/v1/reload", "", None).await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = call(&s, Some(token), Method::GET, "/v1/status", "", None).await;
        assert_eq!(code, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actor_is_the_tokens_name_and_the_header_only_a_note() {
    let (s, _envs, _dir, _tokens) = team_server().await;
    let (code, body) = call(&s, Some(ADMIN), Method::POST, "/v1/start", PLAN, None).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(
        &s,
        Some(OPERATOR),
        Method::POST,
        "/v1/pause",
        "",
        Some("from runbook step 4"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // A header pretending to be someone else is a note, nothing more.
    let (code, body) = call(
        &s,
        Some(OPERATOR),
        Method::POST,
        "/v1/resume",
        "",
        Some("ada"),
    )
    .await;
    assert_eq!(code, 200, "{body}");

    // The CLI with the shared token: `cutover events` shows who did what.
    let out = std::process::Command::new(common::server::bin())
        .args(["abort", "--reason", "done", "--admin", &s.admin])
        .env("CUTOVER_TOKEN", OPERATOR)
        .current_dir(&s.dir)
        .output()
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(common::server::bin())
        .args(["events", "--admin", &s.admin])
        .env("CUTOVER_TOKEN", VIEWER)
        .current_dir(&s.dir)
        .output()
        .expect("cli");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_, events) = call(&s, Some(VIEWER), Method::GET, "/v1/events", "", None).await;
    let actor_of = |action: &str| {
        events
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["action"] == action)
            .map(|e| e["actor"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("no {action} event in {events:#}"))
    };
    assert_eq!(actor_of("start"), "ada");
    assert_eq!(actor_of("pause"), "olga (note: from runbook step 4)");
    assert_eq!(actor_of("resume"), "olga (note: ada)");
    assert_eq!(actor_of("abort"), "olga (note: cli)");
    for name in [
        "ada",
        "olga (note: from runbook step 4)",
        "olga (note: cli)",
    ] {
        assert!(listing.contains(name), "{name} not in:\n{listing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_takes_new_tokens_and_refuses_a_bad_file_keeping_the_old() {
    let (s, _envs, _dir, tokens) = team_server().await;
    // Olga leaves, Bob joins as operator, Vera becomes an operator.
    let text = [
        entry("vera", "operator", VIEWER),
        entry("ada", "admin", ADMIN),
        entry("bob", "operator", BOB),
    ]
    .concat();
    write_tokens(&tokens, &text, 0o600);
    let (code, body) = call(&s, Some(ADMIN), Method::POST, "/v1/reload", "", None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["changed"][0], "admin.tokens_file (vera: role operator, added bob, removed olga)",
        "{body}"
    );
    let (code, body) = call(
        &s,
        Some(BOB),
        Method::POST,
        "/v1/weight",
        "{\"weight\": 1}",
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = call(
        &s,
        Some(VIEWER),
        Method::POST,
        "/v1/weight",
        "{\"weight\": 2}",
        None,
    )
    .await;
    assert_eq!(code, 200, "vera is an operator now: {body}");
    let (code, body) = call(&s, Some(OPERATOR), Method::GET, "/v1/status", "", None).await;
    assert_eq!(code, 401, "olga's token is gone: {body}");

    // A file with a typo, then one others can read: refused, the tokens before still work.
    write_tokens(
        &tokens,
        &[entry("bob", "operater", BOB), entry("ada", "admin", ADMIN)].concat(),
        0o600,
    );
    let (code, body) = call(&s, Some(ADMIN), Method::POST, "/v1/reload", "", None).await;
    assert_eq!(code, 400, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("did you mean `operator`") && error.contains("nothing was changed"),
        "{body}"
    );
    write_tokens(&tokens, &text, 0o644);
    let (code, body) = call(&s, Some(ADMIN), Method::POST, "/v1/reload", "", None).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("chmod 600")),
        "{body}"
    );
    let (code, body) = call(
        &s,
        Some(VIEWER),
        Method::POST,
        "/v1/weight",
        "{\"weight\": 3}",
        None,
    )
    .await;
    assert_eq!(code, 200, "the reloaded tokens stay: {body}");

    // Each attempt is an event naming who asked.
    let (_, events) = call(&s, Some(BOB), Method::GET, "/v1/events", "", None).await;
    let reloads: Vec<(String, String)> = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("reload"))
        })
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().into(),
                e["actor"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let want = [
        ("reload", "ada"),
        ("reload_rejected", "ada"),
        ("reload_rejected", "ada"),
    ];
    assert_eq!(
        reloads,
        want.map(|(a, b)| (a.to_owned(), b.to_owned())),
        "{events:#}"
    );
}

#[test]
fn a_tokens_file_others_can_read_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens.toml");
    write_tokens(&tokens, &team(), 0o644);
    let dead = common::dead_addr();
    let cfg = write_config(dir.path(), dead, dead, dead, "");
    add_admin_keys(&cfg, "tokens_file = \"tokens.toml\"\n");
    let (code, stderr) = serve_refused(&cfg);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("can be read or written by other users") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}
