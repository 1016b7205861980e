//! examples/cutover.service, the systemd unit docs/operations.md tells users to install: its
//! command line is one the binary takes, and the settings the runbook relies on are there.

use std::collections::HashMap;
use std::process::Command;

/// `key -> values` of the unit's `[Service]` section (a key may repeat).
fn service() -> HashMap<String, Vec<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cutover.service");
    let text = std::fs::read_to_string(path).expect("examples/cutover.service");
    let mut section = String::new();
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value line");
        if section == "[Service]" {
            keys.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    keys
}

fn one<'a>(s: &'a HashMap<String, Vec<String>>, key: &str) -> &'a str {
    match s.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{key}: expected one value, found {other:?}"),
    }
}

fn seconds(v: &str) -> u64 {
    v.trim_end_matches('s').parse().expect("whole seconds")
}

#[test]
fn the_unit_runs_serve_with_a_config_and_the_binary_takes_that_command_line() {
    let s = service();
    let exec: Vec<&str> = one(&s, "ExecStart").split_whitespace().collect();
    assert_eq!(exec[1..3], ["serve", "--config"], "{exec:?}");
    // The same arguments on the real binary: a missing file is named, not a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(&exec[1..3])
        .arg("/nonexistent/cutover.toml")
        .output()
        .expect("run cutover");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("/nonexistent/cutover.toml"), "{err}");
    assert!(!err.contains("Usage:"), "{err}");
}

#[test]
fn the_unit_reloads_with_sighup_and_gives_the_drain_its_time() {
    let s = service();
    assert!(one(&s, "ExecReload").ends_with("kill -HUP $MAINPID"));
    assert_eq!(one(&s, "KillSignal"), "SIGTERM");
    // [proxy] drain_timeout defaults to 10s (docs/config.md): systemd must wait longer.
    assert!(seconds(one(&s, "TimeoutStopSec")) > 10);
    assert_eq!(one(&s, "Restart"), "always");
    // About 2 × max_connections + 256 descriptors for the default 10,000 connections.
    let nofile: u64 = one(&s, "LimitNOFILE").parse().expect("a number");
    assert!(nofile >= 2 * 10_000 + 256, "{nofile}");
}

#[test]
fn the_unit_runs_unprivileged_and_hardened() {
    let s = service();
    assert_ne!(one(&s, "User"), "root");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("StateDirectory", "cutover"),
    ] {
        assert_eq!(one(&s, key), value, "{key}");
    }
}
