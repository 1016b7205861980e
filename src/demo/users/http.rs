//! A short-request user: GET, read the answer, think, repeat; retry failures its own way.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rand::Rng;

use super::policy::retry_delay;
use super::{online, pause, Ctx, Phase, User};

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Longest a user waits for an answer before it counts the request as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One client shared by all users (connections to the proxy are pooled like a browser's).
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(3)));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// What one attempt got.
pub struct Answer {
    pub ok: bool,
    pub retry_after: Option<Duration>,
}

/// One GET as `user` on `path`, body read to the end.
pub async fn get(ctx: &Ctx, user: &str, path: &str) -> Answer {
    let failed = Answer {
        ok: false,
        retry_after: None,
    };
    let Ok(req) = Request::get(format!("http://{}{path}", ctx.proxy))
        .header("x-user-id", user)
        .body(Empty::new())
    else {
        return failed;
    };
    let attempt = async {
        let resp = ctx.http.request(req).await.ok()?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body_ok = resp.into_body().collect().await.is_ok();
        Some(Answer {
            ok: body_ok && status.is_success(),
            retry_after: retry_after
                .filter(|_| status == StatusCode::SERVICE_UNAVAILABLE || status.as_u16() == 429),
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(failed)
}

/// One request with the user's retries (`first`: an attempt already made and counted);
/// `false` when the users were stopped meanwhile. Its latency, from `started` to the last
/// answer (served or given up), is recorded unless the outage or the end cut it short.
async fn request(
    user: &mut User,
    ctx: &mut Ctx,
    path: &str,
    mut first: Option<Answer>,
    started: Instant,
) -> bool {
    let mut failures = 0;
    loop {
        let a = match first.take() {
            Some(a) => a,
            None => {
                let a = get(ctx, &user.id, path).await;
                ctx.stats.attempt(!a.ok, a.retry_after.is_some());
                a
            }
        };
        if a.ok {
            ctx.stats.latency.record(started.elapsed());
            return true;
        }
        failures += 1;
        match retry_delay(user.kind, failures, a.retry_after, &mut user.rng) {
            Some(d) => {
                if !pause(d, &mut ctx.phase).await {
                    return false;
                }
                if *ctx.phase.borrow() != Phase::Online {
                    return true; // the outage took the request with it
                }
            }
            None => {
                ctx.stats
                    .given_up
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ctx.stats.latency.record(started.elapsed());
                return true;
            }
        }
    }
}

/// The user's life: request, think, repeat; after an outage, resync with a burst at once.
pub async fn run(mut user: User, mut ctx: Ctx) {
    // Users arrive over the first think time, not all in one instant.
    let arrive = user.rng.gen_range(Duration::ZERO..=ctx.mix.think.1);
    if !pause(arrive, &mut ctx.phase).await {
        return;
    }
    let mut n: u64 = 0;
    loop {
        let Some(came_back) = online(&mut ctx.phase).await else {
            return;
        };
        if came_back && ctx.mix.resync > 0 {
            let (user_ref, ctx_ref) = (&user, &ctx);
            let started = Instant::now();
            let burst = (0..ctx.mix.resync).map(|i| async move {
                let a = get(ctx_ref, &user_ref.id, &format!("/api/sync/{i}")).await;
                ctx_ref.stats.attempt(!a.ok, a.retry_after.is_some());
                if a.ok {
                    ctx_ref.stats.latency.record(started.elapsed());
                }
                a
            });
            let answers = futures_util::future::join_all(burst).await;
            // Whatever failed is retried one by one, the client's own way.
            for (i, a) in answers.into_iter().enumerate() {
                let path = format!("/api/sync/{i}");
                if !a.ok && !request(&mut user, &mut ctx, &path, Some(a), started).await {
                    return;
                }
            }
        }
        n += 1;
        if !request(
            &mut user,
            &mut ctx,
            &format!("/api/items/{}", n % 100),
            None,
            Instant::now(),
        )
        .await
        {
            return;
        }
        let (lo, hi) = ctx.mix.think;
        let think = if hi > lo {
            user.rng.gen_range(lo..hi)
        } else {
            lo
        };
        if !pause(think, &mut ctx.phase).await {
            return;
        }
    }
}
