//! `promtool check metrics` on a real `cutover serve`'s `/metrics` answer, after traffic: the
//! names, types, HELP lines and labels follow Prometheus's conventions.
//!
//! Needs `promtool` on PATH (Debian's `prometheus` package; `.ci/run` installs it).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::server_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_to_say_about_metrics() {
    let (server, _envs, _dir) = server_with("").await;
    let c = reqwest::Client::new();
    for _ in 0..5 {
        let r = c.get(server.proxy_url("/")).send().await.expect("request");
        assert!(r.status().is_success(), "{}", r.status());
    }
    let text = server.metrics().await;
    let users = text
        .lines()
        .find_map(|l| l.strip_prefix("cutover_user_requests_total "))
        .expect("cutover_user_requests_total");
    assert_eq!(users, "5", "{text}");
    assert!(!text.contains("scope="), "one label name for envs: {text}");
    assert!(!text.contains("env=\"fallback\",to="), "{text}");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (is it installed? .ci/run installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}
