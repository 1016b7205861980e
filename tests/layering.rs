//! The import direction docs/architecture.md draws, checked on the source text.
//!
//! The pure core — router (but its shared cell, `router/publish.rs`), plan, the analyzer's
//! evaluation (not its probe task), `orchestrator::machine` and the shared words in
//! `vocab.rs` — takes data and time as arguments: no tokio, hyper or sled, no wall clock, no
//! filesystem or sockets, and only the crate modules listed for it. Above it, a few imports
//! that once ran upward must not come back. Each failure names the file, the line and the rule.
//! Test modules inside those files are checked too: a pure module's tests need no I/O either.

use std::fs;
use std::path::{Path, PathBuf};

/// Things no pure-core file may name, and why.
const IMPURE: &[(&str, &str)] = &[
    ("tokio", "uses tokio"),
    ("hyper", "uses hyper"),
    ("sled", "uses sled"),
    ("Instant::now", "reads the wall clock (Instant::now)"),
    ("SystemTime", "reads the wall clock (SystemTime)"),
    ("std::fs", "touches the filesystem (std::fs)"),
    (
        "std::net",
        "touches the network (std::net beyond its address types)",
    ),
    ("std::thread", "starts or sleeps threads (std::thread)"),
];

/// What of `std::net` is plain data (an address, parsed or printed), not a socket or a lookup.
const ADDRESS_TYPES: &[&str] = &[
    "IpAddr",
    "Ipv4Addr",
    "Ipv6Addr",
    "SocketAddr",
    "SocketAddrV4",
    "SocketAddrV6",
    "AddrParseError",
];

/// Whether every use of `std::net` on the line names only [`ADDRESS_TYPES`].
fn only_addresses(code: &str) -> bool {
    code.match_indices("std::net").all(|(at, _)| {
        let rest = &code[at + "std::net".len()..];
        let Some(rest) = rest.strip_prefix("::") else {
            return false; // `use std::net;` brings all of it
        };
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
            None => vec![rest],
        };
        names.iter().all(|n| {
            let n: String = n
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            n.is_empty() || ADDRESS_TYPES.contains(&n.as_str())
        })
    })
}

/// A group of pure-core files and the crate modules they may import.
struct Core {
    name: &'static str,
    files: Vec<PathBuf>,
    may_import: &'static [&'static str],
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn files(names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(|n| src().join(n)).collect()
}

fn cores() -> Vec<Core> {
    vec![
        Core {
            name: "router",
            files: files(&[
                "router/mod.rs",
                "router/hash.rs",
                "router/key.rs",
                "router/table.rs",
            ]),
            may_import: &["router"],
        },
        Core {
            name: "plan",
            files: rust_files(&src().join("plan")),
            // `metrics` for the metric names a gate reads (`metrics::names`).
            may_import: &["plan", "router", "metrics", "diag", "vocab"],
        },
        Core {
            name: "analyzer's evaluation",
            files: files(&[
                "analyzer/mod.rs",
                "analyzer/gates.rs",
                "analyzer/judge.rs",
                "analyzer/stats.rs",
                // Query gates judged on Prometheus's answers, passed in as data; the client
                // that asks is `src/prometheus`, outside the core.
                "analyzer/query.rs",
            ]),
            // `metrics` for the window snapshot it judges; never `api`: the edge builds that.
            may_import: &["analyzer", "metrics", "plan", "router", "vocab"],
        },
        Core {
            name: "orchestrator::machine",
            files: rust_files(&src().join("orchestrator/machine")),
            may_import: &[
                "orchestrator::machine",
                "analyzer",
                "plan",
                "router",
                "vocab",
            ],
        },
        Core {
            name: "foresight",
            files: rust_files(&src().join("foresight")),
            // The recorded figures are metrics' window; the replay drives the machine.
            may_import: &[
                "foresight",
                "orchestrator::machine",
                "analyzer",
                "metrics",
                "plan",
                "router",
                "vocab",
            ],
        },
        Core {
            name: "vocab",
            files: files(&["vocab.rs"]),
            may_import: &[],
        },
    ]
}

/// One source line that is code: its number, and its text without a trailing `//` comment.
/// Comment lines (`//`, `///`, `//!`) are skipped; so is a line inside a `/* */` block.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut in_block = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if in_block {
            in_block = !t.contains("*/");
            continue;
        }
        if t.starts_with("/*") {
            in_block = !t.contains("*/");
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        let code = match line.find("//") {
            // Keep `//` inside a string literal (a URL); cut a trailing comment.
            Some(at) if line[..at].matches('"').count() % 2 == 0 => &line[..at],
            _ => line,
        };
        out.push((i + 1, code.to_owned()));
    }
    out
}

fn shown(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Whether `code` names `word` as a path segment (not as part of a longer identifier).
fn names(code: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// The crate modules `code` refers to as `crate::a::b...` (each as its full path).
fn crate_paths(code: &str) -> Vec<String> {
    code.match_indices("crate::")
        .filter(|(at, _)| {
            // `crate::` itself, not `cutover_crate::` or `$crate::`.
            !code[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
        })
        .map(|(at, _)| {
            code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect::<String>()
        })
        .collect()
}

/// A crate path (`orchestrator::machine::Control`) is allowed when it is, or lies under, one
/// of `allowed` (`orchestrator::machine`). A bare `crate::` in a brace group (`crate::{a, b}`)
/// yields an empty path, refused so that a grouped import cannot hide a module.
fn allowed(path: &str, allowed: &[&str]) -> bool {
    allowed
        .iter()
        .any(|a| path == *a || path.starts_with(&format!("{a}::")))
}

fn report(broken: &[String]) {
    assert!(
        broken.is_empty(),
        "{} layering rule(s) broken:\n  {}",
        broken.len(),
        broken.join("\n  ")
    );
}

#[test]
fn the_pure_core_uses_no_runtime_clock_or_io() {
    let mut broken = Vec::new();
    for core in cores() {
        assert!(!core.files.is_empty(), "{}: no files found", core.name);
        for file in &core.files {
            assert!(file.is_file(), "{} is listed but missing", file.display());
            for (n, code) in code_lines(file) {
                for (word, why) in IMPURE {
                    if names(&code, word) && !(*word == "std::net" && only_addresses(&code)) {
                        broken.push(format!(
                            "{}:{n}: {} is pure core but {why}: `{}`",
                            shown(file),
                            core.name,
                            code.trim()
                        ));
                    }
                }
            }
        }
    }
    report(&broken);
}

#[test]
fn the_pure_core_imports_only_what_lies_below_it() {
    let mut broken = Vec::new();
    for core in cores() {
        for file in &core.files {
            for (n, code) in code_lines(file) {
                for path in crate_paths(&code) {
                    if !allowed(&path, core.may_import) {
                        broken.push(format!(
                            "{}:{n}: {} may import only {:?}, not `crate::{path}`",
                            shown(file),
                            core.name,
                            core.may_import
                        ));
                    }
                }
            }
        }
    }
    report(&broken);
}

/// `files` must not refer to any of `crate::{above}`.
fn must_not_import(files: &[PathBuf], above: &[&str], rule: &str, broken: &mut Vec<String>) {
    for file in files {
        for (n, code) in code_lines(file) {
            for path in crate_paths(&code) {
                if allowed(&path, above) {
                    broken.push(format!("{}:{n}: {rule}: `crate::{path}`", shown(file)));
                }
            }
        }
    }
}

#[test]
fn imports_run_downward() {
    let mut broken = Vec::new();
    must_not_import(
        &rust_files(&src().join("orchestrator")),
        &[
            "proxy", "serve", "control", "reload", "cli", "console", "demo",
        ],
        "the orchestrator must not touch the request path or what sits above it",
        &mut broken,
    );
    must_not_import(
        &rust_files(&src().join("fleet")),
        &[
            "orchestrator",
            "proxy",
            "serve",
            "control",
            "reload",
            "cli",
            "console",
            "demo",
        ],
        "the fleet tells the driver what it sees; it never reaches above the engines",
        &mut broken,
    );
    must_not_import(
        &rust_files(&src().join("control")),
        &["serve", "cli", "console", "demo"],
        "control sits below serve, cli, console and demo",
        &mut broken,
    );
    let mut metrics_and_api = rust_files(&src().join("metrics"));
    metrics_and_api.push(src().join("api.rs"));
    must_not_import(
        &metrics_and_api,
        &[
            "orchestrator",
            "analyzer",
            "control",
            "serve",
            "store",
            "proxy",
        ],
        "metrics and the API's wire types sit below the orchestrator",
        &mut broken,
    );
    must_not_import(
        &rust_files(&src().join("prometheus")),
        &[
            "proxy",
            "orchestrator",
            "store",
            "serve",
            "control",
            "reload",
            "cli",
            "console",
            "demo",
        ],
        "the Prometheus client only asks; the driver decides, and the data path never waits on it",
        &mut broken,
    );
    must_not_import(
        &[src().join("reload.rs")],
        &["serve", "control", "cli", "console", "demo"],
        "a reload is used by serve and control, never the other way round",
        &mut broken,
    );
    report(&broken);
}

/// Holds once `Limits` lives under `src/config/` rather than `src/proxy/` (issue 24's proxy
/// rooms change): config is read by the proxy, never the other way round.
#[test]
fn config_does_not_import_proxy() {
    let mut broken = Vec::new();
    let mut config = rust_files(&src().join("config"));
    config.extend(Some(src().join("config.rs")).filter(|f| f.is_file()));
    must_not_import(
        &config,
        &["proxy"],
        "config sits below the proxy that reads it",
        &mut broken,
    );
    report(&broken);
}

/// The checks themselves can fail: each rule catches a line written to break it.
#[test]
fn the_checks_catch_what_they_forbid() {
    assert!(names("use tokio::sync::watch;", "tokio"));
    assert!(names("let t = std::time::Instant::now();", "Instant::now"));
    assert!(!names("let my_tokio_thing = 1;", "tokio"));
    assert!(only_addresses("use std::net::{IpAddr, Ipv6Addr};"));
    assert!(!only_addresses("use std::net::{IpAddr, TcpStream};"));
    assert!(!only_addresses("let s = std::net::UdpSocket::bind(a);"));
    assert!(!only_addresses("use std::net;"));
    assert_eq!(
        crate_paths("use crate::proxy::tunnel::Tunnels; crate::api::Status"),
        ["proxy::tunnel::Tunnels", "api::Status"]
    );
    assert!(allowed(
        "orchestrator::machine::Control",
        &["orchestrator::machine"]
    ));
    assert!(!allowed("orchestrator::driver", &["orchestrator::machine"]));
    assert!(
        !allowed("", &["plan"]),
        "a grouped `crate::{{..}}` is refused"
    );
    assert!(!allowed("planner", &["plan"]));
}
