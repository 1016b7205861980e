//! Fleet mode end to end: real etcd servers and three real `cutover serve` instances sharing
//! one migration (`[store] backend = "etcd"`). Built with `--features etcd` (`.ci/run` does).
#![cfg(feature = "etcd")]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::server::Server;
use common::{client, get_as, sim_envs, WAIT};
use cutover::demo::upstream::SimEnv;
use serde_json::Value;

const TTL_S: u64 = 2;

/// A plan whose first step holds long enough to look around in.
const PLAN: &str = r#"
name = "fleet"
salt = "fleet-salt"
[analysis]
interval = "250ms"
window = "5s"
min_requests = 30
[[steps]]
weight = 10
hold = "2s"
[[steps]]
weight = 40
hold = "2s"
[[steps]]
weight = 100
approval = true
[[gates]]
name = "new errors"
metric = "new.error_rate"
max = 0.2
after = 2
on_fail = "rollback"
"#;

struct Fleet {
    servers: Vec<Server>,
    envs: [SimEnv; 3],
    _dirs: Vec<tempfile::TempDir>,
}

/// `n` instances named a, b, c... on the etcd `endpoints`, under one prefix.
async fn fleet(n: usize, endpoints: &str, prefix: &str) -> Fleet {
    let envs = sim_envs().await;
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..n {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = (b'a' + i as u8) as char;
        let cfg = dir.path().join("cutover.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[store]
path = "store"
backend = "etcd"
endpoints = {endpoints}
prefix = "{prefix}"
instance = "{name}"
lease_ttl = "{TTL_S}s"
timeout = "1s"
[envs.old]
upstreams = ["{}"]
[envs.new]
upstreams = ["{}"]
[envs.fallback]
upstreams = ["{}"]
"#,
                envs[0].addr, envs[1].addr, envs[2].addr
            ),
        )
        .expect("write config");
        servers.push(Server::start(&cfg));
        dirs.push(dir);
    }
    let f = Fleet {
        servers,
        envs,
        _dirs: dirs,
    };
    for s in &f.servers {
        s.wait_status("every instance listed, one leader", WAIT, |st| {
            st["fleet"]["instances"].as_array().map(Vec::len) == Some(n)
                && st["fleet"]["leader"].is_string()
        })
        .await;
    }
    f
}

fn leader(st: &Value) -> String {
    st["fleet"]["leader"].as_str().unwrap_or("").to_owned()
}

/// Index of the instance whose name is `id` ("a" → 0).
fn index(id: &str) -> usize {
    (id.as_bytes()[0] - b'a') as usize
}

async fn post(s: &Server, path: &str) -> (u16, String) {
    let r = s.api().post(s.url(path)).send().await.expect("post");
    let code = r.status().as_u16();
    (code, r.text().await.unwrap_or_default())
}

/// Users' requests through instance `i`, as `prefix0..prefixN`; all must be answered.
async fn traffic(s: &Server, prefix: &str, n: usize) -> HashMap<String, String> {
    let c = client();
    let mut out = HashMap::new();
    for u in 0..n {
        let user = format!("{prefix}{u}");
        let (code, env) = get_as(&c, &s.proxy_url("/"), &user).await;
        assert_eq!(code, 200, "user {user} through {}", s.proxy);
        out.insert(user, env);
    }
    out
}

async fn events(s: &Server) -> Vec<Value> {
    s.events().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_act_as_one_cutover() {
    let etcd = Etcd::single();
    let f = fleet(3, &etcd.endpoints_toml(), "/cutover/one").await;
    let [a, b, c] = [&f.servers[0], &f.servers[1], &f.servers[2]];

    // A start on one instance is applied by all, within a second of its answer.
    f.envs[1]
        .behaviour
        .error_permille
        .store(0, std::sync::atomic::Ordering::Relaxed);
    a.start_plan(PLAN).await;
    let started = Instant::now();
    for s in [b, c] {
        s.wait_status("the start seen", WAIT, |st| {
            st["state"] == "running" && st["weight"] == 10.0
        })
        .await;
    }
    let spread = started.elapsed();
    assert!(spread < Duration::from_secs(2), "took {spread:?}");

    // Same user, same env, through every instance.
    let through: Vec<HashMap<String, String>> = vec![
        traffic(a, "u", 200).await,
        traffic(b, "u", 200).await,
        traffic(c, "u", 200).await,
    ];
    assert_eq!(through[0], through[1]);
    assert_eq!(through[0], through[2]);
    let on_new = through[0].values().filter(|e| *e == "new").count();
    assert!(
        (5..=45).contains(&on_new),
        "{on_new} of 200 users on NEW at 10%"
    );

    // A pause on one is seen by all; a resume on another too.
    let (code, body) = post(b, "/v1/pause").await;
    assert_eq!(code, 200, "{body}");
    for s in [a, c] {
        s.wait_for_state("paused", WAIT).await;
    }
    let (code, body) = post(c, "/v1/resume").await;
    assert_eq!(code, 200, "{body}");
    for s in [a, b] {
        s.wait_for_state("running", WAIT).await;
    }

    // Gates judge the traffic of all: NEW fails, and the failing requests reach NEW only
    // through the instances that do not lead; the leader rolls back.
    let st = a.status().await;
    let lead = index(&leader(&st));
    f.envs[1]
        .behaviour
        .error_permille
        .store(1000, std::sync::atomic::Ordering::Relaxed);
    let others: Vec<&Server> = (0..3)
        .filter(|i| *i != lead)
        .map(|i| &f.servers[i])
        .collect();
    let deadline = Instant::now() + WAIT;
    let c2 = client();
    let mut n = 0;
    loop {
        for s in &others {
            let _ = get_as(&c2, &s.proxy_url("/"), &format!("g{n}")).await;
            n += 1;
        }
        let st = f.servers[lead].status().await;
        if st["state"] == "rolling_back" || st["state"] == "rolled_back" {
            break;
        }
        assert!(Instant::now() < deadline, "no rollback: {st:#}");
    }
    let ev = events(a).await;
    let rollback = ev
        .iter()
        .find(|e| e["action"] == "rollback")
        .expect("a rollback event");
    assert_eq!(rollback["actor"], "analyzer");
    assert!(
        rollback["reason"]
            .as_str()
            .unwrap_or("")
            .contains("new errors"),
        "{rollback}"
    );
    for s in &f.servers {
        s.wait_status("the rollback seen", WAIT, |st| {
            st["state"] == "rolling_back" || st["state"] == "rolled_back"
        })
        .await;
    }
    // One log, the same through every instance.
    let ids = |ev: &[Value]| ev.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&events(b).await)[..ev.len()], ids(&ev)[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_the_run_goes_on_once() {
    let etcd = Etcd::single();
    let mut f = fleet(3, &etcd.endpoints_toml(), "/cutover/kill").await;
    // No gates to satisfy: a plan of holds and an approval.
    let plan = PLAN.split("[[gates]]").next().expect("plan").to_owned();
    f.servers[0].start_plan(&plan).await;
    let st = f.servers[0].status().await;
    let lead = index(&leader(&st));
    f.servers[lead].kill9();
    let killed = Instant::now();
    let survivor = &f.servers[(lead + 1) % 3];
    let st = survivor
        .wait_status("another leader", WAIT, |st| {
            let l = leader(st);
            !l.is_empty() && index(&l) != lead
        })
        .await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(TTL_S + 2),
        "a new leader after {took:?} (TTL {TTL_S}s): {st:#}"
    );
    // The run goes on from the committed state: both holds served, the approval reached.
    survivor
        .wait_status("the approval step", WAIT, |st| {
            st["state"] == "awaiting_approval"
        })
        .await;
    let ev = events(survivor).await;
    let count = |action: &str| ev.iter().filter(|e| e["action"] == action).count();
    assert_eq!(
        (count("advance"), count("await_approval")),
        (2, 1),
        "each step once: {ev:#?}"
    );
    let mut ids: Vec<u64> = ev.iter().filter_map(|e| e["id"].as_u64()).collect();
    ids.dedup();
    assert_eq!(ids.len(), ev.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_users_are_served_and_nothing_is_decided() {
    let mut etcd = Etcd::single();
    let f = fleet(2, &etcd.endpoints_toml(), "/cutover/down").await;
    let [a, b] = [&f.servers[0], &f.servers[1]];
    a.start_plan(PLAN).await;
    b.wait_for_state("running", WAIT).await;
    let before = traffic(b, "d", 100).await;

    etcd.kill(0);
    for s in [a, b] {
        s.wait_status("etcd unreachable", WAIT, |st| {
            st["fleet"]["etcd_ok"] == false
        })
        .await;
    }
    // Served throughout, at the last committed weight, by the same envs.
    assert_eq!(traffic(a, "d", 100).await, before);
    assert_eq!(traffic(b, "d", 100).await, before);
    // A command cannot be committed: it fails and nothing changes.
    let (code, body) = post(a, "/v1/pause").await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("nothing changed"), "{body}");
    assert_eq!(a.status().await["state"], "running");
    let text = b.cli(&["status"]).1;
    assert!(text.contains("ETCD UNREACHABLE"), "{text}");

    etcd.restart(0);
    for s in [a, b] {
        s.wait_status("etcd back", WAIT, |st| {
            st["fleet"]["etcd_ok"] == true && st["fleet"]["leader"].is_string()
        })
        .await;
    }
    let (code, body) = post(b, "/v1/pause").await;
    assert_eq!(code, 200, "{body}");
    a.wait_for_state("paused", WAIT).await;
    assert_eq!(traffic(a, "d", 100).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_loses_one_member_changes_nothing() {
    let mut etcd = Etcd::cluster(3);
    let f = fleet(2, &etcd.endpoints_toml(), "/cutover/three").await;
    let [a, b] = [&f.servers[0], &f.servers[1]];
    a.start_plan(PLAN).await;
    b.wait_for_state("running", WAIT).await;
    etcd.kill(0);
    // Commands still commit and reach every instance; nobody reports etcd down.
    let (code, body) = post(b, "/v1/pause").await;
    assert_eq!(code, 200, "{body}");
    a.wait_for_state("paused", WAIT).await;
    let (code, body) = post(a, "/v1/resume").await;
    assert_eq!(code, 200, "{body}");
    b.wait_for_state("running", WAIT).await;
    for s in [a, b] {
        let st = s.status().await;
        assert_eq!(st["fleet"]["etcd_ok"], true, "{st:#}");
        assert!(st["fleet"]["leader"].is_string(), "{st:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_migrate_moves_a_single_instance_into_a_fleet() {
    let etcd = Etcd::single();
    // A single instance on sled, with a paused run.
    let (mut single, envs, dir) = common::server_with("").await;
    single.start_plan(PLAN).await;
    let (code, body) = post(&single, "/v1/pause").await;
    assert_eq!(code, 200, "{body}");
    let before = events(&single).await;
    assert_eq!(single.sigterm(WAIT), Some(0));
    drop(envs);

    let to = format!("etcd:{}/cutover/moved", etcd.endpoints()[0]);
    let from = format!("sled:{}", dir.path().join("store").display());
    let run = |args: &[&str]| {
        std::process::Command::new(common::server::bin())
            .args(args)
            .output()
            .expect("run")
    };
    let out = run(&["store", "migrate", "--from", &from, "--to", &to]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("2 event(s)"), "{said}");
    // Never into a prefix that holds a store already.
    let again = run(&["store", "migrate", "--from", &from, "--to", &to]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("migrate only into a new prefix"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let f = fleet(1, &etcd.endpoints_toml(), "/cutover/moved").await;
    let st = f.servers[0].wait_for_state("paused", WAIT).await;
    assert_eq!(st["run_id"], 1);
    assert_eq!(events(&f.servers[0]).await, before);
}
