//! Upstream pools: the addresses of each env, who is busiest, and the pooled HTTP client.
//!
//! Selection is least-in-flight by power of two choices: pick two upstreams at random and take
//! the one with fewer requests in flight. It spreads load like least-connections without a
//! global scan or lock. Each data-plane worker has its own handle on every upstream ([`Upstream`],
//! kept in a [`Sharded`]) with its own in-flight count, and compares its own: a worker balances
//! the requests it serves, so the sum is balanced too, and neither a count nor a handle's
//! reference count is written by two cores. Each upstream address keeps its idle keep-alive
//! connections ([`super::conns`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use rand::Rng;

use super::conns::Conns;
use super::h2::H2Conns;
use crate::config::{EnvConfig, Protocol};
use crate::metrics::{Metrics, Scope};
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
    /// Its HTTP/2 connections, for an env with `protocol = "h2"` (upgrades still go over
    /// `conns`, in HTTP/1.1).
    pub(crate) h2: Option<Arc<H2Conns>>,
    /// This worker's requests in flight on it.
    inflight: AtomicUsize,
    /// Where its env's active gauge is kept (so a request's guard needs no `Arc` of its own).
    metrics: Arc<Metrics>,
    scope: Scope,
}

/// One env's upstreams.
#[derive(Debug)]
pub(crate) struct Pool {
    /// Every worker's own handles on the env's upstreams, in config order.
    upstreams: Sharded<Box<[Arc<Upstream>]>>,
}

impl Pool {
    pub(crate) fn new(env: Env, cfg: &EnvConfig, metrics: &Arc<Metrics>) -> Pool {
        let conns: Vec<(SocketAddr, Arc<Conns>, Option<Arc<H2Conns>>)> = cfg
            .upstreams
            .iter()
            .map(|a| {
                let conns = Conns::new(*a, cfg.connect_timeout, cfg.request_timeout);
                let h2 = (cfg.protocol == Protocol::H2)
                    .then(|| Arc::new(H2Conns::new(*a, cfg.connect_timeout, cfg.request_timeout)));
                (*a, Arc::new(conns), h2)
            })
            .collect();
        let handles = || {
            conns
                .iter()
                .map(|(addr, conns, h2)| {
                    Arc::new(Upstream {
                        addr: *addr,
                        conns: conns.clone(),
                        h2: h2.clone(),
                        inflight: AtomicUsize::new(0),
                        metrics: metrics.clone(),
                        scope: Scope::from(env),
                    })
                })
                .collect()
        };
        Pool {
            upstreams: Sharded::new(handles),
        }
    }

    /// The upstream to use for the next request (power of two choices on in-flight), as this
    /// worker's handle on it.
    pub(crate) fn pick(&self) -> Option<&Arc<Upstream>> {
        let upstreams = self.upstreams.local();
        match upstreams.len() {
            0 => None,
            1 => upstreams.first(),
            n => {
                let mut rng = rand::thread_rng();
                let a = rng.gen_range(0..n);
                let mut b = rng.gen_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (ua, ub) = (&upstreams[a], &upstreams[b]);
                let inflight = |u: &Upstream| u.inflight.load(Relaxed);
                Some(if inflight(ub) < inflight(ua) { ub } else { ua })
            }
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
    use std::time::Duration;

    /// A pool of two upstreams (ports 1 and 2) with three requests in flight on the first,
    /// counted on the current thread.
    fn two_with_three_on_the_first() -> (Pool, Arc<Metrics>, Vec<InflightGuard>) {
        let cfg = EnvConfig {
            upstreams: vec![
                "127.0.0.1:1".parse().expect("addr"),
                "127.0.0.1:2".parse().expect("addr"),
            ],
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            probe_path: None,
            protocol: Default::default(),
        };
        let metrics = Arc::new(Metrics::new());
        let pool = Pool::new(Env::Old, &cfg, &metrics);
        let busy = pool.upstreams.local()[0].clone();
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
        let busy = pool.upstreams.local()[0].clone();
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
                let theirs = &pool.upstreams.local()[0];
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
}
