//! Crashes (issue 9): `kill -9` at random moments of a run, 50 times in a row, always restarts
//! into the last durable state with no event lost or duplicated; a damaged or foreign store is
//! refused with a clear message and a non-zero exit.

mod common;

use std::time::{Duration, Instant};

use common::server::{serve_refused, write_config, Server};
use common::sim_envs;
use rand::{Rng, SeedableRng};
use serde_json::Value;

async fn get_json(s: &Server, path: &str) -> Value {
    s.api()
        .get(s.url(path))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

async fn events(s: &Server) -> Vec<Value> {
    match get_json(s, "/v1/events?limit=10000").await {
        Value::Array(list) => list,
        other => panic!("events: {other}"),
    }
}

async fn post(s: &Server, path: &str, body: String) -> u16 {
    s.api()
        .post(s.url(path))
        .body(body)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

/// Twenty steps of 5 % with short holds: a run advances a few steps between two kills.
fn plan() -> String {
    let mut p = String::from(
        "name = \"crash-loop\"\n[analysis]\ninterval = \"50ms\"\nwindow = \"1s\"\n\
         [rollback]\nramp = \"600ms\"\n",
    );
    for w in (5..=100).step_by(5) {
        p.push_str(&format!("[[steps]]\nweight = {w}\nhold = \"100ms\"\n"));
    }
    p
}

/// The restarted server's state must be the state recorded by one of `candidates` (the last
/// event before the restart, or any event appended since): a committed transition is never
/// lost, and none is invented.
fn matches_an_event(status: &Value, candidates: &[Value]) -> bool {
    candidates.iter().any(|e| {
        let same_state = status["state"] == e["state"];
        let w = status["weight"].as_f64().unwrap_or(-1.0);
        let ew = e["weight"].as_f64().unwrap_or(-2.0);
        // A rollback ramp lowers the weight between events (saved as progress).
        let same_weight = if status["state"] == "rolling_back" {
            w <= ew + 1e-9
        } else {
            (w - ew).abs() < 1e-9
        };
        same_state && same_weight
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_always_restarts_into_the_last_durable_state() {
    let [old, new, fallback] = sim_envs().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), old.addr, new.addr, fallback.addr, "");
    let seed: u64 = rand::random();
    eprintln!("crash loop seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut s = Server::start(&cfg);
    assert_eq!(post(&s, "/v1/start", plan()).await, 200);
    let mut log: Vec<Value> = events(&s).await;
    let (mut runs, mut rollbacks) = (1, 0);
    const KILLS: usize = 50;
    for kill in 0..KILLS {
        // A random uptime before each crash is what the test is about: kills at any moment.
        let uptime = Duration::from_millis(rng.gen_range(50..=400));
        tokio::time::sleep(uptime).await;
        // What the server had said before the crash is a floor for what it says after.
        if let Ok(Ok(list)) = tokio::time::timeout(Duration::from_millis(500), async {
            s.api()
                .get(s.url("/v1/events?limit=10000"))
                .send()
                .await?
                .json::<Vec<Value>>()
                .await
        })
        .await
        {
            log = list;
        }
        s.kill9();
        s = Server::start(&cfg);
        let before = events(&s).await;
        let status = get_json(&s, "/v1/status").await;
        let after = events(&s).await;
        let ctx = format!("seed {seed}, kill {kill} after {uptime:?}");

        // Ids 1..n, contiguous, no duplicate; nothing seen before the crash lost or changed.
        let ids: Vec<u64> = after.iter().filter_map(|e| e["id"].as_u64()).collect();
        assert_eq!(
            ids,
            (1..=ids.len() as u64).collect::<Vec<_>>(),
            "{ctx}: event ids"
        );
        if let Some(i) = (0..log.len()).find(|&i| after.get(i) != Some(&log[i])) {
            panic!(
                "{ctx}: an event seen before the crash was lost or changed: before {:#}, after {:?}",
                log[i],
                after.get(i)
            );
        }
        assert!(
            after.starts_with(&before),
            "{ctx}: events changed while reading"
        );
        let candidates = &after[before.len().saturating_sub(1)..];
        assert!(
            matches_an_event(&status, candidates),
            "{ctx}: restarted as {} {} but the last events are {candidates:?}",
            status["state"],
            status["weight"]
        );
        if status["state"] == "running" {
            // At its step's weight, or on the way there: a run started after one that
            // completed at 100 % walks down to its first step at the plan's pace.
            let w = status["weight"].as_f64().unwrap_or(0.0);
            let at_step = status["step"].as_f64() == Some(w / 5.0);
            let reason = status["reason"].as_str().unwrap_or_default();
            assert!(
                at_step || reason.contains("ramping"),
                "{ctx}: running at step {} with weight {w}, not ramping: {reason}",
                status["step"]
            );
        }
        log = after;

        // Keep the crashes landing on every kind of moment: new runs and rollbacks too.
        match status["state"].as_str() {
            Some("completed" | "rolled_back" | "aborted") => {
                assert_eq!(post(&s, "/v1/start", plan()).await, 200, "{ctx}");
                runs += 1;
            }
            Some("running") if kill % 10 == 9 => {
                let code = post(&s, "/v1/rollback", String::new()).await;
                assert_eq!(code, 200, "{ctx}");
                rollbacks += 1;
            }
            _ => {}
        }
    }
    // And the last run goes on: it completes or rolls back to its end.
    s.wait_status(
        "the run to go on to its end after the last restart",
        Duration::from_secs(20),
        |st| matches!(st["state"].as_str(), Some("completed" | "rolled_back")),
    )
    .await;
    let total = events(&s).await.len();
    eprintln!(
        "crash loop: {KILLS} kills, {runs} runs, {rollbacks} rollbacks, {total} events, {:?}",
        started.elapsed()
    );
    assert!(runs >= 2, "no run completed across {KILLS} crashes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_foreign_store_is_refused_with_a_clear_message() {
    let [old, new, fallback] = sim_envs().await;
    // Foreign: a directory with somebody else's files.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), old.addr, new.addr, fallback.addr, "");
    std::fs::create_dir_all(dir.path().join("store")).expect("mkdir");
    std::fs::write(dir.path().join("store/important.csv"), "a,b\n").expect("write");
    let (code, err) = serve_refused(&cfg);
    assert_ne!(code, Some(0));
    assert!(err.contains("is not a cutover plan store"), "{err}");
    assert!(err.contains("important.csv"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("store/important.csv")).expect("kept"),
        "a,b\n"
    );

    // Damaged: a real store whose files were overwritten with garbage.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), old.addr, new.addr, fallback.addr, "");
    let s = Server::start(&cfg);
    assert_eq!(post(&s, "/v1/start", plan()).await, 200);
    drop(s);
    let sled = dir.path().join("store/sled");
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for name in ["conf", "db"] {
        let path = sled.join(name);
        let len = std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or(0)
            .max(64);
        let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        std::fs::write(&path, junk).expect("damage");
    }
    let (code, err) = serve_refused(&cfg);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("cannot be read") || err.contains("is not a cutover plan store"),
        "{err}"
    );
    assert!(err.contains("store"), "{err}");

    // Missing pieces: sled would quietly recreate them; we refuse instead.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), old.addr, new.addr, fallback.addr, "");
    drop(Server::start(&cfg));
    std::fs::remove_file(dir.path().join("store/sled/conf")).expect("rm");
    let (code, err) = serve_refused(&cfg);
    assert_ne!(code, Some(0));
    assert!(err.contains("lacks the sled file(s) conf"), "{err}");
}
