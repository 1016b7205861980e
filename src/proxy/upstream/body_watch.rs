//! The deadlines of one request's body, as the client sends it: the longest pause and the
//! slowest average rate (`[limits]`).
//!
//! Owns: [`BodyWatch`] (set per request by the client side, fired by [`super::body::ReqBody`]
//! from whatever task polls the body) and the error a body returns when a deadline fires
//! ([`BodyTimeout`]). Must not touch: answers (the handler's `answer` module words the 408) or
//! metrics.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Limits;

tokio::task_local! {
    /// The body deadline of the request being handled on this task; [`super::body::ReqBody`]
    /// picks it up when it wraps a client's body.
    pub(crate) static BODY_WATCH: Arc<BodyWatch>;
}

/// The deadlines of one request's body: the longest pause, and the slowest average rate.
/// Set off by the body (from any task); the request's own task waits on
/// [`BodyWatch::expired`] and answers 408 instead of blaming the env for the client.
#[derive(Debug)]
pub(crate) struct BodyWatch {
    pub(crate) timeout: Duration,
    /// Bytes per second at the least (0: no floor), judged once `grace` of waiting passed.
    pub(crate) min_rate: u64,
    pub(crate) grace: Duration,
    fired: watch::Sender<Option<BodyFault>>,
}

/// How a client failed its body's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFault {
    /// Nothing for longer than the pause limit.
    Silent,
    /// Slower on average than the rate floor.
    TooSlow,
}

impl BodyWatch {
    pub(crate) fn new(limits: &Limits) -> Arc<BodyWatch> {
        Arc::new(BodyWatch {
            timeout: limits.body_read_timeout,
            min_rate: limits.min_body_rate,
            grace: limits.body_rate_grace,
            fired: watch::channel(None).0,
        })
    }

    /// Called by the body when the client failed a deadline.
    pub(crate) fn fire(&self, fault: BodyFault) {
        self.fired.send_replace(Some(fault));
    }

    /// Whether `bytes` received over `waited_ms` of waiting on the client is below the floor.
    pub(crate) fn too_slow(&self, bytes: u64, waited_ms: u64) -> bool {
        self.min_rate > 0
            && u128::from(waited_ms) > self.grace.as_millis()
            && u128::from(bytes) * 1000 < u128::from(self.min_rate) * u128::from(waited_ms)
    }

    /// Resolves once a deadline has fired, with which.
    pub(crate) async fn expired(&self) -> BodyFault {
        let mut rx = self.fired.subscribe();
        let fault = match rx.wait_for(Option::is_some).await {
            Ok(f) => *f,
            // The sender lives in `self`: not reached while it is borrowed.
            Err(_) => None,
        };
        fault.unwrap_or(BodyFault::Silent)
    }
}

/// The error a body returns when its deadline fires.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyTimeout {
    #[error("the client sent no request body data for {0:?}")]
    Silent(Duration),
    #[error("the client sent its request body slower than {0} bytes/s")]
    TooSlow(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_too_slow_only_past_the_grace_and_below_the_floor() {
        let limits = Limits {
            min_body_rate: 100,
            body_rate_grace: Duration::from_secs(5),
            ..Limits::default()
        };
        let w = BodyWatch::new(&limits);
        assert!(!w.too_slow(0, 5_000), "within the grace");
        assert!(w.too_slow(3, 6_000), "a trickle");
        assert!(!w.too_slow(600, 6_000), "exactly the floor");
        assert!(w.too_slow(599, 6_000));
        let off = BodyWatch::new(&Limits {
            min_body_rate: 0,
            ..limits
        });
        assert!(!off.too_slow(0, 3_600_000));
    }
}
