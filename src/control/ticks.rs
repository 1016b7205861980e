//! `GET /v1/ticks`: the recorded analysis ticks, a page at a time, for `cutover metrics export`.
//!
//! Owns: the route's query (`from`, `to` in ms since the epoch, `limit`) and its answer
//! ([`crate::api::TicksPage`]). Must not touch: the store directly — it reads through the
//! orchestrator [`crate::orchestrator::Handle`], on a blocking thread.

use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::routes::{error, json, Body};
use super::Admin;
use crate::api::TicksPage;

/// Most ticks in one page (about 1 MiB of JSON); the client asks again from `next`.
pub const MAX_PAGE: usize = 1000;

pub(super) async fn ticks(control: &Admin, req: &Request<Incoming>) -> http::Response<Body> {
    let (mut from, mut to, mut limit) = (0u64, u64::MAX, MAX_PAGE);
    for pair in req.uri().query().unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let ok = match k {
            "from" => v.parse().map(|n| from = n).is_ok(),
            "to" => v.parse().map(|n| to = n).is_ok(),
            "limit" => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .map(|n| limit = n.min(MAX_PAGE))
                .is_some(),
            _ => false,
        };
        if !ok {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("`{k}={v}` is not valid"),
                "known parameters: from and to (ms since the epoch), limit (1..1000); \
                 e.g. /v1/ticks?from=1700000000000&limit=500",
            );
        }
    }
    let handle = control.handle.clone();
    let read = tokio::task::spawn_blocking(move || handle.ticks(from, to, limit + 1)).await;
    match read {
        Ok(Ok(mut ticks)) => {
            let next = (ticks.len() > limit).then(|| ticks[limit].t_ms);
            ticks.truncate(limit);
            json(StatusCode::OK, &TicksPage { ticks, next })
        }
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
            "check the store directory and the server log",
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("reading the ticks failed: {e}"),
            "see the server log",
        ),
    }
}
