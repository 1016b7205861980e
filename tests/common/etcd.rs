//! Real etcd servers for the fleet tests: one member or a cluster, each member a child
//! process on free loopback ports with its data in a temp dir, killed on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Member {
    name: String,
    client: u16,
    peer: u16,
    data: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of one or more members.
pub struct Etcd {
    members: Vec<Member>,
    cluster: String,
    /// Clients must speak TLS and show a certificate from this CA.
    tls: Option<Tls>,
    _dir: tempfile::TempDir,
}

/// The files of a member that takes clients over mutual TLS.
#[derive(Clone)]
pub struct Tls {
    pub ca: PathBuf,
    pub server: (PathBuf, PathBuf),
    /// A client certificate and key the member accepts (for its health check).
    pub client: (PathBuf, PathBuf),
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Etcd {
    pub fn single() -> Etcd {
        Etcd::cluster(1)
    }

    /// One member whose clients must speak TLS and show a certificate signed by `tls.ca`.
    pub fn single_tls(tls: Tls) -> Etcd {
        Etcd::start(1, Some(tls))
    }

    /// `n` members forming one cluster, all started and healthy.
    pub fn cluster(n: usize) -> Etcd {
        Etcd::start(n, None)
    }

    fn start(n: usize, tls: Option<Tls>) -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                data: dir.path().join(format!("m{i}")),
                child: None,
            })
            .collect();
        let cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members,
            cluster,
            tls,
            _dir: dir,
        };
        for i in 0..n {
            etcd.spawn(i);
        }
        for i in 0..n {
            etcd.wait_healthy(i);
        }
        etcd
    }

    fn spawn(&mut self, i: usize) {
        let cluster = self.cluster.clone();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let m = &mut self.members[i];
        let client = format!("{scheme}://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let mut cmd = Command::new("etcd");
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.server.0)
                .arg("--key-file")
                .arg(&t.server.1)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                "new",
            ])
            .args(["--initial-cluster-token", "cutover-test"])
            // Quick elections on loopback.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the etcd server (apt install etcd-server)");
        m.child = Some(child);
    }

    /// Wait until member `i` answers its health check (at most 30 s).
    pub fn wait_healthy(&self, i: usize) {
        let port = self.members[i].client;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let healthy = match &self.tls {
                None => health(port),
                Some(t) => health_tls(port, t),
            };
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd member {i} on port {port} did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.members
            .iter()
            .map(|m| format!("{scheme}://127.0.0.1:{}", m.client))
            .collect()
    }

    /// `endpoints = [...]` for a config.
    pub fn endpoints_toml(&self) -> String {
        let quoted: Vec<String> = self
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    /// Kill member `i` (SIGKILL) and wait for it to be gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start member `i` again on its data (after [`Etcd::kill`]) and wait until healthy.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy(i);
    }
}

/// `GET /health` answers `"health":"true"`.
fn health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"")
}

/// `GET /health` over mutual TLS (curl, which `.ci/run` installs) answers `"health":"true"`.
fn health_tls(port: u16, t: &Tls) -> bool {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "2", "--cacert"])
        .arg(&t.ca)
        .arg("--cert")
        .arg(&t.client.0)
        .arg("--key")
        .arg(&t.client.1)
        .arg(format!("https://127.0.0.1:{port}/health"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
