//! `cutover config check`: reads server configs and reports each one's verdict.
//!
//! Owns: the report's lines, and loading the files a config points at that `serve` reads only
//! when it starts (certificates and keys, the tokens file). Must not touch: the rules — reading
//! and validating a config is [`crate::config`]'s, the same code `cutover serve` and a reload
//! run; the files are read with the same loaders `serve` uses, so a config this accepts is one
//! the server accepts. (`[envs.X] ca_file` and `[resolve] hosts_file` are read by the config
//! itself.)

use std::io::Write;
use std::path::PathBuf;

use crate::config::{Config, ConfigError};

/// `cutover config check`: validate each file; print `FILE: ok — ...` to `out` for good ones
/// and every `FILE:LINE:COL: ...` problem to `err` for bad ones (an unreadable file is one
/// error naming the file). True when all are valid.
pub fn check_files(files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> bool {
    let mut all_ok = true;
    for file in files {
        match Config::load(file) {
            Ok(cfg) => {
                let problems = referenced_files(&cfg);
                if problems.is_empty() {
                    let _ = writeln!(out, "{}: ok — {}", file.display(), summary(&cfg));
                } else {
                    all_ok = false;
                    for p in &problems {
                        let _ = writeln!(err, "{}: {p}", file.display());
                    }
                }
            }
            Err(ConfigError::Read { path, source }) => {
                all_ok = false;
                let _ = writeln!(
                    err,
                    "{path}: cannot read the config: {source} — check the path and its permissions"
                );
            }
            Err(ConfigError::Invalid(problems)) => {
                all_ok = false;
                for p in &problems {
                    let _ = writeln!(err, "{p}");
                }
                let _ = writeln!(
                    err,
                    "{}: {} problem{}",
                    file.display(),
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" }
                );
            }
        }
    }
    all_ok
}

/// What is wrong with the files `cfg` names, each as one line naming the key and the file.
fn referenced_files(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let certs = [
        (
            "listen.tls_cert",
            &cfg.listen_tls,
            &crate::tls::ALPN_H2_H1[..],
        ),
        ("admin.tls_cert", &cfg.admin_tls, &[&b"http/1.1"[..]][..]),
    ];
    for (key, files, alpn) in certs {
        if files.is_empty() {
            continue;
        }
        if let Err(e) = crate::tls::ServerTls::new(files, alpn) {
            problems.push(format!("`{key}`: {e}"));
        }
    }
    if let Some(path) = &cfg.tokens_file {
        if let Err(e) = crate::control::tokens::Tokens::load(path) {
            problems.push(format!("`admin.tokens_file`: {e}"));
        }
    }
    problems
}

/// One line: where it listens and what it sends where.
fn summary(cfg: &Config) -> String {
    format!(
        "users on {} ({} workers), admin on {}, upstreams old {} / new {} / fallback {}, store {}",
        cfg.listen,
        cfg.workers,
        cfg.admin,
        cfg.old.upstreams.len(),
        cfg.new.upstreams.len(),
        cfg.fallback.upstreams.len(),
        cfg.store_path.display()
    )
}
