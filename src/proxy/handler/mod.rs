//! One client request, in layers that each read on their own:
//!
//! 1. **admit** ([`admit`]): a new session needs a token from its env's new-session rate,
//!    every request a slot of its env's admission limit; a refusal is shed ([`shed`]);
//! 2. **route** ([`route`]): the override header (a smoke test, answered by [`forced`]) or
//!    the user key picks the env, and the head is made fit for the upstream;
//! 3. **attempt** ([`forward`]): one attempt on that env, and what its result means;
//! 4. **fall back** ([`fallback`]): FALLBACK takes what is safe and affordable to replay;
//! 5. **record** ([`record`]): what the env and the user saw, once each.
//!
//! Upgrades take the same first two layers and are then handed over ([`upgrade`]); the
//! proxy's own answers are worded in [`answer`]. A mirrored user's request is also copied to
//! NEW once it is answered ([`mirror`], compared by `compare`).
//!
//! Owns: [`Proxy`] (everything a request shares, rebuilt on a reload) and [`Session`] (what
//! a connection's requests share). Must not touch: sockets or connections (the client room
//! hands a request in, the upstream room sends it on), the store, the analyzer or the
//! orchestrator. Each layer is a plain function call on the request's own task: no
//! allocation, lock or dynamic call of its own on the common path.

pub(crate) mod admit;
pub(crate) mod answer;
mod compare;
pub(crate) mod fallback;
pub(crate) mod forced;
pub(crate) mod forward;
pub(crate) mod mirror;
pub(crate) mod record;
pub(crate) mod route;
pub(crate) mod shed;
pub(crate) mod upgrade;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, Request, Response};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::headers::{is_upgrade, ForwardCache};
use crate::proxy::protect::{admission, budget};
use crate::proxy::tunnel::Tunnels;
use crate::proxy::upstream::attempt::Outgoing;
use crate::proxy::upstream::body::{ClientBody, RespBody};
use crate::proxy::upstream::pool::Pool;
use crate::router::{Env, KeySource, Router};
use forward::First;
use upgrade::Caller;

/// Everything the data path shares, built once at start (and on a config reload).
#[derive(Debug)]
pub struct Proxy {
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    pub tunnels: Arc<Tunnels>,
    pools: [Pool; 3],
    guards: [admission::EnvGuard; 3],
    shed: shed::ShedAnswers,
    drain_rate: f64,
    budget: budget::RetryBudget,
    key_sources: Vec<KeySource>,
    override_header: HeaderName,
    override_secret_header: HeaderName,
    override_secret: Option<Box<[u8]>>,
    trust_forwarded: bool,
    mirror: mirror::Mirror,
}

impl Proxy {
    pub fn new(cfg: &Config, router: Arc<Router>, metrics: Arc<Metrics>) -> Proxy {
        let origin = Instant::now();
        let pool_metrics = metrics.clone();
        Proxy {
            guards: Env::ALL
                .map(|env| admission::EnvGuard::new(env, cfg.protect(env), &metrics, origin)),
            shed: shed::ShedAnswers::new(
                cfg.protection.page.as_deref(),
                cfg.protection.retry_after_s,
            ),
            drain_rate: cfg.protection.drain_rate,
            router,
            metrics,
            tunnels: Arc::new(Tunnels::default()),
            pools: Env::ALL
                .map(|env| Pool::new(env, cfg.env(env), &pool_metrics, cfg.hosts_file.as_deref())),
            budget: budget::RetryBudget::new(cfg.retry_budget, origin),
            key_sources: cfg.user_key.clone(),
            override_header: cfg.override_header.clone(),
            override_secret_header: cfg.override_secret_header.clone(),
            override_secret: cfg
                .override_secret
                .as_ref()
                .map(|s| s.as_bytes().to_vec().into_boxed_slice()),
            trust_forwarded: cfg.trust_forwarded,
            mirror: mirror::Mirror::new(&cfg.mirror, cfg.new.request_timeout),
        }
    }

    /// Serve one request from `client` on connection `conn`. Never fails: every problem
    /// becomes an HTTP answer. The layers in order: route (an override, else the user key),
    /// admit (new-session rate, then admission), attempt, fall back, record.
    pub(crate) async fn handle(
        self: &Arc<Self>,
        mut req: Request<ClientBody>,
        client: SocketAddr,
        conn: &Session,
    ) -> Response<RespBody> {
        let start = Instant::now();
        self.budget.record_request(start);
        let (seen, forced) = self.take_override(&mut req);
        let upgrade = seen.may_upgrade() && is_upgrade(req.headers());
        if upgrade && upgrade::declares_body(&req) {
            return self.refuse_upgrade_body(start);
        }
        if let Some(env) = forced {
            if upgrade {
                return self.forced_upgrade(req, client, conn, env).await;
            }
            return Box::pin(self.forced(req, client, conn, env, seen, start)).await;
        }
        let (env, mirrored, key) = self.route(&req, client, upgrade);
        if let Some(shed) = self.open_session(env, upgrade, conn, &req, start) {
            return shed;
        }
        let permit = self.guard(env).admit().await;
        if let Some(key) = key {
            // An upgrade: only an upgrade keeps its user key.
            let routed = (env, Caller::User(key));
            return self.upgrade(req, client, conn, routed, permit, start).await;
        }

        let (mut parts, body) = req.into_parts();
        let path = self.prepare(&mut parts, client, conn.forwarding(), seen, false);
        route::frame_unknown_length(&mut parts.headers, &body);
        let out = Outgoing::of(&parts, &path, false, seen);
        // A mirrored user's request (never an upgrade): copied before the body goes.
        let (copy, keep) = match mirrored.and_then(|c| self.copy_of(&out, &body, c)) {
            Some((copy, keep)) => (Some(copy), keep),
            None => (None, None),
        };
        let first = match permit {
            Ok(permit) => self.forward(env, &out, body, keep, permit, start).await,
            Err(admission::Shed) => self.shed_unsent(env, &parts, body, start),
        };
        let (resp, users) = match first {
            First::Done(resp) => return mirror::after(copy, resp),
            First::Answered(resp, users) => (resp, users),
            First::Fallback(failed, unsent) => {
                Box::pin(self.fallback(env, start, &out, unsent, failed)).await
            }
        };
        self.record_users(users, start);
        mirror::after(copy, resp)
    }

    /// Tunnels moved per second by the drain after a weight change.
    pub(crate) fn drain_rate(&self) -> f64 {
        self.drain_rate
    }

    fn pool(&self, env: Env) -> &Pool {
        &self.pools[env as usize]
    }

    /// The admission control and new-session rate of `env`.
    pub fn guard(&self, env: Env) -> &admission::EnvGuard {
        &self.guards[env as usize]
    }
}

/// What the handler knows about one client connection: the state its requests share.
///
/// A connection is a new session until one of its requests has been let in by its env's
/// new-session rate; requests on an established (keep-alive) connection need no token, so
/// users already in are preferred over newcomers during a reconnect storm.
#[derive(Debug, Default)]
pub(crate) struct Session {
    established: AtomicBool,
    forwarding: ForwardCache,
}

impl Session {
    /// The session of a connection that came over TLS (`https`) or plain HTTP.
    pub(crate) fn new(https: bool) -> Session {
        Session {
            established: AtomicBool::new(false),
            forwarding: ForwardCache::new(https),
        }
    }

    /// The forwarding header values of this connection's client.
    pub(crate) fn forwarding(&self) -> &ForwardCache {
        &self.forwarding
    }

    pub(crate) fn established(&self) -> bool {
        self.established.load(Relaxed)
    }

    pub(crate) fn establish(&self) {
        self.established.store(true, Relaxed);
    }
}
