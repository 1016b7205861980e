//! Routing and validation of control API requests. Every answer is JSON; every error is
//! `{"error": ..., "hint": ...}` with 400 (bad input), 401 (no valid token), 403 (a role too
//! low), 404, 405, 409 (state) or 413.
//!
//! [`ACCESS`] is the one table of which role each route needs; `GET /metrics` needs no token.
//!
//! Helpers return `Result<T, Response>` so a bad input short-circuits into its answer; the
//! response is large but this is the admin path, not the data path.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::tokens::{Operator, Role};
use super::{sse, Admin};
use crate::api::{ActionRequest, ApiError, ErrorDetail, Verb, ACTOR_HEADER};
use crate::orchestrator::{Cmd, CommandError};

pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body the API reads (a plan is a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// `POST /v1/weight`: [`crate::api::WeightRequest`] plus an optional `ramp` (a duration string).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: f64,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    ramp: Option<String>,
}

/// A `ramp` of `set-weight`: a duration from 0s to the plans' `[rollback] ramp` maximum (24h).
pub fn parse_ramp(s: &str) -> Result<std::time::Duration, String> {
    let d =
        humantime::parse_duration(s.trim()).map_err(|e| format!("`{s}` is not a duration: {e}"))?;
    if d > crate::plan::model::bounds::MAX_RAMP {
        return Err(format!("`{s}` is longer than 24h"));
    }
    Ok(d)
}

/// Which role each route needs (method, path, least role); each role includes the ones below
/// it. A path or method not listed needs a valid token of any role (and then gets 404 or 405);
/// `GET /metrics` is not listed: it needs no token.
pub const ACCESS: &[(&str, &str, Role)] = &[
    ("GET", "/v1/status", Role::Viewer),
    ("GET", "/v1/events", Role::Viewer),
    ("GET", "/v1/plans", Role::Viewer),
    ("GET", "/v1/ticks", Role::Viewer),
    ("POST", "/v1/pause", Role::Operator),
    ("POST", "/v1/resume", Role::Operator),
    ("POST", "/v1/approve", Role::Operator),
    ("POST", "/v1/rollback", Role::Operator),
    ("POST", "/v1/abort", Role::Operator),
    ("POST", "/v1/weight", Role::Operator),
    ("POST", "/v1/start", Role::Admin),
    ("POST", "/v1/reload", Role::Admin),
];

/// The least role `method path` needs ([`ACCESS`]).
pub fn needs(method: &Method, path: &str) -> Role {
    ACCESS
        .iter()
        .find(|(m, p, _)| *p == path && *m == method.as_str())
        .map_or(Role::Viewer, |(_, _, role)| *role)
}

pub async fn route(control: &Admin, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/metrics" {
        return match *req.method() {
            Method::GET => text(StatusCode::OK, control.handle.metrics_text()),
            _ => method_not_allowed("GET"),
        };
    }
    let who = match authorize(control, &req, &path) {
        Ok(who) => who,
        Err(resp) => return resp,
    };
    let actor = actor(&who, &req);
    let method = req.method().clone();
    match (path.as_str(), method) {
        ("/v1/status", Method::GET) => json(StatusCode::OK, &control.handle.status()),
        ("/v1/events", Method::GET) => events(control, &req).await,
        ("/v1/plans", Method::GET) => match control.handle.plans() {
            Ok(plans) => json(StatusCode::OK, &plans),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), "check the store directory and the server log"),
        },
        ("/v1/ticks", Method::GET) => super::ticks::ticks(control, &req).await,
        ("/v1/start", Method::POST) => start(control, req, &actor).await,
        ("/v1/reload", Method::POST) => reload(control, &actor).await,
        ("/v1/weight", Method::POST) => {
            let body: WeightBody = match read_json(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if !body.weight.is_finite() || !(0.0..=100.0).contains(&body.weight) {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("weight {} is out of range", body.weight),
                    "give a percentage of users for NEW between 0 and 100, e.g. {\"weight\": 30}",
                );
            }
            let cmd = match body.ramp.as_deref().map(parse_ramp) {
                None => Cmd::SetWeight(body.weight),
                Some(Ok(over)) => Cmd::RampWeight {
                    percent: body.weight,
                    over,
                },
                Some(Err(e)) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("ramp: {e}"),
                        "give a duration from \"0s\" to \"24h\", e.g. {\"weight\": 0, \"ramp\": \"2m\"}",
                    )
                }
            };
            command(control, cmd, &actor, body.reason).await
        }
        (p, Method::POST) if Verb::from_path(p).is_some() => {
            let body: ActionRequest = match read_json_optional(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let Some(verb) = Verb::from_path(p) else {
                return method_not_allowed("POST");
            };
            command(control, verb_cmd(verb), &actor, body.reason).await
        }
        ("/v1/status" | "/v1/events" | "/v1/plans" | "/v1/ticks", _) => method_not_allowed("GET"),
        (p, _) if p == "/v1/start" || p == "/v1/weight" || p == "/v1/reload" || Verb::from_path(p).is_some() => method_not_allowed("POST"),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no route {path}"),
            "routes: /v1/status, /v1/start, /v1/{pause,resume,approve,rollback,abort}, /v1/weight, /v1/reload, /v1/events, /v1/plans, /v1/ticks, /metrics",
        ),
    }
}

/// The orchestrator command an API verb asks for.
fn verb_cmd(verb: Verb) -> Cmd {
    match verb {
        Verb::Pause => Cmd::Pause,
        Verb::Resume => Cmd::Resume,
        Verb::Approve => Cmd::Approve,
        Verb::Rollback => Cmd::Rollback,
        Verb::Abort => Cmd::Abort,
    }
}

/// The operator whose token the request carries, if their role is enough for the route;
/// else the 401 or 403 answer (logged, rate-limited, by name, never the token).
fn authorize(
    control: &Admin,
    req: &Request<Incoming>,
    path: &str,
) -> Result<Operator, Response<Body>> {
    let needs = needs(req.method(), path);
    let sent = req.headers().get(header::AUTHORIZATION);
    let Some(who) = control.access.identify(sent.map(|v| v.as_bytes())) else {
        control
            .access
            .log_unknown(req.method(), path, sent.is_some());
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            &format!(
                "missing or wrong bearer token: {} {path} needs the {needs} role",
                req.method()
            ),
            &format!(
                "send `Authorization: Bearer TOKEN` with a token of role {} (the CLI reads \
                 --token-file or CUTOVER_TOKEN)",
                roles_from(needs)
            ),
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return Err(resp);
    };
    if who.role < needs {
        control
            .access
            .log_forbidden(&who, needs, req.method(), path);
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "`{}` has the {} role: {} {path} needs the {needs} role",
                who.name,
                who.role,
                req.method()
            ),
            &format!(
                "use a token of role {}, or have an admin give `{}` that role in the tokens file \
                 and reload",
                roles_from(needs),
                who.name
            ),
        ));
    }
    Ok(who)
}

/// `operator or admin`: the roles that include `role`.
fn roles_from(role: Role) -> String {
    Role::NAMES[role as usize..].join(" or ")
}

/// The event's actor: the token's name, with what the client calls itself (`x-cutover-actor`:
/// `cli`, `console`, a script's note) added as `alice (note: cli)`. The header never replaces
/// the name; one that is empty, too long or not printable ASCII (or has parentheses) is left
/// out.
fn actor(who: &Operator, req: &Request<Incoming>) -> String {
    let note = req
        .headers()
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| (b.is_ascii_graphic() || b == b' ') && b != b'(' && b != b')')
        });
    match note {
        Some(note) => format!("{} (note: {note})", who.name),
        None => who.name.clone(),
    }
}

async fn start(control: &Admin, req: Request<Incoming>, actor: &str) -> Response<Body> {
    let bytes = match read_body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Ok(text) = String::from_utf8(bytes.to_vec()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the plan is not UTF-8 text",
            "post the plan's TOML file as the body",
        );
    };
    match crate::plan::parse(&text) {
        Ok(plan) => {
            command(
                control,
                Cmd::Start {
                    plan: Box::new(plan),
                    text,
                },
                actor,
                None,
            )
            .await
        }
        Err(diags) => {
            let first = diags.first();
            let body = ApiError {
                error: match first {
                    Some(d) => format!(
                        "invalid plan: {}:{}: {} ({} problem(s))",
                        d.line,
                        d.col,
                        d.message,
                        diags.len()
                    ),
                    None => "invalid plan".to_owned(),
                },
                hint: first.map_or_else(
                    || "run `cutover plan check FILE` to see every problem".to_owned(),
                    |d| d.hint.clone(),
                ),
                details: diags
                    .into_iter()
                    .map(|d| ErrorDetail {
                        line: d.line,
                        col: d.col,
                        message: d.message,
                        hint: d.hint,
                    })
                    .collect(),
            };
            json(StatusCode::BAD_REQUEST, &body)
        }
    }
}

/// Read the server's config file again and apply it whole, or answer 400 and change nothing.
async fn reload(control: &Admin, actor: &str) -> Response<Body> {
    use crate::reload::ReloadError;
    let Some(reloader) = &control.reload else {
        return error(
            StatusCode::CONFLICT,
            &ReloadError::NoSource.to_string(),
            "restart the server with --config to change its settings",
        );
    };
    match reloader.reload_and_record(&control.handle, actor).await {
        Ok(r) => json(
            StatusCode::OK,
            &serde_json::json!({
                "reloaded": true,
                "file": r.file.display().to_string(),
                "changed": r.changed,
            }),
        ),
        Err(ReloadError::Invalid(problems)) => {
            let body = ApiError {
                error: format!(
                    "invalid config, nothing was changed: {}{}",
                    problems
                        .first()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    match problems.len() {
                        0 | 1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    }
                ),
                hint: "fix the file and reload again; the running config is unchanged".into(),
                details: problems
                    .into_iter()
                    .map(|p| ErrorDetail {
                        line: p.line,
                        col: p.col,
                        message: p.to_string(),
                        hint: String::new(),
                    })
                    .collect(),
            };
            json(StatusCode::BAD_REQUEST, &body)
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            &e.to_string(),
            "the running config is unchanged",
        ),
    }
}

async fn command(control: &Admin, cmd: Cmd, actor: &str, reason: Option<String>) -> Response<Body> {
    match control.handle.command(cmd, actor, reason).await {
        Ok(status) => json(StatusCode::OK, &status),
        Err(CommandError::Rejected(why)) => error(
            StatusCode::CONFLICT,
            &why,
            "see `cutover status` for the current state; nothing was changed",
        ),
        Err(e @ CommandError::Store(_)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
            "check the store (its disk, or etcd for a fleet) and the server log; nothing was \
             changed",
        ),
        Err(e @ CommandError::Conflict(_)) => error(
            StatusCode::CONFLICT,
            &e.to_string(),
            "see `cutover status` for the state now, and send the command again if it still \
             applies",
        ),
        Err(e @ CommandError::Stopped) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &e.to_string(),
            "retry after the restart",
        ),
    }
}

async fn events(control: &Admin, req: &Request<Incoming>) -> Response<Body> {
    let mut since = 0u64;
    let mut limit = 1000usize;
    let mut follow = req
        .headers()
        .get(header::ACCEPT)
        .is_some_and(|a| a.as_bytes().starts_with(b"text/event-stream"));
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |what: &str| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("`{k}={v}` is not valid"),
                &format!("{what}; e.g. /v1/events?since=42&limit=100&follow=1"),
            )
        };
        match k {
            "since" => match v.parse() {
                Ok(n) => since = n,
                Err(_) => return bad("since is an event id (a whole number)"),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if n > 0 => limit = n.min(10_000),
                _ => return bad("limit is a whole number above 0"),
            },
            "follow" => follow = matches!(v, "" | "1" | "true"),
            _ => return bad("known parameters are since, limit and follow"),
        }
    }
    if follow {
        return sse::stream(control.handle.clone(), since);
    }
    match control.handle.events_since(since, limit) {
        Ok(list) => json(StatusCode::OK, &list),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
            "check the store and the server log",
        ),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body over {MAX_BODY} bytes"),
                "plans and commands are small; check what is being sent",
            ))
        }
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("could not read the body: {e}"),
            "resend the request",
        )),
    }
}

async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    let bytes = read_body(req).await?;
    parse_json(&bytes)
}

/// An empty body means the defaults (e.g. no reason).
async fn read_json_optional<T: DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let bytes = read_body(req).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(&bytes)
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Response<Body>> {
    serde_json::from_slice(bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON body: {e}"),
            "send e.g. {\"weight\": 30} to /v1/weight or {\"reason\": \"...\"} to an action",
        )
    })
}

pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value)
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\",\"hint\":\"\"}}").into_bytes());
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

pub fn error(status: StatusCode, error: &str, hint: &str) -> Response<Body> {
    json(
        status,
        &ApiError {
            error: error.to_owned(),
            hint: hint.to_owned(),
            details: Vec::new(),
        },
    )
}

fn method_not_allowed(allowed: &'static str) -> Response<Body> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
        &format!("use {allowed}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static(allowed));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_needs_an_operator_and_the_rest_of_the_table_holds() {
        for verb in Verb::ALL {
            let path = format!("/v1/{}", verb.route());
            assert_eq!(needs(&Method::POST, &path), Role::Operator, "{path}");
        }
        assert_eq!(needs(&Method::GET, "/v1/events"), Role::Viewer);
        assert_eq!(needs(&Method::POST, "/v1/weight"), Role::Operator);
        assert_eq!(needs(&Method::POST, "/v1/start"), Role::Admin);
        assert_eq!(needs(&Method::POST, "/v1/reload"), Role::Admin);
        // Not a route (404) or not its method (405): any valid token gets that answer.
        assert_eq!(needs(&Method::GET, "/v1/nothing"), Role::Viewer);
        assert_eq!(needs(&Method::GET, "/v1/start"), Role::Viewer);
        assert_eq!(roles_from(Role::Operator), "operator or admin");
    }
}
