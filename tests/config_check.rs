//! `cutover config check` through the real binary: the shipped config passes, and a config
//! with several problems fails with every one of them, each as a `file:line:col:` line with
//! its key and how to fix it.

use std::path::Path;
use std::process::{Command, Output};

fn config_check(files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["config", "check"])
        .args(files)
        .output()
        .expect("run cutover")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

#[test]
fn the_shipped_config_passes() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cutover.toml");
    let out = config_check(&[&file]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    assert!(stdout.contains("cutover.toml: ok — users on "), "{stdout}");
}

#[test]
fn every_problem_of_a_config_is_reported_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[listen]\n\
         adr = \"127.0.0.1:8080\"\n\
         [envs.old]\n\
         upstreams = [\"127.0.0.1:9001\"]\n\
         conect_timeout = \"1s\"\n\
         [envs.new]\n\
         upstreams = [\"nowhere\"]\n\
         [envs.fallback]\n\
         upstreams = [\"127.0.0.1:9021\"]\n\
         [proxy]\n\
         client_lane = \"yes\"\n\
         [limits]\n\
         idle_timeout = \"soon\"\n",
    )
    .expect("write config");
    let out = config_check(&[&file]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let shown = file.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    let expect = [
        "2:1: `listen.adr`: unknown key `adr` in [listen] — did you mean `addr`?",
        "5:1: `envs.old.conect_timeout`: unknown key `conect_timeout` in [envs.old] — did you mean `connect_timeout`?",
        "7:14: `envs.new.upstreams`: `nowhere` has no port: write \"nowhere:PORT\"",
        "11:1: `proxy.client_lane`: invalid type: string \"yes\", expected a boolean — write `client_lane = true` or `client_lane = false`",
        "13:16: `limits.idle_timeout`: `soon` is not a duration",
    ];
    assert_eq!(lines.len(), expect.len() + 2, "{stderr}");
    // The missing listen.addr is reported once, where [listen] is.
    assert!(
        lines[0].starts_with(&format!("{shown}:1:1: `listen.addr`: missing")),
        "{stderr}"
    );
    for (line, want) in lines[1..].iter().zip(expect) {
        assert!(
            line.starts_with(&format!("{shown}:{want}")),
            "want {want}\n got {line}\nall:\n{stderr}"
        );
    }
    assert_eq!(lines[lines.len() - 1], format!("{shown}: 6 problems"));
}

#[test]
fn an_unreadable_config_names_the_file() {
    let out = config_check(&[Path::new("/nonexistent/cutover.toml")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("/nonexistent/cutover.toml: cannot read the config: "),
        "{stderr}"
    );
}

#[test]
fn the_files_a_config_names_are_read_as_serve_reads_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\nname = \"ada\"\nrole = \"admin\"\ntoken = \"0123456789abcdef0123\"\n",
    )
    .expect("write tokens");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[listen]\naddr = \"127.0.0.1:8080\"\ntls_cert = \"missing.pem\"\ntls_key = \"missing.key\"\n\
         [admin]\ntokens_file = \"tokens.toml\"\n\
         [envs.old]\nupstreams = [\"127.0.0.1:9001\"]\n[envs.new]\nupstreams = [\"127.0.0.1:9002\"]\n\
         [envs.fallback]\nupstreams = [\"127.0.0.1:9003\"]\n",
    )
    .expect("write config");
    let out = config_check(&[&file]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`listen.tls_cert`: cannot read certificate file")
            && stderr.contains("missing.pem"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`admin.tokens_file`: ") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    // With the tokens file private and no certificate, the same config passes.
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text_now = std::fs::read_to_string(&file).expect("read");
    let plain = text_now.replace(
        "tls_cert = \"missing.pem\"\ntls_key = \"missing.key\"\n",
        "",
    );
    std::fs::write(&file, plain).expect("write config");
    let out = config_check(&[&file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
