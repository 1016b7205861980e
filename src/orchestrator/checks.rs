//! Pre-step checks: run before a step's weight is applied (the lesson of the maintenance
//! window that left half a database unconfigured). An HTTP GET against the named env with an
//! expected status and optional JSON value, or a local command that must exit 0 in time.
//!
//! The first failing check stops the rest; its output becomes the run's pause reason.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};

use crate::plan::{Check, JsonExpectation};
use crate::proxy::upstream::direct::Direct;

/// Each env's upstreams, indexed like [`crate::router::Env`], reached as the proxy reaches
/// them (TLS, the env's `host_header`; a name looked up again at each check).
pub type EnvAddrs = [Vec<Direct>; 3];

/// Run `checks` in order; `Err(output)` describes the first failure.
pub async fn run_all(checks: &[Check], addrs: &EnvAddrs) -> Result<String, String> {
    let mut passed = Vec::new();
    for check in checks {
        passed.push(run_one(check, addrs).await?);
    }
    Ok(if passed.is_empty() {
        "no checks".to_owned()
    } else {
        passed.join("; ")
    })
}

async fn run_one(check: &Check, addrs: &EnvAddrs) -> Result<String, String> {
    match check {
        Check::HttpGet {
            env,
            path,
            expect_status,
            expect_json,
            timeout,
        } => {
            let targets = &addrs[*env as usize];
            if targets.is_empty() {
                return Err(format!(
                    "check GET {env}{path}: the {env} env has no upstreams"
                ));
            }
            // Every address of every upstream must pass: half a fleet misconfigured is the
            // incident.
            let mut checked = 0;
            for target in targets {
                let addrs = target.lookup().await;
                let addrs = addrs.as_deref().unwrap_or(target.first_addrs());
                for addr in addrs {
                    let what = format!("check GET {}{path} at {addr} ({env})", target.target());
                    let answer = target.get(*addr, path);
                    http_check(
                        &what,
                        answer,
                        *expect_status,
                        expect_json.as_ref(),
                        *timeout,
                    )
                    .await?;
                    checked += 1;
                }
            }
            Ok(format!(
                "GET {env}{path} → {expect_status} on {checked} upstream address(es)"
            ))
        }
        Check::Command { command, timeout } => command_check(command, *timeout).await,
    }
}

/// The answer of one GET (on one address of an upstream) judged against the check.
async fn http_check(
    what: &str,
    answer: impl std::future::Future<Output = Result<http::Response<hyper::body::Incoming>, String>>,
    expect_status: u16,
    expect_json: Option<&JsonExpectation>,
    timeout: Duration,
) -> Result<(), String> {
    let fut = async {
        let resp = answer.await.map_err(|e| format!("{what}: {e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), 1024 * 1024)
            .collect()
            .await
            .map_err(|e| format!("{what}: reading the body: {e}"))?
            .to_bytes();
        Ok::<(StatusCode, Bytes), String>((status, body))
    };
    let (status, body) = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("{what}: no answer within {timeout:?}"))??;
    if status.as_u16() != expect_status {
        return Err(format!(
            "{what}: status {} (expected {expect_status}): {}",
            status.as_u16(),
            snippet(&body)
        ));
    }
    if let Some(exp) = expect_json {
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{what}: body is not JSON ({e}): {}", snippet(&body)))?;
        match value.pointer(&exp.pointer) {
            Some(v) if *v == exp.value => {}
            Some(v) => {
                return Err(format!(
                    "{what}: {} is {v}, expected {}",
                    exp.pointer, exp.value
                ))
            }
            None => {
                return Err(format!(
                    "{what}: {} is missing from the answer",
                    exp.pointer
                ))
            }
        }
    }
    Ok(())
}

async fn command_check(command: &str, timeout: Duration) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(command).kill_on_drop(true);
    cmd.stdin(std::process::Stdio::null());
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => {
            return Err(format!(
                "check `{command}`: still running after {timeout:?}; killed"
            ))
        }
        Ok(Err(e)) => return Err(format!("check `{command}`: cannot run it: {e}")),
        Ok(Ok(out)) => out,
    };
    let mut text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        if !text.is_empty() {
            text.push_str(" | ");
        }
        text.push_str(err.trim());
    }
    if out.status.success() {
        Ok(format!("`{command}` ok"))
    } else {
        Err(format!(
            "check `{command}` failed ({}): {}",
            out.status,
            snippet(text.as_bytes())
        ))
    }
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Env;

    #[tokio::test]
    async fn command_checks_pass_fail_and_time_out() {
        let addrs: EnvAddrs = Default::default();
        let ok = Check::Command {
            command: "true".into(),
            timeout: Duration::from_secs(5),
        };
        assert!(run_all(&[ok], &addrs).await.is_ok());
        let bad = Check::Command {
            command: "echo pool=20 of 40; exit 3".into(),
            timeout: Duration::from_secs(5),
        };
        let err = run_all(&[bad], &addrs).await.expect_err("fails");
        assert!(err.contains("pool=20 of 40"), "{err}");
        let slow = Check::Command {
            command: "sleep 5".into(),
            timeout: Duration::from_millis(100),
        };
        let err = run_all(&[slow], &addrs).await.expect_err("times out");
        assert!(err.contains("killed"), "{err}");
    }

    #[tokio::test]
    async fn http_check_against_nothing_fails_clearly() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let new = crate::config::EnvConfig::plain(&[addr]);
        let addrs: EnvAddrs = [vec![], Direct::of(&new, None), vec![]];
        let check = Check::HttpGet {
            env: Env::New,
            path: "/healthz".into(),
            expect_status: 200,
            expect_json: None,
            timeout: Duration::from_secs(2),
        };
        let err = run_all(&[check], &addrs).await.expect_err("refused");
        assert!(err.contains("(new)"), "{err}");
    }
}
