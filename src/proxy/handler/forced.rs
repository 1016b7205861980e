//! Requests forced to an env by the override header (smoke tests), upgrades included: the
//! env's own answer, never replayed, and counted apart from the users' traffic.
//!
//! Owns: the forced path and its own counter
//! ([`crate::metrics::Metrics::record_override`]). Must not touch: an env's scope or `users`
//! (a smoke test must neither move nor stall a run), nor the routing table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};

use super::answer::env_error;
use super::shed::Cause;
use super::upgrade::{self, Caller};
use super::{route, Proxy, Session};
use crate::proxy::headers::Seen;
use crate::proxy::upstream::attempt::{self, Failure, Outgoing};
use crate::proxy::upstream::body::{ClientBody, ReqBody, RespBody};
use crate::router::Env;

impl Proxy {
    /// An upgrade forced to `env` by the override header: admitted like any forced request
    /// (admission applies, the new-session rate does not), and what its handshake comes to is
    /// counted apart, like a forced request's answer.
    pub(super) async fn forced_upgrade(
        self: &Arc<Self>,
        req: Request<ClientBody>,
        client: SocketAddr,
        conn: &Session,
        env: Env,
    ) -> Response<RespBody> {
        let Ok(permit) = self.guard(env).admit().await else {
            self.metrics.record_override(env, false);
            return self.shed_request(env, Cause::Overloaded, &req, Instant::now());
        };
        let caller = Caller::SmokeTest;
        Box::pin(upgrade::open(
            self,
            req,
            client,
            conn.forwarding(),
            env,
            caller,
            permit,
        ))
        .await
    }

    /// A request forced to `env` by the override header (a smoke test): the env's own answer,
    /// never replayed on FALLBACK (the smoke test wants to see what the env does), and counted
    /// apart from the users' traffic ([`crate::metrics::Metrics::record_override`]): a smoke
    /// test must neither move nor stall a run. Admission still applies (a smoke test does not
    /// get past an env's limit).
    pub(super) async fn forced(
        self: &Arc<Self>,
        req: Request<ClientBody>,
        client: SocketAddr,
        conn: &Session,
        env: Env,
        seen: Seen,
        start: Instant,
    ) -> Response<RespBody> {
        let (mut parts, body) = req.into_parts();
        let Ok(permit) = self.guard(env).admit().await else {
            self.metrics.record_override(env, false);
            return self.shed_response(env, Cause::Overloaded, &parts, Instant::now());
        };
        let path = self.prepare(&mut parts, client, conn.forwarding(), seen, false);
        route::frame_unknown_length(&mut parts.headers, &body);
        let out = Outgoing::of(&parts, &path, false, seen);
        let (body, unsent) = ReqBody::new(body, &self.metrics, None);
        let first = attempt::send(self.pool(env), &out, body, unsent).await;
        match first.result {
            Ok(resp) => {
                self.metrics
                    .record_override(env, !resp.status().is_server_error());
                self.wrap(resp, first.upstream, first.conn, env, permit)
            }
            Err(Failure::Env(fault)) => {
                drop(permit);
                self.metrics.record_override(env, false);
                env_error(env, fault)
            }
            Err(other) => {
                drop(permit);
                self.not_envs_fault(env, other, start)
            }
        }
    }
}
