//! Shadow traffic: a copy of a mirrored user's request, sent to NEW after OLD has answered the
//! user, on the same worker, and judged as the `mirror` scope.
//!
//! The user's answer never waits for the copy: the copy is made before the request goes to
//! OLD (only for a user the routing table marks as mirrored: no allocation otherwise), and sent
//! by a task of its own once OLD's answer head is on its way to the user. A worker keeps at
//! most `[mirror] max_inflight` copies in flight: beyond it a copy is dropped and counted
//! (`mirror.dropped_rate`), so a NEW that hangs or refuses holds at most that many slots and
//! never slows OLD's users. Only methods in `[mirror] methods` (GET, HEAD, OPTIONS by default)
//! are copied, and only requests without a body; the others of a mirrored user are skipped
//! and counted. A copy carries `x-cutover-mirror: 1`.
//!
//! Owns: [`Mirror`] (the per-worker bound and the settings), [`Copy`] and its task. Must not
//! touch: the user's request or answer (it reads OLD's status and headers, nothing more), the
//! routing rule (the table says who is mirrored), NEW's admission (copies take no slot of it).

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response};
use http_body_util::BodyExt;

use super::answer::{ENV_HEADER_NAME, ERROR_HEADER};
use super::compare::{compare, Old};
use super::record::answer_outcome;
use super::Proxy;
use crate::config::MirrorConfig;
use crate::metrics::{MirrorCount, Scope};
use crate::proxy::protect::admission::Permit;
use crate::proxy::upstream::attempt::{self, Failure, Outgoing};
use crate::proxy::upstream::body::{ReqBody, RespBody};
use crate::proxy::upstream::pool::InflightGuard;
use crate::router::Env;
use crate::shard::{self, Sharded};

/// The header that marks a copy, so NEW (and its logs) can tell shadow traffic apart.
pub const MIRROR_HEADER: HeaderName = HeaderName::from_static("x-cutover-mirror");

/// The shadow traffic settings and each worker's copies in flight.
#[derive(Debug)]
pub(crate) struct Mirror {
    methods: Box<[Method]>,
    max_inflight: u32,
    inflight: Sharded<AtomicU32>,
    pub(super) ignore_headers: Box<[HeaderName]>,
    /// How long a copy's answer body may take to read (NEW's request timeout).
    body_timeout: Duration,
}

impl Mirror {
    pub(crate) fn new(cfg: &MirrorConfig, body_timeout: Duration) -> Mirror {
        Mirror {
            methods: cfg.methods.clone().into_boxed_slice(),
            max_inflight: cfg.max_inflight,
            inflight: Sharded::new(|| AtomicU32::new(0)),
            ignore_headers: cfg.ignore_headers.clone().into_boxed_slice(),
            body_timeout,
        }
    }
}

/// A copy of one request, holding a slot of its worker's bound until it is done.
pub(super) struct Copy {
    proxy: Arc<Proxy>,
    method: Method,
    path: http::uri::PathAndQuery,
    headers: HeaderMap,
    compare: bool,
    shard: usize,
}

impl Drop for Copy {
    fn drop(&mut self) {
        self.proxy
            .mirror
            .inflight
            .get(self.shard)
            .fetch_sub(1, Relaxed);
    }
}

impl Proxy {
    /// A copy of `out` for NEW, if its method may be copied, it has no body and its worker
    /// has room; else `None`, counted as skipped or dropped.
    pub(super) fn copy_of(
        self: &Arc<Self>,
        out: &Outgoing<'_>,
        has_body: bool,
        compare: bool,
    ) -> Option<Copy> {
        let m = &self.mirror;
        if has_body || !m.methods.contains(out.method) {
            self.metrics
                .record_mirror(MirrorCount::Skipped, Instant::now());
            return None;
        }
        let shard = shard::index();
        let inflight = m.inflight.get(shard);
        if inflight.fetch_add(1, Relaxed) >= m.max_inflight {
            inflight.fetch_sub(1, Relaxed);
            self.metrics
                .record_mirror(MirrorCount::Dropped, Instant::now());
            return None;
        }
        let mut headers = out.headers.clone();
        headers.insert(MIRROR_HEADER, HeaderValue::from_static("1"));
        Some(Copy {
            proxy: self.clone(),
            method: out.method.clone(),
            path: out.path.clone(),
            headers,
            compare,
            shard,
        })
    }
}

/// Send `copy` (if any) now that `resp`, the user's answer, is on its way; returns `resp`.
#[inline]
pub(super) fn after(copy: Option<Copy>, resp: Response<RespBody>) -> Response<RespBody> {
    if let Some(copy) = copy {
        // Compared only with OLD's own answer, not with one the proxy made for it.
        let old = (copy.compare
            && resp
                .headers()
                .get(ENV_HEADER_NAME)
                .is_some_and(|v| v.as_bytes() == b"old")
            && !resp.headers().contains_key(ERROR_HEADER))
        .then(|| Old {
            status: resp.status(),
            headers: resp.headers().clone(),
        });
        tokio::spawn(copy.send(old));
    }
    resp
}

impl Copy {
    /// Send the copy to NEW, record what NEW made of it, compare, and read its answer to the
    /// end so the connection goes back to the pool.
    async fn send(self, old: Option<Old>) {
        let proxy = &self.proxy;
        let out = Outgoing {
            method: &self.method,
            path: &self.path,
            headers: &self.headers,
            upgrade: false,
            trailers: false,
        };
        let start = Instant::now();
        let sent = attempt::send(proxy.pool(Env::New), &out, ReqBody::Empty, None).await;
        let now = Instant::now();
        let metrics = &proxy.metrics;
        let resp = match sent.result {
            Ok(resp) => resp,
            Err(Failure::Env(fault)) => {
                metrics.record(Scope::Mirror, fault.outcome(), now - start, now);
                if let Some(old) = old {
                    metrics.record_comparison(compare::<()>(&self, &old, None), now);
                }
                return;
            }
            // Not NEW's fault (the proxy's own shortage): nothing to judge.
            Err(_) => return,
        };
        metrics.record(
            Scope::Mirror,
            answer_outcome(&resp, false),
            now - start,
            now,
        );
        if let Some(old) = old {
            metrics.record_comparison(compare(&self, &old, Some(&resp)), now);
        }
        let Some(upstream) = sent.upstream else {
            return;
        };
        let (_, body) = resp.into_parts();
        let mut body = RespBody::upstream(
            body,
            sent.conn,
            InflightGuard::new(upstream),
            Permit::unlimited(),
        );
        let _ = tokio::time::timeout(proxy.mirror.body_timeout, async {
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
    }

    pub(super) fn method(&self) -> &Method {
        &self.method
    }

    pub(super) fn path(&self) -> &str {
        self.path.as_str()
    }

    pub(super) fn ignores(&self, name: &HeaderName) -> bool {
        self.proxy.mirror.ignore_headers.contains(name)
    }
}
