//! Upstream addresses: parsing what the config writes ([`addr`]) and turning host names into
//! socket addresses, again every `resolve_interval`, so an env behind a cloud load balancer or
//! a Kubernetes Service whose addresses change keeps being reached.
//!
//! Owns: the lookup (an IP as it is; a name first in the optional hosts file, then in the
//! system's resolver), and the refresh loop that reports changed address sets. A failed lookup
//! keeps the last addresses (fail static: a DNS outage must not take an env away) and is
//! logged once until it recovers. Must not touch: connections or pools — it hands address sets
//! to whoever asked.

pub mod addr;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use addr::{Host, Target};

/// A hosts file (`/etc/hosts` format: an address, then its names; `#` comments): names looked
/// up here first, so a deployment or a test can pin a name without touching `/etc/hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    names: HashMap<String, Vec<IpAddr>>,
}

impl Hosts {
    /// Parse a hosts file's text; an error names the line.
    pub fn parse(text: &str) -> Result<Hosts, String> {
        let mut names: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            let ip: IpAddr = first
                .parse()
                .map_err(|_| format!("line {}: `{first}` is not an IP address", n + 1))?;
            let mut any = false;
            for name in words {
                any = true;
                let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
                let ips = names.entry(name).or_default();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            if !any {
                return Err(format!("line {}: `{first}` has no name after it", n + 1));
            }
        }
        Ok(Hosts { names })
    }

    pub fn load(path: &Path) -> Result<Hosts, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the hosts file {}: {e}", path.display()))?;
        Hosts::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn get(&self, name: &str) -> Option<&[IpAddr]> {
        self.names.get(name).map(Vec::as_slice)
    }
}

/// Every address of `target` now, sorted, without repeats.
pub async fn lookup(target: &Target, hosts: Option<&Hosts>) -> std::io::Result<Vec<SocketAddr>> {
    let found = match known(target, hosts) {
        Some(addrs) => addrs,
        None => tokio::net::lookup_host((name_of(target), target.port))
            .await?
            .collect(),
    };
    finish(target, found)
}

/// [`lookup`] on the calling thread (the system's resolver blocks it): for the config's
/// checks at start and on reload, which run before anything is served.
pub fn lookup_blocking(target: &Target, hosts: Option<&Hosts>) -> std::io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    let found = match known(target, hosts) {
        Some(addrs) => addrs,
        None => (name_of(target), target.port).to_socket_addrs()?.collect(),
    };
    finish(target, found)
}

/// The addresses of an IP target, or of a name the hosts file lists; `None` when the system's
/// resolver must be asked.
fn known(target: &Target, hosts: Option<&Hosts>) -> Option<Vec<SocketAddr>> {
    let ips = match &target.host {
        Host::Ip(ip) => return Some(vec![SocketAddr::new(*ip, target.port)]),
        Host::Name(name) => hosts.and_then(|h| h.get(name))?,
    };
    Some(
        ips.iter()
            .map(|ip| SocketAddr::new(*ip, target.port))
            .collect(),
    )
}

fn name_of(target: &Target) -> &str {
    match &target.host {
        Host::Name(name) => name,
        Host::Ip(_) => "",
    }
}

fn finish(target: &Target, mut out: Vec<SocketAddr>) -> std::io::Result<Vec<SocketAddr>> {
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} has no address", target.host),
        ));
    }
    Ok(out)
}

/// What the refresh loop reports: target `index` of the list now has `addrs`.
pub type OnChange = Arc<dyn Fn(usize, Arc<[SocketAddr]>) + Send + Sync>;

/// Re-resolve `targets` every `interval` (reading `hosts_file` again each round) and call
/// `on_change` for each target whose address set changed since the last report; `first` is
/// what the caller already uses (the addresses found at start). Runs until dropped.
pub async fn refresh(
    targets: Vec<Target>,
    first: Vec<Arc<[SocketAddr]>>,
    interval: Duration,
    hosts_file: Option<PathBuf>,
    on_change: OnChange,
) {
    let mut last = first;
    let mut failing: Vec<Option<String>> = vec![None; targets.len()];
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let hosts = match hosts_file.as_deref().map(Hosts::load) {
            Some(Err(e)) => {
                tracing::warn!(error = %e, "hosts file unreadable; keeping the addresses in use");
                continue;
            }
            Some(Ok(h)) => Some(h),
            None => None,
        };
        for (i, target) in targets.iter().enumerate() {
            match lookup(target, hosts.as_ref()).await {
                Ok(addrs) => {
                    if failing[i].take().is_some() {
                        tracing::info!(upstream = %target, "resolves again");
                    }
                    if last.get(i).is_some_and(|l| **l == *addrs) {
                        continue;
                    }
                    let addrs: Arc<[SocketAddr]> = addrs.into();
                    tracing::info!(upstream = %target, addrs = ?addrs, "upstream addresses changed");
                    if let Some(l) = last.get_mut(i) {
                        *l = addrs.clone();
                    }
                    on_change(i, addrs);
                }
                Err(e) => {
                    let msg = e.to_string();
                    if failing[i].as_deref() != Some(msg.as_str()) {
                        tracing::warn!(upstream = %target, error = %msg,
                            "cannot resolve; keeping the addresses in use");
                        failing[i] = Some(msg);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Reports = Arc<Mutex<Vec<(usize, Vec<SocketAddr>)>>>;

    #[test]
    fn a_hosts_file_gives_every_address_of_a_name() {
        let h = Hosts::parse(
            "# test\n127.0.0.1 a.test b.test\n127.0.0.2 A.test. # again\n\n::1 c.test\n",
        )
        .expect("valid");
        assert_eq!(h.get("a.test").map(<[IpAddr]>::len), Some(2));
        assert_eq!(h.get("b.test").map(<[IpAddr]>::len), Some(1));
        assert!(h.get("c.test").is_some_and(|ips| ips[0].is_ipv6()));
        assert_eq!(
            Hosts::parse("x a\n").expect_err("bad ip"),
            "line 1: `x` is not an IP address"
        );
        assert!(Hosts::parse("\n127.0.0.1\n")
            .expect_err("no name")
            .starts_with("line 2:"));
    }

    #[tokio::test]
    async fn ips_names_and_the_hosts_file_resolve() {
        let ip = Target::parse("127.0.0.9:81").expect("ip");
        assert_eq!(
            lookup(&ip, None).await.expect("ip"),
            vec!["127.0.0.9:81".parse().expect("addr")]
        );
        let hosts = Hosts::parse("127.0.0.3 new.test\n127.0.0.2 new.test\n").expect("hosts");
        let name = Target::parse("https://new.test").expect("name");
        let got = lookup(&name, Some(&hosts)).await.expect("name");
        assert_eq!(
            got,
            vec![
                "127.0.0.2:443".parse().expect("a"),
                "127.0.0.3:443".parse().expect("b")
            ]
        );
        // localhost comes from the system's resolver.
        let local = Target::parse("localhost:80").expect("localhost");
        assert!(lookup(&local, None)
            .await
            .expect("localhost")
            .iter()
            .all(|a| a.ip().is_loopback()));
    }

    #[tokio::test(start_paused = true)]
    async fn changes_are_reported_and_a_broken_hosts_file_keeps_the_last_addresses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("hosts");
        std::fs::write(&file, "127.0.0.2 new.test\n").expect("write");
        let seen: Reports = Arc::default();
        let sink = seen.clone();
        let targets = vec![Target::parse("new.test:80").expect("t")];
        let first: Vec<Arc<[SocketAddr]>> = vec![vec!["127.0.0.2:80".parse().expect("a")].into()];
        let task = tokio::spawn(refresh(
            targets,
            first,
            Duration::from_secs(5),
            Some(file.clone()),
            Arc::new(move |i, a| sink.lock().expect("lock").push((i, a.to_vec()))),
        ));
        let round = || tokio::time::sleep(Duration::from_secs(5));
        round().await;
        tokio::task::yield_now().await;
        assert!(
            seen.lock().expect("lock").is_empty(),
            "no change, no report"
        );
        std::fs::write(&file, "127.0.0.3 new.test\n127.0.0.4 new.test\n").expect("write");
        round().await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // A broken hosts file (as a failed lookup) keeps the addresses in use.
        std::fs::write(&file, "not-an-ip new.test\n").expect("write");
        round().await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        task.abort();
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            vec![(
                0,
                vec![
                    "127.0.0.3:80".parse().expect("a"),
                    "127.0.0.4:80".parse().expect("b")
                ]
            )],
            "the change reported once; the broken file kept the last set"
        );
    }
}
