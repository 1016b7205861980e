//! One client request: route it, forward it, fall back if that is safe and affordable, and
//! record what the env and the user saw.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use super::attempt::{self, Attempt, Failure, Outgoing};
use super::body::{ReqBody, RespBody};
use super::headers::{is_upgrade, set_forwarding, strip_hop_by_hop};
use super::tunnel;
use super::upstream::InflightGuard;
use super::Proxy;
use crate::metrics::{Outcome, Scope};
use crate::router::{key, Env};

/// Header on the proxy's own error answers, naming what went wrong (for operators and tests).
pub const ERROR_HEADER: &str = "x-cutover-error";
/// Header on every answer naming the env that served it.
pub const ENV_HEADER: &str = "x-cutover-served-by";

impl Proxy {
    /// Serve one request from `client`. Never fails: every problem becomes an HTTP answer.
    pub async fn handle(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<RespBody> {
        let start = Instant::now();
        self.budget.record_request(start);
        let forced = self.forced_env(req.headers());
        req.headers_mut().remove(&self.override_header);
        req.headers_mut().remove(&self.override_secret_header);
        let env = forced.unwrap_or_else(|| {
            let table = self.router.load();
            let user = key::extract(
                &self.key_sources,
                req.headers(),
                req.uri().query(),
                client.ip(),
            );
            table.route(user.as_bytes())
        });

        if is_upgrade(req.headers()) {
            return tunnel::open(self, req, client, env).await;
        }

        let (mut parts, body) = req.into_parts();
        self.prepare_headers(&mut parts, client, false);
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let out = Outgoing {
            method: &parts.method,
            path: &path,
            headers: &parts.headers,
        };
        let (body, unsent) = ReqBody::new(body);
        let body_empty = unsent.is_none();
        let first = attempt::send(self.pool(env), &out, body, unsent).await;
        // A timeout is never replayed: the env may still be working on it, and a replay would
        // double the load on a world that is already slow.
        let replay_ok = |a: &Attempt, f: Failure| {
            f != Failure::Timeout
                && (f.nothing_sent()
                    || a.unsent.is_some()
                    || (body_empty && attempt::idempotent(out.method)))
        };

        let (resp, served_by) = match first.result {
            Ok(resp)
                if resp.status() == StatusCode::SERVICE_UNAVAILABLE
                    && env != Env::Fallback
                    && body_empty
                    && attempt::idempotent(out.method) =>
            {
                // The env says it is overloaded: a safe request goes to FALLBACK (budget
                // permitting); the 503 stays the answer otherwise.
                let failed = Failed {
                    answer: self.wrap(resp, first.upstream, env),
                    served_by: Some(env),
                    outcome: Outcome::ServerError,
                };
                self.fallback(env, start, &out, None, failed).await
            }
            Ok(resp) => {
                let outcome = status_outcome(resp.status());
                self.metrics
                    .record(Scope::from(env), outcome, start.elapsed(), Instant::now());
                (self.wrap(resp, first.upstream, env), Some(env))
            }
            Err(failure) if env != Env::Fallback && replay_ok(&first, failure) => {
                let failed = Failed {
                    answer: proxy_error(env, failure),
                    served_by: None,
                    outcome: failure.outcome(),
                };
                self.fallback(env, start, &out, first.unsent, failed).await
            }
            Err(failure) => {
                let now = Instant::now();
                self.metrics
                    .record(Scope::from(env), failure.outcome(), start.elapsed(), now);
                if env != Env::Fallback {
                    self.metrics.record_displaced(env, false, now);
                }
                (proxy_error(env, failure), None)
            }
        };
        let outcome = match served_by {
            Some(_) => status_outcome(resp.status()),
            None => error_outcome(resp.status()),
        };
        self.metrics
            .record(Scope::Users, outcome, start.elapsed(), Instant::now());
        resp
    }

    /// Try FALLBACK after `env` could not answer. `failed` is what the user gets if the retry
    /// is not allowed or FALLBACK fails too, with the env that produced it (if any) and the
    /// outcome it counts as for `env`.
    async fn fallback(
        self: &Arc<Self>,
        env: Env,
        start: Instant,
        out: &Outgoing<'_>,
        unsent: Option<Incoming>,
        failed: Failed,
    ) -> (Response<RespBody>, Option<Env>) {
        let now = Instant::now();
        if !self.budget.try_retry(now) {
            self.metrics.record_budget_exhausted(now);
            self.metrics
                .record(Scope::from(env), failed.outcome, start.elapsed(), now);
            self.metrics.record_displaced(env, false, now);
            return (failed.answer, failed.served_by);
        }
        self.metrics.record_retry(now);
        let (body, unsent) = match unsent {
            Some(b) => {
                let (body, handle) = ReqBody::replay(b);
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
                    self.wrap(resp, second.upstream, Env::Fallback),
                    Some(Env::Fallback),
                )
            }
            Err(f) => {
                self.metrics.record_displaced(env, false, done);
                self.metrics
                    .record(Scope::from(env), failed.outcome, start.elapsed(), done);
                self.metrics
                    .record(Scope::Fallback, f.outcome(), done - retry_start, done);
                (failed.answer, failed.served_by)
            }
        }
    }

    fn wrap(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        upstream: Option<Arc<super::upstream::Upstream>>,
        env: Env,
    ) -> Response<RespBody> {
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        parts
            .headers
            .insert(ENV_HEADER, HeaderValue::from_static(env.as_str()));
        let body = match upstream {
            Some(u) => RespBody::Upstream {
                body,
                _inflight: InflightGuard::new(&u, &self.metrics, env),
            },
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

    pub(super) fn prepare_headers(
        &self,
        parts: &mut http::request::Parts,
        client: SocketAddr,
        upgrade: bool,
    ) {
        strip_hop_by_hop(&mut parts.headers, upgrade);
        if !parts.headers.contains_key(header::HOST) {
            // HTTP/2 clients send :authority instead of Host; upstreams speak HTTP/1.1.
            if let Some(v) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(header::HOST, v);
            }
        }
        let host = parts.headers.get(header::HOST).cloned();
        set_forwarding(
            &mut parts.headers,
            client.ip(),
            host.as_ref(),
            self.trust_forwarded,
        );
    }
}

/// The answer a user gets when a fallback is refused or fails too.
struct Failed {
    answer: Response<RespBody>,
    served_by: Option<Env>,
    outcome: Outcome,
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

/// The proxy's own answer when `env` could not answer.
pub(super) fn proxy_error(env: Env, failure: Failure) -> Response<RespBody> {
    let status = match failure {
        Failure::Timeout | Failure::ConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
        Failure::NoUpstream => StatusCode::SERVICE_UNAVAILABLE,
        Failure::Refused | Failure::Reset => StatusCode::BAD_GATEWAY,
    };
    let text = format!("cutover: the {env} environment {}\n", failure.describe());
    let mut resp = Response::new(RespBody::text(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        ERROR_HEADER,
        HeaderValue::from_static(failure_code(failure)),
    );
    h.insert(ENV_HEADER, HeaderValue::from_static(env.as_str()));
    resp
}

fn failure_code(f: Failure) -> &'static str {
    match f {
        Failure::NoUpstream => "no-upstream",
        Failure::Refused => "refused",
        Failure::ConnectTimeout => "connect-timeout",
        Failure::Reset => "reset",
        Failure::Timeout => "timeout",
    }
}
