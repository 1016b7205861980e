//! An upgrade request (WebSocket and the like): forwarded like any other, and on the env's
//! `101` handed to the tunnel registry ([`crate::proxy::tunnel`]), which carries the bytes.
//!
//! Owns: the handshake — refusing an upgrade that declares a body, sending the upgrade to the
//! env on a connection never pooled again, recording what the env and the user saw — and the
//! hand-over. Must not touch: the tunnel's bytes or its close (the tunnel room's).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};

use super::answer::{client_fault, failure_answer, ENV_HEADER_NAME};
use super::record::status_outcome;
use super::shed::Cause;
use super::{Proxy, Session};
use crate::metrics::{ClientFault, Scope};
use crate::proxy::headers::{self, ForwardCache};
use crate::proxy::protect::admission::{Permit, Shed};
use crate::proxy::upstream::attempt::{self, Failure, Outgoing};
use crate::proxy::upstream::body::{ClientBody, ReqBody, RespBody};
use crate::router::Env;

impl Proxy {
    /// An upgrade with a body, refused before anything reaches an env: the upgrade's upstream
    /// head would announce a body the tunnel never sends, and the env would take the next
    /// request on that connection for it (request smuggling).
    pub(super) fn refuse_upgrade_body(&self, start: Instant) -> Response<RespBody> {
        self.metrics
            .record_client_error(ClientFault::UpgradeWithBody, start);
        client_fault(ClientFault::UpgradeWithBody)
    }

    /// An upgrade `routed` to an env (and whom it is for) and past its new-session rate: the
    /// handshake with the env if its admission let it in, shed otherwise.
    pub(super) async fn upgrade(
        self: &Arc<Self>,
        req: Request<ClientBody>,
        client: SocketAddr,
        conn: &Session,
        routed: (Env, Caller),
        permit: Result<Permit, Shed>,
        start: Instant,
    ) -> Response<RespBody> {
        let (env, caller) = routed;
        match permit {
            Ok(permit) => {
                Box::pin(open(
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
            Err(Shed) => self.shed_answer(env, Cause::Overloaded, &req, start),
        }
    }
}

/// Whom an upgrade is for.
pub(super) enum Caller {
    /// A user, routed by this key: counted in the env's scope and in `users`, and moved by the
    /// drain when the key's env changes.
    User(Box<[u8]>),
    /// A smoke test forced to its env by the override header: counted apart
    /// ([`crate::metrics::Metrics::record_override`]), never moved.
    SmokeTest,
}

/// Whether an upgrade request declares a body (`Content-Length` other than 0, or any
/// `Transfer-Encoding`). Such a request is refused before it reaches an env: the tunnel
/// never forwards a body, so the upstream head would announce bytes that never come and the
/// env would take the start of the next request on that connection for them.
pub(super) fn declares_body(req: &Request<ClientBody>) -> bool {
    let h = req.headers();
    !crate::proxy::upstream::body::is_empty(req.body())
        || h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get_all(http::header::CONTENT_LENGTH).iter().any(|v| {
            v.as_bytes()
                .iter()
                .any(|b| *b != b'0' && !b.is_ascii_whitespace())
        })
}

/// Forward an upgrade request to `env` and, on 101, tunnel the two upgraded connections.
/// `caller` says whom it is for (and where it is counted); `permit` is its admission slot, held
/// for the handshake only. The request has no body ([`declares_body`] refused it
/// otherwise), and the upstream connection of an upgrade attempt is never pooled again: on
/// 101 it becomes the tunnel, otherwise it closes once the answer has been read.
pub(super) async fn open(
    proxy: &Arc<Proxy>,
    mut req: Request<ClientBody>,
    client: SocketAddr,
    forwarding: &ForwardCache,
    env: Env,
    caller: Caller,
    permit: Permit,
) -> Response<RespBody> {
    let start = Instant::now();
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, _body) = req.into_parts();
    let websocket = parts
        .headers
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let seen = headers::scan(&parts.headers, &[]);
    let path = proxy.prepare(&mut parts, client, forwarding, seen, true);
    let out = Outgoing::of(&parts, &path, true, seen);
    let scope = Scope::from(env);
    let attempt = attempt::send(proxy.pool(env), &out, ReqBody::Empty, None).await;
    let mut resp = match attempt.result {
        Ok(resp) => resp,
        Err(Failure::Env(fault)) => {
            if let Caller::User(_) = caller {
                let now = Instant::now();
                let scopes = [scope, Scope::Users];
                proxy
                    .metrics
                    .record_in(&scopes, fault.outcome(), start.elapsed(), now);
            } else {
                proxy.metrics.record_override(env, false);
            }
            return failure_answer(env, Failure::Env(fault));
        }
        Err(other) => return proxy.not_envs_fault(env, other, start),
    };
    if let Caller::User(_) = caller {
        let now = Instant::now();
        proxy.guard(env).sample(start.elapsed(), now);
        let outcome = status_outcome(resp.status());
        proxy.metrics.record(scope, outcome, start.elapsed(), now);
        proxy
            .metrics
            .record(Scope::Users, outcome, start.elapsed(), now);
    } else {
        proxy
            .metrics
            .record_override(env, !resp.status().is_server_error());
    }
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The env declined the upgrade: pass its answer through as a normal response. Its
        // connection is not given back to the pool (dropped here, hyper closes it once the
        // answer has been read): an env that declines an upgrade may still be reading, or
        // skipping, something of it, and the next request on that connection must not be
        // taken for part of this one.
        drop(attempt.conn);
        return proxy.wrap(resp, attempt.upstream, None, env, permit);
    }
    drop(permit);
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let (mut rparts, _) = resp.into_parts();
    rparts.headers.insert(
        ENV_HEADER_NAME,
        http::HeaderValue::from_static(env.as_str()),
    );

    let key = match caller {
        Caller::User(key) => Some(key),
        Caller::SmokeTest => None,
    };
    let active = proxy.metrics.active_owned(scope);
    proxy.tunnels.carry(
        env,
        key,
        (client_upgrade, upstream_upgrade),
        websocket,
        active,
    );
    Response::from_parts(rparts, RespBody::empty())
}
