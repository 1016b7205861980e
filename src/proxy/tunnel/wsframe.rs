//! Just enough of RFC 6455 framing to close a WebSocket politely from the middle of a tunnel:
//! where the frames of one direction begin and end, and a server's close frame.
//!
//! Owns: header arithmetic. Must not touch: payloads (never read, unmasked or copied) or
//! sockets — the tunnel feeds bytes through [`FrameTracker`] and asks whether it stands at a
//! frame boundary, where a close frame can be written without corrupting the stream.

/// `1012 Service Restart`: the client should reconnect (it will reach its new env).
pub(crate) const SERVICE_RESTART: u16 = 1012;
/// `1001 Going Away`: the proxy is shutting down.
pub(crate) const GOING_AWAY: u16 = 1001;

/// Where a byte stream of WebSocket frames stands.
#[derive(Debug, Clone, Default)]
pub(crate) struct FrameTracker {
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    left: u64,
}

impl FrameTracker {
    /// Account for `data`, the next bytes of the stream.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.left > 0 {
                let n = (self.left.min(data.len() as u64)) as usize;
                self.left -= n as u64;
                data = &data[n..];
                continue;
            }
            self.header[self.have] = data[0];
            self.have += 1;
            data = &data[1..];
            if let Some(len) = self.complete() {
                self.have = 0;
                self.left = len;
            }
        }
    }

    /// True between frames (no header or payload half passed).
    pub(crate) fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }

    /// The payload length once the header in `self.header[..have]` is whole.
    fn complete(&self) -> Option<u64> {
        if self.have < 2 {
            return None;
        }
        let masked = self.header[1] & 0x80 != 0;
        let (ext, len7) = match self.header[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        let total = 2 + ext + if masked { 4 } else { 0 };
        if self.have < total {
            return None;
        }
        Some(len7.unwrap_or_else(|| {
            self.header[2..2 + ext]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        }))
    }
}

/// A server-to-client (unmasked) close frame with `code` and a short `reason`.
pub(crate) fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    // Control frames carry at most 125 bytes: the code and up to 123 of reason.
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut f = Vec::with_capacity(4 + reason.len());
    f.push(0x88);
    f.push((2 + reason.len()) as u8);
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(reason);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![0x82];
        let m = if masked { 0x80 } else { 0 };
        match len {
            0..=125 => f.push(m | len as u8),
            126..=65535 => {
                f.push(m | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(m | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(7u8, len));
        f
    }

    #[test]
    fn boundaries_are_found_whatever_the_chunking() {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for (len, masked) in [
            (0, false),
            (5, true),
            (125, false),
            (300, true),
            (70_000, false),
        ] {
            stream.extend(frame(len, masked));
            ends.push(stream.len());
        }
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let mut t = FrameTracker::default();
            let mut at = 0;
            let mut seen = Vec::new();
            for piece in stream.chunks(chunk) {
                for b in piece {
                    t.feed(std::slice::from_ref(b));
                    at += 1;
                    if t.at_boundary() {
                        seen.push(at);
                    }
                }
            }
            assert_eq!(seen, ends, "chunk {chunk}");
        }
        let mut t = FrameTracker::default();
        t.feed(&stream[..ends[2] + 1]);
        assert!(!t.at_boundary());
        t.feed(&stream[ends[2] + 1..]);
        assert!(t.at_boundary());
    }

    #[test]
    fn the_close_frame_is_well_formed() {
        assert_eq!(
            close_frame(1012, "move"),
            [0x88, 6, 0x03, 0xf4, b'm', b'o', b'v', b'e']
        );
        assert_eq!(close_frame(1001, &"x".repeat(200)).len(), 2 + 125);
    }
}
