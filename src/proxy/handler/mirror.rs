//! Shadow traffic: a copy of a mirrored user's request, sent to NEW after OLD has answered the
//! user, on the same worker, and judged as the `mirror` scope.
//!
//! The user's answer never waits for the copy: the copy is made before the request goes to
//! OLD (only for a user the routing table marks as mirrored: no allocation otherwise), and sent
//! by a task of its own once OLD's answer head is on its way to the user. A worker keeps at
//! most `[mirror] max_inflight` copies in flight: beyond it a copy is dropped and counted
//! (`mirror.dropped_rate`), so a NEW that hangs or refuses holds at most that many slots and
//! never slows OLD's users. Only methods in `[mirror] methods` (GET, HEAD, OPTIONS by default)
//! are copied; the others of a mirrored user are skipped and counted. A request body is kept
//! as it streams to OLD (up to `[mirror] max_body`, [`crate::proxy::upstream::tap`]) and the
//! copy sends it whole; a body that is longer, fails, or that OLD never read (a fallback) is
//! not copied (skipped and counted). A copy carries `x-cutover-mirror: 1`. With a step's
//! `compare`, OLD's answer body is kept (up to `[mirror] compare_max_body`) as it streams to the
//! user (`crate::proxy::upstream::tap`) and compared with NEW's once both have ended.
//!
//! Owns: [`Mirror`] (the per-worker bound and the settings), [`Copy`] and its task. Must not
//! touch: the user's request or answer (it reads OLD's status and headers, nothing more), the
//! routing rule (the table says who is mirrored), NEW's admission (copies take no slot of it).

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Response};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::sync::oneshot;

use super::answer::{ENV_HEADER_NAME, ERROR_HEADER};
use super::compare::{compare, same_body, sample, Old};
use super::record::answer_outcome;
use super::Proxy;
use crate::config::MirrorConfig;
use crate::metrics::{MirrorCount, Scope};
use crate::proxy::protect::admission::Permit;
use crate::proxy::upstream::attempt::{self, Failure, Outgoing};
use crate::proxy::upstream::body::{is_empty, ClientBody, ReqBody, RespBody};
use crate::proxy::upstream::pool::InflightGuard;
use crate::proxy::upstream::tap::{Keep, Tapped};
use crate::router::Env;
use crate::shard::{self, Sharded};

/// The header that marks a copy, so NEW (and its logs) can tell shadow traffic apart.
pub const MIRROR_HEADER: HeaderName = HeaderName::from_static("x-cutover-mirror");

/// The shadow traffic settings and each worker's copies in flight.
#[derive(Debug)]
pub(crate) struct Mirror {
    methods: Box<[Method]>,
    max_inflight: u32,
    /// Request bodies up to this size are copied.
    max_body: usize,
    inflight: Sharded<AtomicU32>,
    pub(super) ignore_headers: Box<[HeaderName]>,
    /// Bodies up to this size are compared; 0: never.
    compare_max_body: usize,
    ignore_json_fields: Box<[String]>,
    /// How long a copy's answer body may take to read (NEW's request timeout), and how long
    /// the copy waits for OLD's body to have streamed to the user.
    body_timeout: Duration,
}

impl Mirror {
    pub(crate) fn new(cfg: &MirrorConfig, body_timeout: Duration) -> Mirror {
        Mirror {
            methods: cfg.methods.clone().into_boxed_slice(),
            max_inflight: cfg.max_inflight,
            max_body: cfg.max_body,
            inflight: Sharded::new(|| AtomicU32::new(0)),
            ignore_headers: cfg.ignore_headers.clone().into_boxed_slice(),
            compare_max_body: cfg.compare_max_body,
            ignore_json_fields: cfg.ignore_json_fields.clone().into_boxed_slice(),
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
    /// The request's body, once it has gone to OLD whole (`None`: it had none).
    body: Option<oneshot::Receiver<Bytes>>,
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
    /// A copy of `out` for NEW, if its method may be copied, its body (if any) is not known
    /// to be too long, and its worker has room; else `None`, counted as skipped or dropped.
    /// With a body, also what keeps it as it goes to OLD.
    pub(super) fn copy_of(
        self: &Arc<Self>,
        out: &Outgoing<'_>,
        body: &ClientBody,
        compare: bool,
    ) -> Option<(Copy, Option<Box<Keep>>)> {
        let m = &self.mirror;
        let has_body = !is_empty(body);
        let too_long = body
            .as_ref()
            .and_then(|b| b.size_hint().exact())
            .is_some_and(|len| len > m.max_body as u64);
        if !m.methods.contains(out.method) || (has_body && too_long) {
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
        let (keep, body) = if has_body {
            // Sent whole, so framed by its length, and with nothing to wait for.
            headers.remove(TRANSFER_ENCODING);
            headers.remove(EXPECT);
            let (keep, kept) = Keep::new(m.max_body);
            (Some(Box::new(keep)), Some(kept))
        } else {
            (None, None)
        };
        let copy = Copy {
            proxy: self.clone(),
            method: out.method.clone(),
            path: out.path.clone(),
            headers,
            body,
            compare,
            shard,
        };
        Some((copy, keep))
    }
}

/// Send `copy` (if any) now that `resp`, the user's answer, is on its way; returns `resp`.
#[inline]
pub(super) fn after(copy: Option<Copy>, resp: Response<RespBody>) -> Response<RespBody> {
    let Some(copy) = copy else { return resp };
    // Compared only with OLD's own answer, not with one the proxy made for it.
    let compared = copy.compare
        && resp
            .headers()
            .get(ENV_HEADER_NAME)
            .is_some_and(|v| v.as_bytes() == b"old")
        && !resp.headers().contains_key(ERROR_HEADER);
    if !compared {
        tokio::spawn(copy.send(None));
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let limit = copy.proxy.mirror.compare_max_body;
    let (body, old_body) = if limit > 0 {
        let (body, kept) = Tapped::wrap(body, limit);
        (body, Some(kept))
    } else {
        (body, None)
    };
    let old = Old {
        status: parts.status,
        headers: parts.headers.clone(),
        body: old_body,
    };
    tokio::spawn(copy.send(Some(old)));
    Response::from_parts(parts, body)
}

impl Copy {
    /// Send the copy to NEW, record what NEW made of it, compare, and read its answer to the
    /// end so the connection goes back to the pool.
    async fn send(mut self, old: Option<Old>) {
        let Some(body) = self.whole_body().await else {
            return;
        };
        let proxy = &self.proxy;
        let out = Outgoing {
            method: &self.method,
            path: &self.path,
            headers: &self.headers,
            upgrade: false,
            trailers: false,
        };
        let start = Instant::now();
        let sent = attempt::send(proxy.pool(Env::New), &out, body, None).await;
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
        let status = resp.status();
        let head_differs = old.as_ref().and_then(|o| compare(&self, o, Some(&resp)));
        let Some(upstream) = sent.upstream else {
            return;
        };
        let (_, body) = resp.into_parts();
        let body = RespBody::upstream(
            body,
            sent.conn,
            InflightGuard::new(upstream),
            Permit::unlimited(),
        );
        // NEW's body is read to its end either way (its connection goes back to the pool),
        // and kept when OLD's is to be compared with it.
        let wants_body = head_differs.is_none() && old.as_ref().is_some_and(|o| o.body.is_some());
        let limit = if wants_body {
            proxy.mirror.compare_max_body
        } else {
            0
        };
        let new_body = read_body(body, limit, proxy.mirror.body_timeout).await;
        let Some(mut old) = old else { return };
        let mut differs = head_differs;
        if let (None, Some(new_body), Some(old_body)) = (&differs, new_body, old.body.take()) {
            let old_body = tokio::time::timeout(proxy.mirror.body_timeout, old_body).await;
            if let Ok(Ok(old_body)) = old_body {
                if !same_body(&old_body, &new_body, &proxy.mirror.ignore_json_fields) {
                    differs = Some(sample(&self, &old, Some(status), "body".to_owned()));
                }
            }
        }
        metrics.record_comparison(differs, Instant::now());
    }

    /// The body to send: none, or the user's whole once OLD has read it (framed by its
    /// length). `None` when it cannot be copied — longer than `max_body`, failed, or never
    /// read by OLD — counted as skipped.
    async fn whole_body(&mut self) -> Option<ReqBody> {
        let Some(kept) = self.body.take() else {
            return Some(ReqBody::Empty);
        };
        match tokio::time::timeout(self.proxy.mirror.body_timeout, kept).await {
            Ok(Ok(bytes)) => {
                self.headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                Some(ReqBody::Whole(Some(bytes)))
            }
            _ => {
                let now = Instant::now();
                self.proxy.metrics.record_mirror(MirrorCount::Skipped, now);
                None
            }
        }
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

/// Read `body` to its end (within `timeout`), keeping its bytes when they fit in `limit`: the
/// bytes, or `None` when it was longer, failed or took too long.
async fn read_body(mut body: RespBody, limit: usize, timeout: Duration) -> Option<bytes::Bytes> {
    let mut kept = Some(bytes::BytesMut::new());
    let read = tokio::time::timeout(timeout, async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let (Some(data), Some(k)) = (frame.data_ref(), kept.as_mut()) {
                if k.len() + data.len() > limit {
                    kept = None;
                } else {
                    k.extend_from_slice(data);
                }
            }
        }
        true
    })
    .await;
    match read {
        Ok(true) => kept.map(bytes::BytesMut::freeze),
        _ => None,
    }
}
