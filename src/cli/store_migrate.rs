//! `cutover store migrate`: move a single instance's sled store into a fleet's etcd prefix.
//!
//! Owns: reading the two store arguments and the report. Must not touch: the records (the
//! store's `dump` and the etcd backend's `import` copy them as they are).
//!
//! `--from sled:PATH` names the `[store] path` of a stopped instance. The target is
//! `--to etcd:ENDPOINT[,ENDPOINT...]/PREFIX` (plain endpoints, no TLS or auth), or
//! `--to-config FILE`, whose `[store]` (backend = "etcd", with its TLS and auth keys) is
//! the one the fleet will run with.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::{Config, FleetConfig, DEFAULT_ETCD_TIMEOUT, DEFAULT_LEASE_TTL};
use crate::store::{Store, StoreError};

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error("--from: `{0}` is not `sled:PATH`")]
    From(String),
    #[error(
        "--to: `{0}` is not `etcd:ENDPOINT[,ENDPOINT...]/PREFIX` \
         (e.g. etcd:http://10.0.0.7:2379,http://10.0.0.8:2379/cutover/shop)"
    )]
    To(String),
    #[error("give the target as --to etcd:... or --to-config FILE (one of them)")]
    NoTarget,
    #[error("{0}: [store] backend is not \"etcd\": it names no fleet to migrate into")]
    NotAFleet(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "this cutover was built without the etcd backend: `cargo build --release --features etcd`"
    )]
    NoEtcd,
}

/// `sled:PATH` → PATH.
pub fn parse_from(arg: &str) -> Result<PathBuf, MigrateError> {
    match arg.strip_prefix("sled:") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(MigrateError::From(arg.to_owned())),
    }
}

/// `etcd:http://a:2379,http://b:2379/cutover/shop` → the endpoints and the prefix.
pub fn parse_to(arg: &str) -> Result<(Vec<String>, String), MigrateError> {
    let bad = || MigrateError::To(arg.to_owned());
    let rest = arg.strip_prefix("etcd:").ok_or_else(bad)?;
    // The prefix starts at the first `/` after the last endpoint's `scheme://`.
    let last = rest.rfind("://").ok_or_else(bad)? + 3;
    let slash = rest[last..].find('/').ok_or_else(bad)? + last;
    let (endpoints, prefix) = rest.split_at(slash);
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
    let ok = endpoints
        .iter()
        .all(|e| e.starts_with("http://") || e.starts_with("https://"));
    let prefix = prefix.trim_end_matches('/');
    if !ok || prefix.len() < 2 {
        return Err(bad());
    }
    Ok((endpoints, prefix.to_owned()))
}

/// The fleet settings of the target.
pub fn target(to: Option<&str>, to_config: Option<&Path>) -> Result<FleetConfig, MigrateError> {
    match (to, to_config) {
        (Some(to), None) => {
            let (endpoints, prefix) = parse_to(to)?;
            Ok(FleetConfig {
                endpoints,
                prefix,
                instance: None,
                lease_ttl: DEFAULT_LEASE_TTL,
                timeout: DEFAULT_ETCD_TIMEOUT,
                ca_file: None,
                cert_file: None,
                key_file: None,
                user: None,
                password_file: None,
            })
        }
        (None, Some(file)) => {
            let cfg = Config::load(file).map_err(|e| MigrateError::Config(e.to_string()))?;
            cfg.fleet
                .ok_or_else(|| MigrateError::NotAFleet(file.display().to_string()))
        }
        _ => Err(MigrateError::NoTarget),
    }
}

/// Copy every record of the sled store at `from` into the (new) etcd prefix of `to`; the
/// report line on success.
pub async fn migrate(from: &Path, to: &FleetConfig) -> Result<String, MigrateError> {
    let source = Store::open(from)?;
    let dump = source.dump()?;
    drop(source);
    #[cfg(feature = "etcd")]
    {
        let target = crate::fleet::connect(to, &std::env::temp_dir()).await?;
        let d = dump.clone();
        let target = std::sync::Arc::new(target);
        let t = target.clone();
        tokio::task::spawn_blocking(move || t.import(&d))
            .await
            .map_err(|e| MigrateError::Config(e.to_string()))??;
        Ok(format!(
            "migrated {} plan(s), {} run(s), {} event(s) and the current state from {} into {}",
            dump.plans.len(),
            dump.runs.len(),
            dump.events.len(),
            from.display(),
            target.describe_target(),
        ))
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = (dump, to);
        Err(MigrateError::NoEtcd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_with_several_endpoints_and_a_prefix() {
        let (e, p) = parse_to("etcd:http://a:2379,https://b:2379/cutover/shop/").expect("ok");
        assert_eq!(e, ["http://a:2379", "https://b:2379"]);
        assert_eq!(p, "/cutover/shop");
        for bad in [
            "http://a:2379/x",
            "etcd:a:2379/x",
            "etcd:http://a:2379",
            "etcd:http://a:2379/",
            "etcd:http://a:2379,b:1/x",
        ] {
            assert!(parse_to(bad).is_err(), "{bad}");
        }
        assert!(parse_from("sled:/var/lib/cutover").is_ok());
        assert!(parse_from("/var/lib/cutover").is_err());
    }
}
