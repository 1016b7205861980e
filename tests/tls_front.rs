//! Issue 20 §1 through the real binary: the users' listener over HTTPS (ALPN h2 and
//! HTTP/1.1, the forwarded scheme), certificates chosen by SNI, a plain-HTTP request and a
//! silent client on the TLS listener, certificates reloaded for new connections while an open
//! one keeps working, a bad certificate refused on reload with the old one kept, and the admin
//! API over HTTPS with the CLI and `--ca-file`. Certificates come from throw-away openssl CAs
//! in temp dirs (tests/common/testca.rs).

mod common;
#[path = "common/testca.rs"]
mod testca;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::raw;
use common::server::{bin, Server};
use cutover::demo::upstream::SimEnv;
use testca::{Leaf, TestCa};

/// A config in `dir` for `envs`, with `listen` and `admin` lines in those sections.
fn write_config(dir: &Path, envs: [SocketAddr; 3], listen: &str, admin: &str) -> PathBuf {
    let [old, new, fallback] = envs;
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n{listen}\n[admin]\naddr = \"127.0.0.1:0\"\n{admin}\n\
         [store]\npath = \"store\"\n[envs.old]\nupstreams = [\"{old}\"]\n\
         [envs.new]\nupstreams = [\"{new}\"]\n[envs.fallback]\nupstreams = [\"{fallback}\"]\n\
         [limits]\nheader_read_timeout = \"1s\"\n"
    );
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn tls_lines(leaf: &Leaf) -> String {
    format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        leaf.cert.display(),
        leaf.key.display()
    )
}

/// Simulated envs (kept alive by the caller) with their addresses, and a temp dir.
async fn envs_and_dir() -> ([SimEnv; 3], [SocketAddr; 3], tempfile::TempDir) {
    let envs = common::sim_envs().await;
    let addrs = [envs[0].addr, envs[1].addr, envs[2].addr];
    (envs, addrs, tempfile::tempdir().expect("tempdir"))
}

/// `POST /v1/reload`: its status and body.
async fn reload(s: &Server) -> (reqwest::StatusCode, String) {
    let api = s.api();
    let r = api.post(s.url("/v1/reload")).send().await.expect("reload");
    (r.status(), r.text().await.unwrap_or_default())
}

/// An HTTPS client trusting only `ca`, reaching `name` at `proxy` (SNI = `name`).
fn https_client(ca: &Path, name: &str, proxy: SocketAddr, http1: bool) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("CA file");
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA pem"))
        .resolve(name, proxy)
        .pool_idle_timeout(Duration::from_secs(60))
        .timeout(Duration::from_secs(10));
    if http1 {
        b = b.http1_only();
    }
    b.build().expect("client")
}

/// GET `path` on `name` (the version spoken and the sim env's JSON echo), or why it failed.
async fn get(
    c: &reqwest::Client,
    name: &str,
    port: u16,
    path: &str,
) -> Result<(reqwest::Version, serde_json::Value), String> {
    let r = c
        .get(format!("https://{name}:{port}{path}"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let version = r.version();
    assert_eq!(r.status(), 200, "status");
    Ok((version, r.json().await.map_err(|e| e.to_string())?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_h2_and_http1_forwards_https_and_picks_certificates_by_sni() {
    let (_envs, addrs, dir) = envs_and_dir().await;
    let ca = TestCa::new("front CA");
    let app = ca.leaf("app", &["app.test"]);
    let other = ca.leaf("other", &["other.test"]);
    let listen = format!(
        "{}[[listen.certs]]\ncert = \"{}\"\nkey = \"{}\"\n",
        tls_lines(&app),
        other.cert.display(),
        other.key.display()
    );
    let cfg = write_config(dir.path(), addrs, &listen, "");
    let s = Server::start(&cfg);
    let port = s.proxy.port();

    // ALPN h2 by default, HTTP/1.1 when the client offers only that: both answered alike.
    let h2 = https_client(&ca.cert, "app.test", s.proxy, false);
    let (v, body) = get(&h2, "app.test", port, "/a").await.expect("h2");
    assert_eq!(v, reqwest::Version::HTTP_2);
    assert_eq!(body["headers"]["x-forwarded-proto"], "https", "{body:#}");
    assert!(
        body["headers"]["forwarded"]
            .as_str()
            .is_some_and(|f| f.contains("proto=https")),
        "{body:#}"
    );
    let h1 = https_client(&ca.cert, "app.test", s.proxy, true);
    for _ in 0..3 {
        // Several on one connection: the own HTTP/1.1 lane runs over TLS too.
        let (v, body) = get(&h1, "app.test", port, "/b").await.expect("h1");
        assert_eq!(v, reqwest::Version::HTTP_11);
        assert_eq!(body["headers"]["x-forwarded-proto"], "https", "{body:#}");
        assert_eq!(body["path"], "/b");
    }

    // SNI: other.test gets its own certificate (the default one does not cover it); a name
    // no certificate covers gets the default, which the client then refuses.
    let c = https_client(&ca.cert, "other.test", s.proxy, true);
    get(&c, "other.test", port, "/").await.expect("other.test");
    let c = https_client(&ca.cert, "third.test", s.proxy, true);
    let e = get(&c, "third.test", port, "/")
        .await
        .expect_err("third.test is on no certificate");
    assert!(e.contains("NotValidForName"), "{e}");

    let metrics = s.metrics().await;
    assert!(
        !metrics.contains("cutover_tls_handshakes_total{result=\"done\"} 0\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_listener_gets_400_and_a_silent_client_is_closed() {
    let (_envs, addrs, dir) = envs_and_dir().await;
    let ca = TestCa::new("front CA");
    let app = ca.leaf("app", &["app.test"]);
    let s = Server::start(&write_config(dir.path(), addrs, &tls_lines(&app), ""));

    let reply = raw::exchange(
        s.proxy,
        b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(reply.status(), Some(400), "{}", reply.text());
    assert!(reply.body().contains("https://"), "{}", reply.text());
    assert!(reply.closed, "the connection stays open after the 400");

    // Nothing sent at all: closed at header_read_timeout (1 s), its slot freed.
    let start = Instant::now();
    let silent = raw::exchange(s.proxy, b"", Duration::from_secs(5)).await;
    assert!(silent.closed && silent.bytes.is_empty(), "{silent:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(900) && start.elapsed() < Duration::from_secs(4),
        "closed after {:?}; header_read_timeout is 1s",
        start.elapsed()
    );
    // The worker counts a handshake's end after it closed the connection: wait for both.
    let lines = [
        "cutover_tls_handshakes_total{result=\"plain_http\"} 1\n",
        "cutover_tls_handshakes_total{result=\"timeout\"} 1\n",
    ];
    let counted = common::eventually(common::WAIT, || async {
        let metrics = s.metrics().await;
        lines.iter().all(|l| metrics.contains(l))
    })
    .await;
    let metrics = s.metrics().await;
    for line in lines {
        assert!(counted && metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_new_certificates_to_new_connections_and_refuses_bad_ones() {
    let (_envs, addrs, dir) = envs_and_dir().await;
    let (ca1, ca2) = (TestCa::new("first CA"), TestCa::new("second CA"));
    let first = ca1.leaf("app", &["app.test"]);
    let second = ca2.leaf("app", &["app.test"]);
    // The files the config names; a renewal writes over them.
    let live = Leaf {
        cert: dir.path().join("app.pem"),
        key: dir.path().join("app.key"),
    };
    let install = |from: &Leaf| {
        std::fs::copy(&from.cert, &live.cert).expect("cert");
        std::fs::copy(&from.key, &live.key).expect("key");
    };
    install(&first);
    let s = Server::start(&write_config(dir.path(), addrs, &tls_lines(&live), ""));
    let port = s.proxy.port();

    let open = https_client(&ca1.cert, "app.test", s.proxy, true);
    get(&open, "app.test", port, "/before")
        .await
        .expect("first certificate");

    install(&second);
    let (_, text) = reload(&s).await;
    assert!(text.contains("listen.tls_cert"), "{text}");
    // The open connection (its client trusts only the first CA, so a new connection would
    // fail) keeps working; new connections get the second certificate.
    get(&open, "app.test", port, "/after")
        .await
        .expect("the open connection");
    let new = https_client(&ca2.cert, "app.test", s.proxy, true);
    get(&new, "app.test", port, "/")
        .await
        .expect("second certificate");
    let stale = https_client(&ca1.cert, "app.test", s.proxy, true);
    get(&stale, "app.test", port, "/")
        .await
        .expect_err("a new connection still got the first certificate");

    // A key that is not a key: refused, naming the file; the second certificate stays.
    std::fs::write(&live.key, "not a key\n").expect("break the key");
    let (status, text) = reload(&s).await;
    assert!(!status.is_success(), "{status} {text}");
    assert!(text.contains(&*live.key.to_string_lossy()), "{text}");
    let again = https_client(&ca2.cert, "app.test", s.proxy, true);
    get(&again, "app.test", port, "/")
        .await
        .expect("the second certificate kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_over_https_with_the_cli_and_a_ca_file() {
    let (_envs, addrs, dir) = envs_and_dir().await;
    let ca = TestCa::new("admin CA");
    let admin = ca.leaf("admin", &["localhost"]);
    let s = Server::start(&write_config(dir.path(), addrs, "", &tls_lines(&admin)));
    assert!(s.admin.starts_with("https://127.0.0.1:"), "{}", s.admin);

    let cli = |ca_file: Option<&Path>| {
        let mut c = Command::new(bin());
        c.args(["status", "--json", "--admin", &s.admin])
            .env("CUTOVER_TOKEN", &s.token)
            .env_remove("CUTOVER_CA_FILE")
            .current_dir(dir.path());
        if let Some(f) = ca_file {
            c.arg("--ca-file").arg(f);
        }
        c.output().expect("run the CLI")
    };
    let out = cli(Some(&ca.cert));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"state\""), "{stdout}");

    // Without the CA the certificate is not trusted, and the CLI says so.
    let out = cli(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "trusted without the CA: {stderr}");
    assert!(
        stderr.contains("certificate") || stderr.contains("UnknownIssuer"),
        "{stderr}"
    );

    // Plain HTTP on the admin listener: the 400 that says to use https://.
    let admin_addr: SocketAddr = s
        .admin
        .trim_start_matches("https://")
        .parse()
        .expect("admin addr");
    let reply = raw::exchange(
        admin_addr,
        b"GET /v1/status HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(reply.status(), Some(400), "{}", reply.text());
}
