//! One client request: route it, admit it (new-session rate, admission limit), forward it,
//! fall back if that is safe and affordable, and record what the env and the user saw.

pub(crate) mod shed;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use subtle::ConstantTimeEq;

use crate::metrics::{ClientFault, Outcome, ProxyFault, Scope};
use crate::proxy::client::refuse;
use crate::proxy::handler::shed::Cause;
use crate::proxy::headers::{
    self, is_upgrade, set_forwarding, strip_hop_by_hop, strip_seen_hop_by_hop, ForwardCache, Seen,
};
use crate::proxy::protect::admission::{Permit, Shed};
use crate::proxy::tunnel::registry as tunnel;
use crate::proxy::upstream::attempt::{self, EnvFault, Failure, Outgoing};
use crate::proxy::upstream::body::{ClientBody, ReqBody, RespBody, UpBody};
use crate::proxy::upstream::pool::InflightGuard;
use crate::proxy::{Conn, Proxy};
use crate::router::{key, Env};

/// Header on the proxy's own error answers, naming what went wrong (for operators and tests).
pub const ERROR_HEADER: &str = "x-cutover-error";
/// Header on every answer naming the env that served it.
pub const ENV_HEADER: &str = "x-cutover-served-by";
pub(super) const ENV_HEADER_NAME: header::HeaderName = header::HeaderName::from_static(ENV_HEADER);

impl Proxy {
    /// Serve one request from `client` on connection `conn`. Never fails: every problem
    /// becomes an HTTP answer.
    ///
    /// Herd protection comes first: a new session (the first request of a connection, or any
    /// tunnel) needs a token from its env's new-session rate; then every request needs a slot
    /// of its env's admission limit, waiting at most the queue timeout. A request refused
    /// either way is never sent to that env.
    pub async fn handle(
        self: &Arc<Self>,
        mut req: Request<ClientBody>,
        client: SocketAddr,
        conn: &Conn,
    ) -> Response<RespBody> {
        let start = Instant::now();
        self.budget.record_request(start);
        // One pass over the names; the lookups below run only for what is there.
        let seen = headers::scan(
            req.headers(),
            &[&self.override_header, &self.override_secret_header],
        );
        let forced = if seen.watched() {
            let forced = self.forced_env(req.headers());
            req.headers_mut().remove(&self.override_header);
            req.headers_mut().remove(&self.override_secret_header);
            forced
        } else {
            None
        };
        let upgrade = seen.may_upgrade() && is_upgrade(req.headers());
        if upgrade && tunnel::declares_body(&req) {
            // Refused before anything reaches an env: the upgrade's upstream head would
            // announce a body the tunnel never sends, and the env would take the next
            // request on that connection for it (request smuggling).
            self.metrics
                .record_client_error(ClientFault::UpgradeWithBody, start);
            return refuse::client_fault(ClientFault::UpgradeWithBody);
        }
        if let (Some(env), false) = (forced, upgrade) {
            return Box::pin(self.forced(req, client, conn, env, seen, start)).await;
        }
        let (env, tunnel_key) = match forced {
            Some(env) => (env, None),
            None => {
                let table = self.router.load();
                let user = key::extract(
                    &self.key_sources,
                    req.headers(),
                    req.uri().query(),
                    client.ip(),
                );
                let env = table.route(user.as_bytes());
                // Tunnels remember their user so the drain can move them later.
                (env, upgrade.then(|| Box::<[u8]>::from(user.as_bytes())))
            }
        };

        let guard = self.guard(env);
        if upgrade || !conn.established() {
            if !guard.take_session(start) {
                self.metrics.record_session_limited(env, start);
                return self.shed_answer(env, Cause::NewSessions, &req, start);
            }
            conn.establish();
        }
        let permit = guard.admit().await;

        if upgrade {
            return match permit {
                Ok(permit) => {
                    Box::pin(tunnel::open(
                        self,
                        req,
                        client,
                        conn.forwarding(),
                        env,
                        tunnel_key,
                        permit,
                    ))
                    .await
                }
                Err(Shed) => self.shed_answer(env, Cause::Overloaded, &req, start),
            };
        }

        let (mut parts, body) = req.into_parts();
        let path = self.prepare(&mut parts, client, conn.forwarding(), seen, false);
        frame_unknown_length(&mut parts.headers, &body);
        let out = Outgoing {
            method: &parts.method,
            path: &path,
            headers: &parts.headers,
            upgrade: false,
        };
        let Ok(permit) = permit else {
            // Shed: nothing was sent, so FALLBACK may take it (budget permitting); the env is
            // never asked again for it.
            let now = Instant::now();
            self.metrics
                .record(Scope::from(env), Outcome::Shed, start.elapsed(), now);
            let answer = self.shed_response(env, Cause::Overloaded, &parts, now);
            let (resp, users) = if env == Env::Fallback {
                (answer, Some(Outcome::Shed))
            } else {
                let failed = Failed {
                    answer,
                    env_outcome: None,
                    users: Outcome::Shed,
                };
                let unsent = body.filter(|b| !b.is_end_stream());
                Box::pin(self.fallback(env, start, &out, unsent, failed)).await
            };
            if let Some(users) = users {
                self.metrics
                    .record(Scope::Users, users, start.elapsed(), Instant::now());
            }
            return resp;
        };
        let (body, unsent) = ReqBody::new(body, &self.metrics);
        let body_empty = unsent.is_none();
        // The adaptive limit wants the env's own latency, without the wait for a slot; nothing
        // else needs a second reading of the clock.
        let sent_at = if guard.is_adaptive() {
            Instant::now()
        } else {
            start
        };
        let first = attempt::send(self.pool(env), &out, body, unsent).await;
        let empty_idempotent = body_empty && attempt::idempotent(out.method);

        let (resp, users) = match first.result {
            Ok(resp)
                if resp.status() == StatusCode::SERVICE_UNAVAILABLE
                    && env != Env::Fallback
                    && body_empty
                    && attempt::idempotent(out.method) =>
            {
                // The env says it is overloaded: a safe request goes to FALLBACK (budget
                // permitting); the 503 stays the answer otherwise.
                guard.sample(sent_at.elapsed(), Instant::now());
                let failed = Failed {
                    answer: self.wrap(resp, first.upstream, first.conn, env, permit),
                    env_outcome: Some(Outcome::ServerError),
                    users: Outcome::ServerError,
                };
                Box::pin(self.fallback(env, start, &out, None, failed)).await
            }
            Ok(resp) => {
                let now = Instant::now();
                guard.sample(now - sent_at, now);
                // The env's answer is what the user gets: one record for both.
                let outcome = status_outcome(resp.status());
                let scopes = [Scope::from(env), Scope::Users];
                self.metrics.record_in(&scopes, outcome, now - start, now);
                return self.wrap(resp, first.upstream, first.conn, env, permit);
            }
            Err(Failure::Env(fault))
                if env != Env::Fallback
                    && Failure::Env(fault).replayable(first.unsent.is_some(), empty_idempotent) =>
            {
                drop(permit);
                let answer = env_error(env, fault);
                let failed = Failed {
                    users: error_outcome(answer.status()),
                    answer,
                    env_outcome: Some(fault.outcome()),
                };
                Box::pin(self.fallback(env, start, &out, first.unsent, failed)).await
            }
            Err(Failure::Env(fault)) => {
                drop(permit);
                let now = Instant::now();
                self.metrics
                    .record(Scope::from(env), fault.outcome(), start.elapsed(), now);
                if env != Env::Fallback {
                    self.metrics.record_displaced(env, false, now);
                }
                let answer = env_error(env, fault);
                let users = error_outcome(answer.status());
                (answer, Some(users))
            }
            Err(other) => {
                // Not the env's fault: nothing goes into its scope, and it is never replayed.
                drop(permit);
                return self.not_envs_fault(env, other, start);
            }
        };
        if let Some(users) = users {
            let end = Instant::now();
            self.metrics.record(Scope::Users, users, end - start, end);
        }
        resp
    }

    /// A request forced to `env` by the override header (a smoke test): the env's own answer,
    /// never replayed on FALLBACK (the smoke test wants to see what the env does), and counted
    /// apart from the users' traffic ([`crate::metrics::Metrics::record_override`]): a smoke
    /// test must neither move nor stall a run. Admission still applies (a smoke test does not
    /// get past an env's limit).
    async fn forced(
        self: &Arc<Self>,
        req: Request<ClientBody>,
        client: SocketAddr,
        conn: &Conn,
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
        frame_unknown_length(&mut parts.headers, &body);
        let out = Outgoing {
            method: &parts.method,
            path: &path,
            headers: &parts.headers,
            upgrade: false,
        };
        let (body, unsent) = ReqBody::new(body, &self.metrics);
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

    /// Record and answer a failure that was not `env`'s fault ([`attempt::classify`]). A
    /// client's fault is counted in its own counter only — by the body that failed
    /// ([`ReqBody`]) or by the refusal — never in an env's scope nor in `users`: a client's
    /// broken request is not something the service did to its users. The proxy's own is
    /// counted in its counter and, as what the user got (a `503`), in `users`. (An env's
    /// failure is recorded by the caller; it is only answered here.)
    pub(super) fn not_envs_fault(
        &self,
        env: Env,
        failure: Failure,
        start: Instant,
    ) -> Response<RespBody> {
        if let Failure::Proxy(kind) = failure {
            let now = Instant::now();
            self.metrics.record_proxy_error(kind, now);
            self.metrics
                .record(Scope::Users, Outcome::ServerError, now - start, now);
        }
        failure_answer(env, failure)
    }

    /// Try FALLBACK after `env` could not (or would not) answer. `failed` is what the user
    /// gets if the retry is not allowed — FALLBACK sheds it too, or the retry budget is spent —
    /// or FALLBACK fails as well. Returns the answer and what it counts as for users (`None`:
    /// not counted there, the client's own fault).
    async fn fallback(
        self: &Arc<Self>,
        env: Env,
        start: Instant,
        out: &Outgoing<'_>,
        unsent: Option<Incoming>,
        failed: Failed,
    ) -> (Response<RespBody>, Option<Outcome>) {
        let refused = |this: &Self, now: Instant, failed: Failed| {
            if let Some(o) = failed.env_outcome {
                this.metrics
                    .record(Scope::from(env), o, start.elapsed(), now);
            }
            this.metrics.record_displaced(env, false, now);
            (failed.answer, Some(failed.users))
        };
        // FALLBACK's own admission first, so a shed there spends no retry token.
        let Ok(permit) = self.guard(Env::Fallback).admit().await else {
            let now = Instant::now();
            self.metrics
                .record(Scope::Fallback, Outcome::Shed, Duration::ZERO, now);
            return refused(self, now, failed);
        };
        let now = Instant::now();
        if !self.budget.try_retry(now) {
            self.metrics.record_budget_exhausted(now);
            return refused(self, now, failed);
        }
        self.metrics.record_retry(now);
        let (body, unsent) = match unsent {
            Some(b) => {
                let (body, handle) = ReqBody::replay(b, &self.metrics);
                (body, Some(handle))
            }
            None => (ReqBody::Empty, None),
        };
        let retry_start = Instant::now();
        let second = attempt::send(self.pool(Env::Fallback), out, body, unsent).await;
        let done = Instant::now();
        match second.result {
            Ok(resp) => {
                // Displaced, not an error of `env`: the user was answered elsewhere.
                self.metrics.record_displaced(env, true, done);
                let outcome = status_outcome(resp.status());
                self.metrics
                    .record(Scope::Fallback, outcome, done - retry_start, done);
                (
                    self.wrap(resp, second.upstream, second.conn, Env::Fallback, permit),
                    Some(outcome),
                )
            }
            Err(Failure::Env(f)) => {
                drop(permit);
                self.metrics
                    .record(Scope::Fallback, f.outcome(), done - retry_start, done);
                refused(self, done, failed)
            }
            Err(other) => {
                // Not FALLBACK's fault (the client's body broke on the way, or the proxy had
                // no socket): FALLBACK's scope is left alone; what `env` did still counts.
                drop(permit);
                let _ = refused(self, done, failed);
                (self.not_envs_fault(Env::Fallback, other, start), None)
            }
        }
    }

    /// An env's answer as the client gets it: hop-by-hop headers dropped, the env named, and
    /// the body holding the in-flight count, the admission slot and the connection to give
    /// back to the pool until it ends.
    pub(super) fn wrap(
        self: &Arc<Self>,
        resp: Response<UpBody>,
        upstream: Option<Arc<crate::proxy::upstream::pool::Upstream>>,
        conn: Option<crate::proxy::upstream::conns::Pooled>,
        env: Env,
        permit: Permit,
    ) -> Response<RespBody> {
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        parts
            .headers
            .insert(ENV_HEADER_NAME, HeaderValue::from_static(env.as_str()));
        let body = match upstream {
            Some(u) => RespBody::upstream(body, conn, InflightGuard::new(u), permit),
            None => RespBody::empty(),
        };
        Response::from_parts(parts, body)
    }

    /// The env named by a valid override header, if the request carries the secret.
    fn forced_env(&self, headers: &http::HeaderMap) -> Option<Env> {
        let secret = self.override_secret.as_deref()?;
        let wanted = headers.get(&self.override_header)?;
        let given = headers.get(&self.override_secret_header)?;
        if bool::from(given.as_bytes().ct_eq(secret)) {
            wanted.to_str().ok().and_then(Env::parse)
        } else {
            None
        }
    }

    /// Make a client's request head fit for the upstream (hop-by-hop headers dropped, Host
    /// kept, forwarding headers set) and return the path and query to send it to. `seen` is
    /// the [`headers::scan`] of its headers.
    pub(super) fn prepare(
        &self,
        parts: &mut http::request::Parts,
        client: SocketAddr,
        forwarding: &ForwardCache,
        seen: Seen,
        upgrade: bool,
    ) -> http::uri::PathAndQuery {
        strip_seen_hop_by_hop(&mut parts.headers, upgrade, seen);
        // The target's authority wins over `Host` (RFC 9112 §3.2.2, absolute form); HTTP/2
        // clients send :authority instead of Host, and upstreams speak HTTP/1.1.
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, v);
        }
        set_forwarding(
            &mut parts.headers,
            client.ip(),
            self.trust_forwarded,
            forwarding,
        );
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"))
    }
}

/// A body of unknown length goes on chunked, as it came. Said explicitly: hyper's client
/// sends a GET's or HEAD's body of unknown length as no body at all. (An HTTP/2 body with a
/// `Content-Length` keeps it: h2 holds the stream to it.)
fn frame_unknown_length(headers: &mut http::HeaderMap, body: &ClientBody) {
    if body
        .as_ref()
        .is_some_and(|b| !b.is_end_stream() && b.size_hint().exact().is_none())
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
}

/// The answer a user gets when a fallback is refused or fails too.
struct Failed {
    answer: Response<RespBody>,
    /// What the attempt on the env counts as there, if not recorded yet.
    env_outcome: Option<Outcome>,
    /// What the answer counts as for users.
    users: Outcome,
}

pub(super) fn status_outcome(status: StatusCode) -> Outcome {
    if status.is_server_error() {
        Outcome::ServerError
    } else {
        Outcome::Ok
    }
}

fn error_outcome(status: StatusCode) -> Outcome {
    match status {
        StatusCode::GATEWAY_TIMEOUT => Outcome::Timeout,
        _ => Outcome::ServerError,
    }
}

/// The proxy's answer to a failed attempt on `env`, by whose fault it was.
pub(super) fn failure_answer(env: Env, failure: Failure) -> Response<RespBody> {
    match failure {
        Failure::Env(fault) => env_error(env, fault),
        Failure::Client(kind) => refuse::client_fault(kind),
        Failure::Proxy(kind) => proxy_fault(env, kind),
    }
}

/// The proxy's own answer when `env` could not answer.
fn env_error(env: Env, fault: EnvFault) -> Response<RespBody> {
    let text = format!("cutover: the {env} environment {}\n", fault.describe());
    let mut resp = own_answer(fault.status(), fault.code(), text);
    resp.headers_mut()
        .insert(ENV_HEADER_NAME, HeaderValue::from_static(env.as_str()));
    resp
}

/// `503` when the proxy itself had no socket to reach `env` (the env is not named as the one
/// that answered: it was never asked).
fn proxy_fault(env: Env, kind: ProxyFault) -> Response<RespBody> {
    match kind {
        ProxyFault::Resources => own_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "proxy-resources",
            format!(
                "cutover: the proxy is out of resources (file handles, local ports or memory) \
                 to reach the {env} environment; retry shortly\n"
            ),
        ),
    }
}

fn own_answer(status: StatusCode, code: &'static str, text: String) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::text(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(ERROR_HEADER, HeaderValue::from_static(code));
    resp
}
