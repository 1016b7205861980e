//! `cutover config check`: reads server configs and reports each one's verdict.
//!
//! Owns: the report's lines. Must not touch: the rules — reading and validating a config is
//! [`crate::config`]'s, the same code `cutover serve` and a reload run, so a config this
//! accepts is one the server accepts.

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
                let _ = writeln!(out, "{}: ok — {}", file.display(), summary(&cfg));
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
