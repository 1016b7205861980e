//! Fleet mode end to end: real etcd servers and three real `cutover serve` instances sharing
//! one migration (`[store] backend = "etcd"`), also over mutual TLS with etcd's authentication
//! on. Built with `--features etcd` (`.ci/run` does).
#![cfg(feature = "etcd")]

mod common;
#[path = "common/testca.rs"]
mod testca;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::etcd::{Etcd, Tls};
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
    fleet_with(n, endpoints, prefix, "").await
}

/// [`fleet`] with more `[store]` lines (TLS, a user).
async fn fleet_with(n: usize, endpoints: &str, prefix: &str, store: &str) -> Fleet {
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
{store}
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

/// Turn on etcd's authentication with a `root` user and a `cutover` user that may read and
/// write `prefix` only, speaking mutual TLS as `tls.client`.
async fn enable_auth(etcd: &Etcd, tls: &Tls, prefix: &str, password: &str) {
    use etcd_client::{Certificate, ConnectOptions, Identity, Permission, TlsOptions};
    let read = |p: &std::path::Path| std::fs::read(p).expect("read a TLS file");
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&tls.ca)))
        .identity(Identity::from_pem(read(&tls.client.0), read(&tls.client.1)));
    let mut c =
        etcd_client::Client::connect(etcd.endpoints(), Some(ConnectOptions::new().with_tls(tls)))
            .await
            .expect("an etcd client over TLS");
    c.user_add("root", "root-secret", None)
        .await
        .expect("root user");
    let _ = c.role_add("root").await;
    c.user_grant_role("root", "root").await.expect("root role");
    c.role_add("cutover").await.expect("cutover role");
    c.role_grant_permission("cutover", Permission::read_write(prefix).with_prefix())
        .await
        .expect("permission on the prefix");
    c.user_add("cutover", password, None)
        .await
        .expect("cutover user");
    c.user_grant_role("cutover", "cutover")
        .await
        .expect("grant");
    c.auth_enable().await.expect("auth enable");
}

/// `cutover serve` on `cfg` must exit by itself (it cannot reach its store); its stderr.
fn serve_fails(cfg: &std::path::Path) -> String {
    let mut child = std::process::Command::new(common::server::bin())
        .args(["serve", "--config"])
        .arg(cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start cutover");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cutover serve kept running on a store it cannot use");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_reaches_etcd_over_mutual_tls_as_a_user_of_its_own() {
    let ca = testca::TestCa::new("etcd CA");
    let member = ca.leaf("etcd", &["localhost"]);
    let client = ca.client("cutover", "cutover");
    let tls = Tls {
        ca: ca.cert.clone(),
        server: (member.cert.clone(), member.key.clone()),
        client: (client.cert.clone(), client.key.clone()),
    };
    let etcd = Etcd::single_tls(tls.clone());
    let prefix = "/cutover/secure";
    let secrets = tempfile::tempdir().expect("tempdir");
    let password = secrets.path().join("etcd-password");
    std::fs::write(&password, "s3cret-pass\n").expect("password file");
    let tls_lines = format!(
        "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        ca.cert.display(),
        client.cert.display(),
        client.key.display()
    );
    let store = format!(
        "{tls_lines}user = \"cutover\"\npassword_file = \"{}\"\n",
        password.display()
    );
    enable_auth(&etcd, &tls, prefix, "s3cret-pass").await;

    // Two instances on the secured etcd act as one: a start through one moves the other.
    let f = fleet_with(2, &etcd.endpoints_toml(), prefix, &store).await;
    f.servers[0].start_plan(PLAN).await;
    let st = f.servers[1]
        .wait_status("the run to reach the other instance", WAIT, |st| {
            st["weight"] == 10.0
        })
        .await;
    assert_eq!(st["fleet"]["etcd_ok"], true, "{st:#}");

    // Without a client certificate, or with a wrong password, serve stops with the reason.
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, store: &str| {
        let cfg = dir.path().join(name);
        std::fs::write(
            &cfg,
            format!(
                "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
                 [store]\npath = \"store\"\nbackend = \"etcd\"\nendpoints = {}\n\
                 prefix = \"{prefix}\"\ninstance = \"x\"\ntimeout = \"1s\"\n{store}\n\
                 [envs.old]\nupstreams = [\"127.0.0.1:1\"]\n[envs.new]\nupstreams = [\"127.0.0.1:2\"]\n\
                 [envs.fallback]\nupstreams = [\"127.0.0.1:3\"]\n",
                etcd.endpoints_toml()
            ),
        )
        .expect("config");
        cfg
    };
    let wrong = secrets.path().join("wrong-password");
    std::fs::write(&wrong, "guess\n").expect("password file");
    let err = serve_fails(&write(
        "wrong-password.toml",
        &format!(
            "{tls_lines}user = \"cutover\"\npassword_file = \"{}\"\n",
            wrong.display()
        ),
    ));
    assert!(
        err.contains("etcd") && err.to_lowercase().contains("auth"),
        "{err}"
    );
    let err = serve_fails(&write(
        "no-client-cert.toml",
        &format!(
            "ca_file = \"{}\"\nuser = \"cutover\"\npassword_file = \"{}\"\n",
            ca.cert.display(),
            password.display()
        ),
    ));
    // TLS 1.3 tells the client of a missing certificate only by closing: the error says
    // what to check.
    assert!(
        err.contains("connecting failed") && err.contains("set [store] cert_file and key_file"),
        "{err}"
    );
}
