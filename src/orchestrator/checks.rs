//! Pre-step checks: run before a step's weight is applied (the lesson of the maintenance
//! window that left half a database unconfigured). An HTTP GET against the named env with an
//! expected status and optional JSON value, or a local command that must exit 0 in time.
//!
//! The first failing check stops the rest; its output becomes the run's pause reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::plan::{Check, JsonExpectation};

/// One configured upstream of an env as a check reaches it. The server hands in the proxy's
/// own way of reaching an env (TLS, the env's `host_header`, a name looked up again), so a
/// check sees the env as users' requests do; the orchestrator itself never touches the
/// request path.
pub trait CheckUpstream: std::fmt::Debug + Send + Sync {
    /// How the upstream is written in the config (`https://new.example.com:443`).
    fn describe(&self) -> String;
    /// Its addresses now.
    fn addrs(&self) -> BoxFuture<'_, Vec<SocketAddr>>;
    /// GET `path` on `addr`, on a connection of its own.
    fn get<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
    ) -> BoxFuture<'a, Result<Response<Incoming>, String>>;
}

/// Each env's upstreams, indexed like [`crate::router::Env`].
pub type EnvAddrs = [Vec<Arc<dyn CheckUpstream>>; 3];

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
                for addr in target.addrs().await {
                    let what = format!("check GET {}{path} at {addr} ({env})", target.describe());
                    let answer = target.get(addr, path);
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
    answer: impl std::future::Future<Output = Result<Response<Incoming>, String>>,
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

    /// An upstream whose every address refuses.
    #[derive(Debug)]
    struct Refusing;

    impl CheckUpstream for Refusing {
        fn describe(&self) -> String {
            "10.0.0.5:8080".into()
        }
        fn addrs(&self) -> BoxFuture<'_, Vec<SocketAddr>> {
            Box::pin(async { vec![SocketAddr::from(([10, 0, 0, 5], 8080))] })
        }
        fn get<'a>(
            &'a self,
            _: SocketAddr,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Response<Incoming>, String>> {
            Box::pin(async { Err("connection refused".to_owned()) })
        }
    }

    #[tokio::test]
    async fn http_check_against_nothing_fails_clearly() {
        let addrs: EnvAddrs = [vec![], vec![Arc::new(Refusing)], vec![]];
        let check = Check::HttpGet {
            env: Env::New,
            path: "/healthz".into(),
            expect_status: 200,
            expect_json: None,
            timeout: Duration::from_secs(2),
        };
        let err = run_all(&[check], &addrs).await.expect_err("refused");
        assert_eq!(
            err,
            "check GET 10.0.0.5:8080/healthz at 10.0.0.5:8080 (new): connection refused"
        );
    }
}
