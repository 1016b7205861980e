//! One attempt of a request on one env, and what its failure means.
//!
//! The classification decides fallback: a request may be replayed on FALLBACK only when that
//! is safe — nothing of it reached the upstream (connect refused or timed out), or it is
//! idempotent with an empty body. A timeout waiting for the answer is never replayed: the
//! upstream may still be working on it, and a replay would double the load on a slow world.

use std::error::Error as StdError;
use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::body::{ReqBody, Unsent};
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
}

pub struct Attempt {
    pub result: Result<Response<Incoming>, Failure>,
    pub upstream: Option<Arc<Upstream>>,
    /// The request body, taken back if none of it was sent.
    pub unsent: Option<Incoming>,
}

/// Send `out` with `body` to one upstream of `pool`, waiting at most the env's request timeout
/// for the response head.
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
            unsent: unsent.and_then(Unsent::take),
        };
    };
    let uri = match Uri::builder()
        .scheme("http")
        .authority(upstream.authority.clone())
        .path_and_query(out.path.clone())
        .build()
    {
        Ok(uri) => uri,
        Err(_) => {
            return Attempt {
                result: Err(Failure::NoUpstream),
                upstream: None,
                unsent: unsent.and_then(Unsent::take),
            }
        }
    };
    let mut req = Request::new(body);
    *req.method_mut() = out.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = out.headers.clone();
    let result = match tokio::time::timeout(pool.request_timeout, pool.client.request(req)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(classify(&e)),
        Err(_) => Err(Failure::Timeout),
    };
    let unsent = if result.is_err() {
        unsent.and_then(Unsent::take)
    } else {
        None
    };
    Attempt {
        result,
        upstream: Some(upstream.clone()),
        unsent,
    }
}

fn classify(e: &hyper_util::client::legacy::Error) -> Failure {
    let mut src: Option<&(dyn StdError + 'static)> = e.source();
    let connect = e.is_connect();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Failure::Refused,
                std::io::ErrorKind::TimedOut => return Failure::ConnectTimeout,
                _ => {}
            }
        }
        if connect && s.to_string().contains("timed out") {
            return Failure::ConnectTimeout;
        }
        src = s.source();
    }
    if connect {
        Failure::Refused
    } else {
        Failure::Reset
    }
}
