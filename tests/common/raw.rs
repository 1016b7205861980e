//! A raw TCP client for hostile-input tests: send exact bytes, read what comes back, and see
//! whether the server closed the connection.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a raw exchange got back.
#[derive(Debug)]
pub struct Reply {
    pub bytes: Vec<u8>,
    /// The server closed (EOF or reset) before the deadline.
    pub closed: bool,
    pub elapsed: Duration,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Status code of the first response, if one came.
    pub fn status(&self) -> Option<u16> {
        let text = self.text();
        let line = text.lines().next()?;
        line.strip_prefix("HTTP/1.1 ")
            .or_else(|| line.strip_prefix("HTTP/1.0 "))?
            .get(..3)?
            .parse()
            .ok()
    }

    /// The value of header `name` in the first response (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The body of the first response (everything after its head).
    pub fn body(&self) -> String {
        let text = self.text();
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }
}

/// Send `bytes` on a new connection and read until the server closes or `wait` passes.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Reply {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let start = Instant::now();
    // The server may close before everything is written (that is an answer too).
    let _ = s.write_all(bytes).await;
    read_until_closed(&mut s, start, wait).await
}

/// Read from `s` until EOF/reset (closed) or until `wait` after `start` passes.
pub async fn read_until_closed(s: &mut TcpStream, start: Instant, wait: Duration) -> Reply {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = start + wait;
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    Reply {
        bytes,
        closed,
        elapsed: start.elapsed(),
    }
}

/// Read one response head (and whatever body bytes came with it) without waiting for a close.
pub async fn read_head(s: &mut TcpStream, wait: Duration) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + wait;
    while !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The `Content-Length` of a request or response head, if it has one that parses.
pub fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    })
}

/// Read one HTTP/1.1 response with a `Content-Length` body from `s`.
pub async fn read_response(s: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            if body.len() >= content_length(head).expect("content-length") {
                return text;
            }
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&bytes));
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// Read from `s` into `buf` until `buf` starts with a whole request head; return the head
/// (without its blank line) and where what follows it starts in `buf`. `None` once `s` closes
/// or fails first. For scripted upstreams.
pub async fn next_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, usize)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((String::from_utf8_lossy(&buf[..end]).into_owned(), end + 4));
        }
        if !read_more(s, buf).await {
            return None;
        }
    }
}

/// Append what `s` has to `buf`; false once it closes or fails.
pub async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match s.read(&mut chunk).await {
        Ok(n) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// Read a chunked body off `s` through `buf` (which may hold its start), decoded, trailers
/// skipped; what follows it stays in `buf`. `None` if it is cut or malformed.
pub async fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if !read_more(s, buf).await {
                return None;
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    buf.drain(..i + 2);
                    if i == 0 {
                        return Some(body);
                    }
                    continue;
                }
                if !read_more(s, buf).await {
                    return None;
                }
            }
        }
        while buf.len() < size + 2 {
            if !read_more(s, buf).await {
                return None;
            }
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}
