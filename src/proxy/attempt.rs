//! One attempt of a request on one env, and what its failure means.
//!
//! The classification decides fallback: a request may be replayed on FALLBACK only when that
//! is safe — nothing of it reached the upstream (connect refused or timed out), or it is
//! idempotent with an empty body. A timeout waiting for the answer is never replayed: the
//! upstream may still be working on it, and a replay would double the load on a slow world.

use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::body::{ReqBody, Unsent, UpBody};
use super::connpool::{Pooled, SendError};
use super::headers;
use super::upstream::{Pool, Upstream};
use crate::metrics::Outcome;

/// Why an attempt got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No upstream is configured for the env.
    NoUpstream,
    Refused,
    ConnectTimeout,
    /// The connection was reset or closed before an answer.
    Reset,
    /// No answer within the env's request timeout.
    Timeout,
}

impl Failure {
    pub fn outcome(self) -> Outcome {
        match self {
            Failure::NoUpstream | Failure::Refused => Outcome::Refused,
            Failure::ConnectTimeout | Failure::Timeout => Outcome::Timeout,
            Failure::Reset => Outcome::Reset,
        }
    }

    /// Nothing of the request reached the upstream.
    pub fn nothing_sent(self) -> bool {
        matches!(
            self,
            Failure::NoUpstream | Failure::Refused | Failure::ConnectTimeout
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            Failure::NoUpstream => "has no upstream configured",
            Failure::Refused => "refused the connection",
            Failure::ConnectTimeout => "did not accept the connection in time",
            Failure::Reset => "closed the connection without an answer",
            Failure::Timeout => "did not answer in time",
        }
    }
}

/// The method is idempotent (RFC 9110 §9.2.2), so a replay cannot do anything twice.
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// What the upstream request is made of; reused for a replay.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    pub path: &'a http::uri::PathAndQuery,
    pub headers: &'a HeaderMap,
    /// An upgrade (the answer may switch protocols): sent through hyper, which hands over
    /// the upgraded connection.
    pub upgrade: bool,
}

pub struct Attempt {
    pub result: Result<Response<UpBody>, Failure>,
    pub upstream: Option<Arc<Upstream>>,
    /// The hyper connection the answer came on, to give back once its body has ended (a
    /// hand-spoken connection travels inside the body instead).
    pub conn: Option<Pooled>,
    /// The request body, taken back if none of it was sent.
    pub unsent: Option<Incoming>,
}

/// Send `out` with `body` to one upstream of `pool`, waiting at most the env's request timeout
/// for the response head (kept by the upstream's connections, [`super::deadlines`]).
pub async fn send(
    pool: &Pool,
    out: &Outgoing<'_>,
    body: ReqBody,
    unsent: Option<Unsent>,
) -> Attempt {
    let Some(upstream) = pool.pick() else {
        return Attempt {
            result: Err(Failure::NoUpstream),
            upstream: None,
            conn: None,
            unsent: unsent.and_then(Unsent::take),
        };
    };
    let by_hand = matches!(body, ReqBody::Empty) && !out.upgrade && *out.method != Method::CONNECT;
    let (result, conn) = if by_hand {
        // The common request, no body: spoken by hand, straight from the prepared headers.
        match upstream.conns.send_raw(out).await {
            Ok(resp) => (Ok(resp.map(UpBody::Raw)), None),
            Err(e) => (Err(classify(&e)), None),
        }
    } else {
        // Origin form (`/path?query`): the upstream connection is to this upstream already.
        let mut req = Request::new(body);
        *req.method_mut() = out.method.clone();
        *req.uri_mut() = Uri::from(out.path.clone());
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = out.headers.clone();
        match upstream.conns.send(req).await {
            Ok((mut resp, conn)) => {
                if headers::normalize_answer(&mut resp, out.upgrade) {
                    (Ok(resp.map(UpBody::Hyper)), Some(conn))
                } else {
                    // An invalid answer (a `101` nobody asked for): the connection is
                    // dropped, not given back, and the env failed the request as if it had
                    // closed.
                    (Err(Failure::Reset), None)
                }
            }
            Err(e) => (Err(classify(&e)), None),
        }
    };
    let unsent = if result.is_err() {
        unsent.and_then(Unsent::take)
    } else {
        None
    };
    Attempt {
        result,
        upstream: Some(upstream.clone()),
        conn,
        unsent,
    }
}

fn classify(e: &SendError) -> Failure {
    match e {
        SendError::Connect(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            Failure::ConnectTimeout
        }
        SendError::Connect(_) => Failure::Refused,
        SendError::ConnectTimeout => Failure::ConnectTimeout,
        SendError::Failed(_) => Failure::Reset,
        SendError::TimedOut => Failure::Timeout,
    }
}
