//! The real `cutover` binary as a child process, for end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: String,
    pub config: PathBuf,
    pub dir: PathBuf,
    pub token: String,
    pub stderr_lines: mpsc::Receiver<String>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cutover")
}

/// Write a config for the given env addresses into `dir` (store inside it).
pub fn write_config(
    dir: &Path,
    old: SocketAddr,
    new: SocketAddr,
    fallback: SocketAddr,
    extra: &str,
) -> PathBuf {
    write_config_envs(dir, [old, new, fallback], ["", "", ""], extra)
}

/// [`write_config`] with `per_env` lines inside `[envs.old]`, `[envs.new]` and
/// `[envs.fallback]` (e.g. admission control).
pub fn write_config_envs(
    dir: &Path,
    [old, new, fallback]: [SocketAddr; 3],
    [old_lines, new_lines, fallback_lines]: [&str; 3],
    extra: &str,
) -> PathBuf {
    let text = format!(
        r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[store]
path = "store"
[envs.old]
upstreams = ["{old}"]
{old_lines}
[envs.new]
upstreams = ["{new}"]
{new_lines}
[envs.fallback]
upstreams = ["{fallback}"]
{fallback_lines}
[proxy]
drain_timeout = "5s"
{extra}
"#
    );
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Run `cutover serve --config CFG`, which must refuse to start: (exit code, stderr). One
/// that starts instead is killed and fails the test.
pub fn serve_refused(cfg: &Path) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(bin())
        .args(["serve", "--config"])
        .arg(cfg)
        .env_remove("CUTOVER_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let Some(code) = exit(&mut child, super::WAIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("cutover started although it should have refused");
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (code, err)
}

/// Wait (at most `timeout`) until `child` exits: `Some(its exit code)`, or `None` if it still
/// runs.
pub fn exit(child: &mut Child, timeout: Duration) -> Option<Option<i32>> {
    let mut code = None;
    let exited = super::eventually_blocking(timeout, || match child.try_wait() {
        Ok(Some(status)) => {
            code = Some(status.code());
            true
        }
        _ => false,
    });
    exited.then_some(code).flatten()
}

impl Server {
    /// Start `cutover serve --config CONFIG` and wait until it reports its addresses.
    pub fn start(config: &Path) -> Server {
        let child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(config)
            .env("CUTOVER_LOG", "info")
            .env_remove("CUTOVER_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cutover");
        Server::adopt(child, config)
    }

    /// A `cutover serve --config CONFIG` started some other way (with piped stdout and
    /// stderr): wait until it reports its addresses.
    pub fn adopt(mut child: Child, config: &Path) -> Server {
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if etx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut proxy, mut admin) = (None, None);
        while proxy.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let errs: Vec<String> = erx.try_iter().collect();
                    panic!("cutover did not start: {}", errs.join("\n"));
                }
            };
            if let Some(a) = line.strip_prefix("cutover: proxy listening on ") {
                proxy = a.trim().parse().ok();
            }
            if let Some(a) = line.strip_prefix("cutover: admin API on ") {
                admin = Some(a.trim().to_owned());
            }
        }
        let dir = config.parent().expect("dir").to_path_buf();
        // A server with named operators only (`admin.tokens_file`) generates no token.
        let token = std::fs::read_to_string(dir.join("store/admin.token"))
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        Server {
            child,
            proxy: proxy.expect("proxy addr"),
            admin: admin.expect("admin addr"),
            config: config.to_path_buf(),
            dir,
            token,
            stderr_lines: erx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.admin, path)
    }

    pub fn proxy_url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    pub fn api(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", self.token).parse().expect("header"),
        );
        headers.insert("x-cutover-actor", "test".parse().expect("header"));
        reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    /// Run the CLI against this server; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin())
            .args(args)
            .arg("--admin")
            .arg(&self.admin)
            .env("CUTOVER_TOKEN", &self.token)
            .current_dir(&self.dir)
            .output()
            .expect("run cli");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `GET /metrics`, the Prometheus text.
    pub async fn metrics(&self) -> String {
        self.api()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn status(&self) -> serde_json::Value {
        self.api()
            .get(self.url("/v1/status"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json")
    }

    pub async fn events(&self) -> Vec<serde_json::Value> {
        self.api()
            .get(self.url("/v1/events"))
            .send()
            .await
            .expect("events")
            .json()
            .await
            .expect("events json")
    }

    /// `POST /v1/start` with plan text; panics unless it is accepted.
    pub async fn start_plan(&self, plan: &str) {
        let resp = self
            .api()
            .post(self.url("/v1/start"))
            .body(plan.to_owned())
            .send()
            .await
            .expect("start");
        let code = resp.status();
        assert_eq!(code, 200, "{}", resp.text().await.unwrap_or_default());
    }

    /// `POST /v1/weight` (an operator's weight change); panics unless it is accepted.
    pub async fn set_weight(&self, percent: f64) {
        let resp = self
            .api()
            .post(self.url("/v1/weight"))
            .json(&serde_json::json!({ "weight": percent }))
            .send()
            .await
            .expect("weight");
        let code = resp.status();
        assert_eq!(code, 200, "{}", resp.text().await.unwrap_or_default());
    }

    /// Wait (at most `timeout`) until `/v1/status` satisfies `f`, naming `what` if it never
    /// does; returns that status.
    pub async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status().await;
            if f(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}: {st:#}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait until the run is in `state` (as `/v1/status` spells it).
    pub async fn wait_for_state(&self, state: &str, timeout: Duration) -> serde_json::Value {
        let what = format!("state {state}");
        self.wait_status(&what, timeout, |st| st["state"] == state)
            .await
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; returns the exit status code once it has exited (or None after `timeout`).
    pub fn sigterm(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        exit(&mut self.child, timeout).flatten()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
