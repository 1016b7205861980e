//! Copies of a body, up to a limit, taken while it streams on: what shadow traffic reads of a
//! mirrored user's request body (to send NEW the same request, `[mirror] max_body`) and of
//! OLD's answer (for the comparison, `compare = true`, `[mirror] compare_max_body`).
//!
//! Owns: [`Keep`] (the bytes kept and their hand-over) and [`Tapped`], the answer-body wrapper.
//! Must not touch: the frames themselves — the peer gets every frame as it comes, never later;
//! a body over the limit is simply not handed over (its copy or comparison is skipped), so a
//! tap holds at most the limit in memory.

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame};
use tokio::sync::oneshot;

use super::body::RespBody;

/// The bytes of a body seen so far, up to `limit`, handed over once the body has ended.
#[derive(Debug)]
pub(crate) struct Keep {
    kept: BytesMut,
    limit: usize,
    /// Taken when the body ended within the limit (sent) or went over it (dropped).
    to: Option<oneshot::Sender<Bytes>>,
}

impl Keep {
    /// A keeper, and where its bytes arrive once the body has ended (closed without a value
    /// when it went over `limit`, failed, or was dropped before its end).
    pub(crate) fn new(limit: usize) -> (Keep, oneshot::Receiver<Bytes>) {
        let (to, from) = oneshot::channel();
        let keep = Keep {
            kept: BytesMut::new(),
            limit,
            to: Some(to),
        };
        (keep, from)
    }

    /// A frame on its way on.
    pub(crate) fn seen(&mut self, frame: &Frame<Bytes>) {
        let Some(data) = frame.data_ref() else { return };
        if self.to.is_none() {
            return;
        }
        if self.kept.len() + data.len() > self.limit {
            self.to = None;
            self.kept = BytesMut::new();
        } else {
            self.kept.extend_from_slice(data);
        }
    }

    /// The body ended: hand its bytes over.
    pub(crate) fn ended(&mut self) {
        if let Some(to) = self.to.take() {
            let _ = to.send(std::mem::take(&mut self.kept).freeze());
        }
    }

    /// The body failed: nothing is handed over.
    pub(crate) fn failed(&mut self) {
        self.to = None;
        self.kept = BytesMut::new();
    }
}

/// An answer body whose bytes are also kept, up to a limit, for the comparison.
pub(crate) struct Tapped {
    pub(crate) inner: RespBody,
    pub(crate) keep: Keep,
}

impl Tapped {
    /// `inner` tapped, and where its bytes arrive once it has ended (closed without a value
    /// when it went over `limit` or was dropped before its end).
    pub(crate) fn wrap(inner: RespBody, limit: usize) -> (RespBody, oneshot::Receiver<Bytes>) {
        let (mut keep, from) = Keep::new(limit);
        if inner.is_end_stream() {
            keep.ended();
        }
        (RespBody::Tapped(Box::new(Tapped { inner, keep })), from)
    }
}
