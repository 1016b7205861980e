//! A copy of an answer's body, up to a limit, taken while it streams to the client: what shadow
//! traffic's comparison reads of OLD's answer (`compare = true`, `[mirror] compare_max_body`).
//!
//! Owns: [`Tapped`], the body wrapper, and the hand-over of the copy. Must not touch: the
//! frames themselves — the client gets every frame as it comes, never later; a body over the
//! limit is simply not handed over (its comparison is skipped), so the tap holds at most the
//! limit in memory.

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame};
use tokio::sync::oneshot;

use super::body::RespBody;

/// An answer body whose bytes are also kept, up to `limit`, for the comparison.
pub(crate) struct Tapped {
    pub(crate) inner: RespBody,
    kept: BytesMut,
    limit: usize,
    /// Taken when the body ended within the limit (sent) or went over it (dropped).
    to: Option<oneshot::Sender<Bytes>>,
}

impl Tapped {
    /// `inner` tapped, and where its bytes arrive once it has ended (closed without a value
    /// when it went over `limit` or was dropped before its end).
    pub(crate) fn wrap(inner: RespBody, limit: usize) -> (RespBody, oneshot::Receiver<Bytes>) {
        let (to, from) = oneshot::channel();
        let mut tapped = Tapped {
            inner,
            kept: BytesMut::new(),
            limit,
            to: Some(to),
        };
        if tapped.inner.is_end_stream() {
            tapped.ended();
        }
        (RespBody::Tapped(Box::new(tapped)), from)
    }

    /// A frame on its way to the client.
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
}
