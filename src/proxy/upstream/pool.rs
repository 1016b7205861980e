//! Upstream pools: the addresses of each env, who is busiest, and the pooled HTTP client.
//!
//! Selection is least-in-flight by power of two choices: pick two upstreams at random and take
//! the one with fewer requests in flight. It spreads load like least-connections without a
//! global scan or lock. Each data-plane worker has its own handle on every upstream ([`Upstream`],
//! kept in a [`Sharded`]) with its own in-flight count, and compares its own: a worker balances
//! the requests it serves, so the sum is balanced too, and neither a count nor a handle's
//! reference count is written by two cores. Each upstream address keeps its idle keep-alive
//! connections ([`super::conns`]).
//!
//! Every address of every configured upstream is balanced, all of a name's addresses
//! included. A host name is looked up again every `resolve_interval` ([`crate::resolve::refresh`],
//! a task that lives as long as the pool): a changed set is swapped in whole per worker (an
//! [`ArcSwap`] the data path only loads, never locks), an address that stays keeps its handles
//! and connections, and one that left is retired ([`Conns::retire`]). A failed lookup keeps the
//! addresses in use.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::Rng;

use super::connect::Link;
use super::conns::Conns;
use crate::config::EnvConfig;
use crate::metrics::{Metrics, Scope};
use crate::resolve::Host;
use crate::router::Env;
use crate::shard::Sharded;

/// One worker's handle on one upstream address.
///
/// Each data-plane worker has its own `Upstream` for every address (see [`Pool`]): the
/// in-flight count and the `Arc`'s reference count are written by that worker only, so the
/// clone and drop a request makes of it never move a cache line between cores. What is
/// shared between the workers is behind `conns` (whose idle connections are kept per worker
/// too). Aligned so that two workers' handles never share a cache line.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    /// Idle keep-alive connections to it (one pool per address, shared by the workers).
    pub(crate) conns: Arc<Conns>,
    /// This worker's requests in flight on it.
    inflight: AtomicUsize,
    /// Where its env's active gauge is kept (so a request's guard needs no `Arc` of its own).
    metrics: Arc<Metrics>,
    scope: Scope,
}

impl Upstream {
    /// The env it belongs to, for logs.
    pub(crate) fn scope_name(&self) -> &'static str {
        self.scope.as_str()
    }
}

/// One worker's handles, in config order (a name's addresses sorted).
type Handles = Box<[Arc<Upstream>]>;

/// One env's upstreams.
#[derive(Debug)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
    /// The task re-resolving the env's host names (none when all are IP addresses); it ends
    /// with the pool.
    refresh: Option<tokio::task::AbortHandle>,
}

#[derive(Debug)]
struct Shared {
    metrics: Arc<Metrics>,
    scope: Scope,
    request_timeout: Duration,
    /// How to reach each configured upstream.
    links: Vec<Arc<Link>>,
    /// Each configured upstream's addresses, as their connection pools. Only the refresh task
    /// takes this lock; the data path reads `handles`.
    sets: Mutex<Vec<Vec<Arc<Conns>>>>,
    /// Every worker's own handles on every address.
    handles: Sharded<ArcSwap<Handles>>,
}

impl Pool {
    /// The pool of `cfg`'s upstreams at the addresses found when the config was read; host
    /// names are looked up again every `resolve_interval` (the hosts file first), on the
    /// current runtime.
    pub(crate) fn new(
        env: Env,
        cfg: &EnvConfig,
        metrics: &Arc<Metrics>,
        hosts_file: Option<&Path>,
    ) -> Pool {
        let links: Vec<Arc<Link>> = cfg.upstreams.iter().map(|u| Link::new(cfg, u)).collect();
        let sets: Vec<Vec<Arc<Conns>>> = cfg
            .upstreams
            .iter()
            .zip(&links)
            .map(|(u, link)| {
                let conns = |a: &SocketAddr| Conns::new(*a, link.clone(), cfg.request_timeout);
                u.addrs.iter().map(|a| Arc::new(conns(a))).collect()
            })
            .collect();
        let shared = Arc::new(Shared {
            metrics: metrics.clone(),
            scope: Scope::from(env),
            request_timeout: cfg.request_timeout,
            links,
            handles: Sharded::new(|| ArcSwap::from_pointee(Handles::default())),
            sets: Mutex::new(sets),
        });
        shared.publish();
        let named = cfg
            .upstreams
            .iter()
            .any(|u| matches!(u.target.host, Host::Name(_)));
        let refresh = match tokio::runtime::Handle::try_current() {
            Ok(rt) if named => Some(rt.spawn(refresh(&shared, cfg, hosts_file)).abort_handle()),
            _ => None,
        };
        Pool { shared, refresh }
    }

    /// The upstream to use for the next request (power of two choices on in-flight), as this
    /// worker's handle on it.
    pub(crate) fn pick(&self) -> Option<Arc<Upstream>> {
        let upstreams = self.shared.handles.local().load();
        match upstreams.len() {
            0 => None,
            1 => upstreams.first().cloned(),
            n => {
                let mut rng = rand::thread_rng();
                let a = rng.gen_range(0..n);
                let mut b = rng.gen_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (ua, ub) = (&upstreams[a], &upstreams[b]);
                let inflight = |u: &Upstream| u.inflight.load(Relaxed);
                Some(if inflight(ub) < inflight(ua) { ub } else { ua }.clone())
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(task) = &self.refresh {
            task.abort();
        }
    }
}

/// The refresh loop of `cfg`'s upstreams, reporting to `shared` while it exists.
fn refresh(
    shared: &Arc<Shared>,
    cfg: &EnvConfig,
    hosts_file: Option<&Path>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    crate::resolve::refresh(
        cfg.upstreams.iter().map(|u| u.target.clone()).collect(),
        cfg.upstreams.iter().map(|u| u.addrs.clone()).collect(),
        cfg.resolve_interval,
        hosts_file.map(Path::to_owned),
        Arc::new(move |i, addrs| {
            if let Some(shared) = weak.upgrade() {
                shared.update(i, &addrs);
            }
        }),
    )
}

impl Shared {
    /// Configured upstream `i` now has `addrs`: keep the connections of the addresses that
    /// stay, open pools for the new ones, retire the ones that left, and publish.
    fn update(&self, i: usize, addrs: &[SocketAddr]) {
        let (Ok(mut sets), Some(link)) = (self.sets.lock(), self.links.get(i)) else {
            return;
        };
        let Some(set) = sets.get_mut(i) else { return };
        let old = std::mem::take(set);
        *set = addrs
            .iter()
            .map(|a| match old.iter().find(|c| c.addr() == *a) {
                Some(kept) => kept.clone(),
                None => Arc::new(Conns::new(*a, link.clone(), self.request_timeout)),
            })
            .collect();
        for gone in old
            .iter()
            .filter(|c| !set.iter().any(|n| Arc::ptr_eq(n, c)))
        {
            gone.retire();
        }
        drop(sets);
        self.publish();
    }

    /// Give every worker handles on the current sets, keeping the handles (and their in-flight
    /// counts) of addresses it already had.
    fn publish(&self) {
        let Ok(sets) = self.sets.lock() else { return };
        for slot in self.handles.iter() {
            let had = slot.load();
            let now: Handles = sets
                .iter()
                .flatten()
                .map(|conns| {
                    let kept = had.iter().find(|u| Arc::ptr_eq(&u.conns, conns));
                    kept.cloned().unwrap_or_else(|| {
                        Arc::new(Upstream {
                            addr: conns.addr(),
                            conns: conns.clone(),
                            inflight: AtomicUsize::new(0),
                            metrics: self.metrics.clone(),
                            scope: self.scope,
                        })
                    })
                })
                .collect();
            slot.store(Arc::new(now));
        }
    }
}

/// Counts a request in flight on an upstream and as active on its env until dropped (which is
/// when the response body has been fully sent or abandoned).
#[derive(Debug)]
pub(crate) struct InflightGuard {
    /// The handle of the worker it was counted on (the guard may be dropped on another
    /// thread: the count is given back where it was taken).
    upstream: Arc<Upstream>,
}

impl InflightGuard {
    pub(crate) fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Count a request on `upstream` and as active on its env.
    pub(crate) fn new(upstream: Arc<Upstream>) -> InflightGuard {
        upstream.inflight.fetch_add(1, Relaxed);
        upstream.metrics.open_active(upstream.scope);
        InflightGuard { upstream }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.upstream.inflight.fetch_sub(1, Relaxed);
        self.upstream.metrics.close_active(self.upstream.scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    /// A pool of two upstreams (ports 1 and 2) with three requests in flight on the first,
    /// counted on the current thread.
    fn two_with_three_on_the_first() -> (Pool, Arc<Metrics>, Vec<InflightGuard>) {
        let cfg = EnvConfig::plain(&[addr("127.0.0.1:1"), addr("127.0.0.1:2")]);
        let metrics = Arc::new(Metrics::new());
        let pool = Pool::new(Env::Old, &cfg, &metrics, None);
        let busy = pool.shared.handles.local().load()[0].clone();
        let guards = (0..3).map(|_| InflightGuard::new(busy.clone())).collect();
        (pool, metrics, guards)
    }

    #[test]
    fn picks_the_less_busy_of_two() {
        let (pool, _metrics, _g) = two_with_three_on_the_first();
        for _ in 0..50 {
            assert_eq!(pool.pick().map(|u| u.addr.port()), Some(2));
        }
    }

    #[test]
    fn each_worker_balances_its_own_requests() {
        let (pool, metrics, guards) = two_with_three_on_the_first();
        let busy = pool.shared.handles.local().load()[0].clone();
        assert_eq!(busy.inflight.load(Relaxed), 3);
        assert_eq!(
            metrics.active_now(Scope::Old),
            3,
            "counted as active on the env"
        );
        // Another worker has its own handles and does not see this thread's requests.
        let seen = std::thread::scope(|s| {
            s.spawn(|| {
                crate::shard::set_worker(0);
                let theirs = &pool.shared.handles.local().load()[0];
                assert!(!Arc::ptr_eq(theirs, &busy), "a worker's own handle");
                assert!(
                    Arc::ptr_eq(&theirs.conns, &busy.conns),
                    "one pool per address"
                );
                theirs.inflight.load(Relaxed)
            })
            .join()
            .expect("worker")
        });
        assert_eq!(seen, 0);
        // A guard dropped on another thread gives back the count where it was taken.
        std::thread::scope(|s| {
            s.spawn(move || {
                crate::shard::set_worker(1);
                drop(guards);
            });
        });
        assert_eq!(busy.inflight.load(Relaxed), 0);
        assert_eq!(metrics.active_now(Scope::Old), 0);
    }

    #[test]
    fn a_changed_set_keeps_what_stays_and_retires_what_left() {
        let (pool, _metrics, guards) = two_with_three_on_the_first();
        let before = pool.shared.handles.local().load_full();
        // Upstream 0 (port 1, three in flight) moves to port 3; upstream 1 stays.
        pool.shared.update(0, &[addr("127.0.0.1:3")]);
        let after = pool.shared.handles.local().load_full();
        let ports: Vec<u16> = after.iter().map(|u| u.addr.port()).collect();
        assert_eq!(ports, vec![3, 2]);
        assert!(
            Arc::ptr_eq(&before[1], &after[1]),
            "the address that stayed"
        );
        assert_eq!(
            after[0].inflight.load(Relaxed),
            0,
            "a new address starts idle"
        );
        assert!(
            before[0].conns.retired.load(Relaxed),
            "the address that left"
        );
        for _ in 0..50 {
            assert_ne!(pool.pick().map(|u| u.addr.port()), Some(1));
        }
        // Requests in flight on the old address finish and give their count back.
        drop(guards);
        assert_eq!(before[0].inflight.load(Relaxed), 0);
    }
}
