//! Upstream pools: the addresses of each env, who is busiest, and the pooled HTTP client.
//!
//! Selection is least-in-flight by power of two choices: pick two upstreams at random and take
//! the one with fewer requests in flight. It spreads load like least-connections without a
//! global scan or lock. In-flight counts are kept per data-plane worker ([`Sharded`]) and each
//! worker compares its own: a worker balances the requests it serves, so the sum is balanced
//! too, and no count is written by two cores. Each upstream keeps its idle keep-alive connections
//! ([`super::connpool`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use rand::Rng;

use super::connpool::Conns;
use crate::config::EnvConfig;
use crate::metrics::{Metrics, OwnedActiveGuard, Scope};
use crate::router::Env;
use crate::shard::{self, Sharded};

#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// Idle keep-alive connections to it.
    pub conns: Arc<Conns>,
    /// Requests in flight, per worker.
    inflight: Sharded<AtomicUsize>,
}

/// One env's upstreams.
#[derive(Debug)]
pub struct Pool {
    pub env: Env,
    pub upstreams: Box<[Arc<Upstream>]>,
}

impl Pool {
    pub fn new(env: Env, cfg: &EnvConfig) -> Pool {
        Pool {
            env,
            upstreams: cfg
                .upstreams
                .iter()
                .map(|a| {
                    Arc::new(Upstream {
                        addr: *a,
                        conns: Arc::new(Conns::new(*a, cfg.connect_timeout, cfg.request_timeout)),
                        inflight: Sharded::default(),
                    })
                })
                .collect(),
        }
    }

    /// The upstream to use for the next request (power of two choices on in-flight).
    pub fn pick(&self) -> Option<&Arc<Upstream>> {
        match self.upstreams.len() {
            0 => None,
            1 => self.upstreams.first(),
            n => {
                let mut rng = rand::thread_rng();
                let a = rng.gen_range(0..n);
                let mut b = rng.gen_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (ua, ub) = (&self.upstreams[a], &self.upstreams[b]);
                let inflight = |u: &Upstream| u.inflight.local().load(Relaxed);
                Some(if inflight(ub) < inflight(ua) { ub } else { ua })
            }
        }
    }
}

/// Counts a request in flight on an upstream and as active on its env until dropped (which is
/// when the response body has been fully sent or abandoned).
#[derive(Debug)]
pub struct InflightGuard {
    upstream: Arc<Upstream>,
    /// The worker it was counted on (the guard may be dropped on another thread).
    shard: usize,
    _active: OwnedActiveGuard,
}

impl InflightGuard {
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    pub fn new(upstream: Arc<Upstream>, metrics: &Arc<Metrics>, env: Env) -> InflightGuard {
        let shard = shard::index();
        upstream.inflight.get(shard).fetch_add(1, Relaxed);
        InflightGuard {
            upstream,
            shard,
            _active: metrics.active_owned(Scope::from(env)),
        }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.upstream.inflight.get(self.shard).fetch_sub(1, Relaxed);
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
        };
        let pool = Pool::new(Env::Old, &cfg);
        let metrics = Arc::new(Metrics::new());
        let busy = pool.upstreams[0].clone();
        let guards = (0..3)
            .map(|_| InflightGuard::new(busy.clone(), &metrics, Env::Old))
            .collect();
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
        let busy = pool.upstreams[0].clone();
        // Another worker does not see this thread's in-flight requests.
        let seen = std::thread::scope(|s| {
            s.spawn(|| {
                crate::shard::set_worker(0);
                busy.inflight.local().load(Relaxed)
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
        assert_eq!(busy.inflight.local().load(Relaxed), 0);
        assert_eq!(metrics.active_now(Scope::Old), 0);
    }
}
