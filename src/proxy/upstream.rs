//! Upstream pools: the addresses of each env, who is busiest, and the pooled HTTP client.
//!
//! Selection is least-in-flight by power of two choices: pick two upstreams at random and take
//! the one with fewer requests in flight. It spreads load like least-connections without a
//! global scan or lock. Each upstream keeps its idle keep-alive connections
//! ([`super::connpool`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use rand::Rng;

use super::connpool::Conns;
use crate::config::EnvConfig;
use crate::metrics::{Metrics, OwnedActiveGuard, Scope};
use crate::router::Env;

#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// Idle keep-alive connections to it.
    pub conns: Arc<Conns>,
    inflight: AtomicUsize,
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
                        inflight: AtomicUsize::new(0),
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
                Some(if ub.inflight.load(Relaxed) < ua.inflight.load(Relaxed) {
                    ub
                } else {
                    ua
                })
            }
        }
    }
}

/// Counts a request in flight on an upstream and as active on its env until dropped (which is
/// when the response body has been fully sent or abandoned).
#[derive(Debug)]
pub struct InflightGuard {
    upstream: Arc<Upstream>,
    _active: OwnedActiveGuard,
}

impl InflightGuard {
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    pub fn new(upstream: &Arc<Upstream>, metrics: &Arc<Metrics>, env: Env) -> InflightGuard {
        upstream.inflight.fetch_add(1, Relaxed);
        InflightGuard {
            upstream: upstream.clone(),
            _active: metrics.active_owned(Scope::from(env)),
        }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.upstream.inflight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn picks_the_less_busy_of_two() {
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
        let _g: Vec<_> = (0..3)
            .map(|_| InflightGuard::new(&busy, &metrics, Env::Old))
            .collect();
        for _ in 0..50 {
            assert_eq!(pool.pick().map(|u| u.addr.port()), Some(2));
        }
    }
}
