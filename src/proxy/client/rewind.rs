//! A socket with bytes already read from it put back in front: how a client connection that
//! [`super::lane`] read a request head from goes to hyper with that head unread.
//!
//! Owns: [`Rewind`]. Must not touch: the bytes themselves (given back exactly as read).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, read from `prefix` first.
#[derive(Debug)]
pub(crate) struct Rewind<T> {
    /// What is left of the bytes given back; empty (and holding no buffer) once read.
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub(crate) fn new(prefix: Bytes, inner: T) -> Rewind<T> {
        let mut r = Rewind { prefix, inner };
        r.release_if_read();
        r
    }

    /// `prefix` is a view into the lane's whole read buffer: let go of that buffer once
    /// nothing of it is left to read, so a connection that lives on with hyper (HTTP/2, a
    /// tunnel) does not hold it for its lifetime.
    fn release_if_read(&mut self) {
        if !self.prefix.has_remaining() {
            self.prefix = Bytes::new();
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.release_if_read();
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn gives_the_prefix_first_then_the_socket() {
        let inner: &[u8] = b" world";
        let mut r = Rewind::new(Bytes::from_static(b"hello"), inner);
        let mut small = [0u8; 3];
        let n = r.read(&mut small).await.expect("read");
        assert_eq!(&small[..n], b"hel");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"lo world");
    }

    #[tokio::test]
    async fn lets_go_of_the_read_buffer_once_the_prefix_is_read() {
        let buffer = Bytes::from(b"GET / HTTP/1.1\r\n\r\n and room to spare".to_vec());
        let mut r = Rewind::new(buffer.slice(..18), &b""[..]);
        assert!(!buffer.is_unique(), "the prefix is a view into the buffer");
        let mut head = Vec::new();
        r.read_to_end(&mut head).await.expect("read");
        assert_eq!(head, b"GET / HTTP/1.1\r\n\r\n");
        assert!(buffer.is_unique(), "still held after the prefix was read");

        // Nothing left to give back: not held from the start.
        let _r = Rewind::new(buffer.slice(18..18), &b""[..]);
        assert!(buffer.is_unique(), "an empty prefix holds the buffer");
    }
}
