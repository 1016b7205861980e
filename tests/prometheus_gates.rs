//! Query gates through a real Prometheus server: it scrapes a tiny exporter whose value the
//! test changes, and the real `cutover serve` asks it every analysis interval. A run advances
//! while the query is healthy, pauses (or rolls back) when it crosses its threshold, and holds
//! — then pauses — when Prometheus is gone.
//!
//! Needs `prometheus` on PATH (`.ci/run` installs Debian's package).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::server::{write_config, Server};
use common::{dead_addr, sim_envs, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A `/metrics` endpoint serving `db_pool_saturation <value>`, the value set by the test.
struct Exporter {
    addr: std::net::SocketAddr,
    value: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    async fn start(v: f64) -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind exporter");
        let addr = listener.local_addr().expect("addr");
        let value = Arc::new(AtomicU64::new(v.to_bits()));
        let shared = value.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let value = shared.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let v = f64::from_bits(value.load(Ordering::Relaxed));
                    let body = format!(
                        "# HELP db_pool_saturation In-use share of NEW's database pool.\n\
                         # TYPE db_pool_saturation gauge\ndb_pool_saturation{{env=\"new\"}} {v}\n"
                    );
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
                });
            }
        });
        Exporter { addr, value, task }
    }

    fn set(&self, v: f64) {
        self.value.store(v.to_bits(), Ordering::Relaxed);
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Prometheus process scraping the exporter every 200ms; killed on drop (also on panic).
struct Prom {
    child: Child,
    url: String,
}

impl Prom {
    fn start(dir: &Path, target: std::net::SocketAddr) -> Prom {
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\n\
                 scrape_configs:\n  - job_name: exporter\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .expect("write prometheus.yml");
        let addr = dead_addr();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (is it installed? .ci/run installs it)");
        Prom {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// The query's current value as Prometheus answers it, if it does.
    async fn value(&self, query: &str) -> Option<f64> {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/query", self.url))
            .form(&[("query", query)])
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        cutover::analyzer::query::read_answer(&resp.bytes().await.ok()?).ok()
    }

    /// Waits until Prometheus has scraped `value` for the gate's query.
    async fn wait_for(&self, value: f64) {
        wait_until(
            &format!("prometheus to see {value}"),
            Duration::from_secs(30),
            || async { self.value(QUERY).await == Some(value) },
        )
        .await;
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        self.stop();
    }
}

const QUERY: &str = "max(db_pool_saturation{env=\"new\"})";

fn plan(on_fail: &str) -> String {
    format!(
        "name = \"db\"\n[analysis]\ninterval = \"100ms\"\nwindow = \"1s\"\n\
         [[steps]]\nweight = 10\nhold = \"500ms\"\n[[steps]]\nweight = 50\nhold = \"1h\"\n\
         [[steps]]\nweight = 100\n\
         [[gates]]\nname = \"db pool\"\nquery = '{QUERY}'\nmax = 0.8\non_fail = \"{on_fail}\"\n"
    )
}

struct Setup {
    server: Server,
    prom: Prom,
    exporter: Exporter,
    _envs: [cutover::demo::upstream::SimEnv; 3],
    _dir: tempfile::TempDir,
}

/// Exporter at 0.5, Prometheus seeing it, cutover serving with `[prometheus]`, the run started
/// and advanced past its first step on the healthy query.
async fn healthy_run(on_fail: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let exporter = Exporter::start(0.5).await;
    let prom = Prom::start(dir.path(), exporter.addr);
    prom.wait_for(0.5).await;
    let envs = sim_envs().await;
    let extra = format!(
        "[prometheus]\nurl = \"{}\"\ntimeout = \"1s\"\npause_after = \"2s\"\n",
        prom.url
    );
    let cfg = write_config(dir.path(), envs[0].addr, envs[1].addr, envs[2].addr, &extra);
    let server = Server::start(&cfg);
    server.start_plan(&plan(on_fail)).await;
    let st = server
        .wait_status(
            "the run to advance on a healthy query",
            Duration::from_secs(20),
            |st| st["step"] == 2,
        )
        .await;
    assert_eq!(st["state"], "running", "{st:#}");
    let gate = &st["gates"][0];
    assert_eq!(
        (gate["metric"].as_str(), gate["query"].as_bool()),
        (Some(QUERY), Some(true)),
        "{st:#}"
    );
    assert_eq!(gate["value"], 0.5, "{st:#}");
    assert_eq!(gate["threshold"], "<= 0.80");
    Setup {
        server,
        prom,
        exporter,
        _envs: envs,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_crossing_its_max_pauses_the_run() {
    let s = healthy_run("pause").await;
    s.exporter.set(0.95);
    let st = s
        .server
        .wait_for_state("paused", Duration::from_secs(20))
        .await;
    assert_eq!(st["weight"], 50.0, "{st:#}");
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("query `{QUERY}` = 0.95 > max 0.80")),
        "{reason}"
    );
    let events = s.server.events().await;
    let pause = events
        .iter()
        .rev()
        .find(|e| e["action"] == "pause")
        .expect("a pause event");
    assert_eq!(pause["actor"], "analyzer");
    assert_eq!(pause["data"]["query"], QUERY);
    assert_eq!(
        (
            pause["data"]["value"].as_f64(),
            pause["data"]["threshold"].as_f64()
        ),
        (Some(0.95), Some(0.8))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_query_gate_rolls_the_run_back() {
    let s = healthy_run("rollback").await;
    s.exporter.set(0.9);
    let st = s
        .server
        .wait_status("the rollback", Duration::from_secs(20), |st| {
            st["state"] == "rolling_back" || st["state"] == "rolled_back"
        })
        .await;
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("db pool"),
        "{st:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prometheus_the_run_holds_then_pauses() {
    let mut s = healthy_run("rollback").await;
    s.prom.stop();
    let st = s
        .server
        .wait_status("the run to hold", Duration::from_secs(20), |st| {
            st["reason"]
                .as_str()
                .is_some_and(|r| r.contains("cannot judge query"))
        })
        .await;
    assert_eq!(
        (st["state"].as_str(), st["step"].as_u64()),
        (Some("running"), Some(2)),
        "{st:#}"
    );
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot reach Prometheus"),
        "{st:#}"
    );
    // The gate says Prometheus did not answer, not that users were too few.
    let gate = st["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["query"] == true))
        .cloned()
        .unwrap_or_default();
    assert_eq!(gate["verdict"], "no_answer", "{st:#}");
    let (code, shown, _) = s.server.cli(&["status"]);
    assert!(code == 0 && shown.contains("NO ANSWER"), "{shown}");
    let st = s
        .server
        .wait_for_state("paused", Duration::from_secs(20))
        .await;
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Prometheus has not answered query"),
        "{reason}"
    );
    assert_eq!(
        st["weight"], 50.0,
        "a query that cannot be asked never rolls back: {st:#}"
    );
}

/// A "Prometheus" that accepts connections and never answers (a hung server, a black-holed
/// route behind a live socket).
async fn silent_prometheus() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_prometheus_never_delays_a_command_or_the_other_gates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, silent) = silent_prometheus().await;
    let envs = sim_envs().await;
    // Each ask waits 30 s for an answer that never comes.
    let extra =
        format!("[prometheus]\nurl = \"http://{addr}\"\ntimeout = \"30s\"\npause_after = \"5m\"\n");
    let cfg = write_config(dir.path(), envs[0].addr, envs[1].addr, envs[2].addr, &extra);
    let server = Server::start(&cfg);
    let plan = format!(
        "name = \"db\"\n[analysis]\ninterval = \"100ms\"\nwindow = \"1s\"\nmin_requests = 5\n\
         [[steps]]\nweight = 50\nhold = \"1h\"\n[[steps]]\nweight = 100\n\
         [[gates]]\nname = \"db pool\"\nquery = '{QUERY}'\nmax = 0.8\n\
         [[gates]]\nname = \"new errors\"\nmetric = \"new.error_rate\"\nmax = 0.05\nafter = 2\n\
         on_fail = \"rollback\"\n"
    );
    server.start_plan(&plan).await;
    // The first ask is under way by now, and will be for 30 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = std::time::Instant::now();
    let (code, out, err) = server.cli(&["pause", "--reason", "looking at the pool"]);
    let took = asked.elapsed();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        took < Duration::from_secs(10),
        "a pause took {took:?} while Prometheus was silent"
    );
    let st = server.status().await;
    assert_eq!(st["state"], "paused", "{st:#}");

    // The other gates are judged every interval all the same: a failing NEW is rolled back
    // long before one ask could have ended.
    let (code, out, err) = server.cli(&["resume", "--reason", "go on"]);
    assert_eq!(code, 0, "{out}{err}");
    envs[1]
        .behaviour
        .error_permille
        .store(1000, Ordering::Relaxed);
    let load = common::load::Load::start(
        server.proxy_url("/"),
        4,
        200,
        Duration::from_millis(5),
        Duration::from_secs(20),
    );
    let st = server
        .wait_status(
            "the new-errors gate to roll back",
            Duration::from_secs(15),
            |st| matches!(st["state"].as_str(), Some("rolling_back" | "rolled_back")),
        )
        .await;
    let db = st["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == "db pool"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(db["verdict"], "no_answer", "{st:#}");
    load.stop().await;
    silent.abort();
}
