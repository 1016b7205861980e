//! The three simulated environments of the demo, each one or more [`SimEnv`] instances.
//!
//! Owns: starting the instances of OLD, NEW and FALLBACK on loopback with a [`Profile`] (base
//! latency, capacity, pool timeout, hidden connection limit), the per-env in-flight gauge, and
//! reading back what each env went through. Must not touch: the proxy — the world is reached
//! only through its sockets, exactly as `cutover serve` reaches real upstreams.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use serde::Serialize;

use super::capacity::Gauge;
use super::upstream::{Behaviour, SimEnv};
use crate::router::Env;

/// How one environment is built and how it behaves under load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub instances: usize,
    /// Service time of one request on an idle instance.
    pub latency_ms: u64,
    /// Requests each instance serves at once.
    pub capacity: usize,
    /// Extra service time with every slot busy, in percent of the base latency.
    pub slowdown_pct: u32,
    /// Extra service time per capacity's worth of requests waiting, in percent of the base.
    pub collapse_pct: u32,
    /// A request waiting this long for a slot is answered 500.
    pub pool_timeout_ms: u64,
    /// Hidden per-instance connection limit (requests in flight plus tunnels); 0 = none.
    pub max_connections: usize,
    /// Requests in an instance (served and waiting) past which it answers 503 at once: its
    /// accept queue is full. 0 = none.
    pub max_inflight: usize,
    /// What `/healthz` reports as `pool_size` (the real config a pre-flight check could read).
    pub pool_size: u64,
}

/// One environment: its instances and its shared in-flight gauge.
pub struct Group {
    pub env: Env,
    pub profile: Profile,
    pub instances: Vec<SimEnv>,
    pub inflight: Arc<Gauge>,
}

/// What an environment went through, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EnvReport {
    pub instances: usize,
    /// Most requests inside the env at once (waiting for a slot included), over all instances.
    pub peak_inflight: usize,
    /// What the env can serve at once: instances × capacity. Past it, requests wait and fail.
    pub limit: usize,
    pub served: u64,
    /// Requests refused by the hidden connection limit.
    pub rejected: u64,
    /// Requests that waited for a slot past the pool timeout (answered 500).
    pub pool_timeouts: u64,
    /// Requests that found every slot busy and waited for one.
    pub waited: u64,
}

impl Group {
    async fn start(env: Env, profile: Profile) -> std::io::Result<Group> {
        let inflight = Arc::new(Gauge::default());
        let mut instances = Vec::with_capacity(profile.instances);
        for i in 0..profile.instances.max(1) {
            let behaviour = Behaviour {
                latency_ms: AtomicU64::new(profile.latency_ms),
                capacity: AtomicUsize::new(profile.capacity),
                slowdown_pct: AtomicU32::new(profile.slowdown_pct),
                collapse_pct: AtomicU32::new(profile.collapse_pct),
                pool_timeout_ms: AtomicU64::new(profile.pool_timeout_ms),
                max_connections: AtomicUsize::new(profile.max_connections),
                max_inflight: AtomicUsize::new(profile.max_inflight),
                pool_size: AtomicU64::new(profile.pool_size),
                env_inflight: Some(inflight.clone()),
                ..Default::default()
            };
            let name = format!("{}-{}", env.as_str(), i + 1);
            let addr = SocketAddr::from(([127, 0, 0, 1], 0));
            instances.push(SimEnv::start_with(&name, addr, behaviour).await?);
        }
        Ok(Group {
            env,
            profile,
            instances,
            inflight,
        })
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.instances.iter().map(|i| i.addr).collect()
    }

    fn sum(&self, f: impl Fn(&Behaviour) -> u64) -> u64 {
        self.instances.iter().map(|i| f(&i.behaviour)).sum()
    }

    /// Requests refused by the connection limit or failed by the pool timeout so far.
    pub fn faults(&self) -> u64 {
        self.sum(|b| b.rejected.load(SeqCst) + b.pool_timeouts.load(SeqCst))
    }

    /// Twice as many requests inside the env as it can serve at once, right now.
    pub fn saturated(&self) -> bool {
        self.inflight.now() >= 2 * self.instances.len() * self.profile.capacity.max(1)
    }

    /// Requests that found every slot busy and had to wait, so far.
    pub fn waited(&self) -> u64 {
        self.sum(|b| b.waited.load(SeqCst))
    }

    pub fn report(&self) -> EnvReport {
        EnvReport {
            instances: self.instances.len(),
            peak_inflight: self.inflight.peak(),
            limit: self.instances.len() * self.profile.capacity,
            served: self.sum(|b| b.served.load(SeqCst)),
            rejected: self.sum(|b| b.rejected.load(SeqCst)),
            pool_timeouts: self.sum(|b| b.pool_timeouts.load(SeqCst)),
            waited: self.waited(),
        }
    }

    fn stop(&self) {
        for i in &self.instances {
            i.stop();
        }
    }
}

/// OLD, NEW and FALLBACK, running.
pub struct World {
    pub old: Group,
    pub new: Group,
    pub fallback: Group,
}

/// The reports of all three envs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorldReport {
    pub old: EnvReport,
    pub new: EnvReport,
    pub fallback: EnvReport,
}

impl World {
    pub async fn start(old: Profile, new: Profile, fallback: Profile) -> std::io::Result<World> {
        Ok(World {
            old: Group::start(Env::Old, old).await?,
            new: Group::start(Env::New, new).await?,
            fallback: Group::start(Env::Fallback, fallback).await?,
        })
    }

    pub fn group(&self, env: Env) -> &Group {
        match env {
            Env::Old => &self.old,
            Env::New => &self.new,
            Env::Fallback => &self.fallback,
        }
    }

    pub fn report(&self) -> WorldReport {
        WorldReport {
            old: self.old.report(),
            new: self.new.report(),
            fallback: self.fallback.report(),
        }
    }

    pub fn stop(&self) {
        for env in Env::ALL {
            self.group(env).stop();
        }
    }
}
