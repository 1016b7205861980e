//! The suite's clients: exact HTTP/1.1 bytes on a raw socket, and HTTP/2 with prior knowledge
//! (h2c) through the `h2` crate. Both give an [`Answer`] that the other can be compared with.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::raw::{read_chunked, read_more};

const WAIT: Duration = Duration::from_secs(10);

/// One answer as a client got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The reason phrase (HTTP/1.1 only; HTTP/2 has none).
    pub reason: Option<String>,
    /// The status line's version (HTTP/1.1 only).
    pub version: Option<String>,
    /// Every header, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Send `request` on a new connection; read one answer. `None`: the connection closed
/// without one. The second value: the connection was closed after the answer (checked only
/// when `want_close`, by reading until the close or 2 s).
pub async fn h1(
    addr: SocketAddr,
    request: &[u8],
    head_request: bool,
    want_close: bool,
) -> (Option<Answer>, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let read = read_answer(&mut s, &mut buf, head_request);
    let Ok(answer) = tokio::time::timeout(WAIT, read).await else {
        return (None, false);
    };
    let closed = want_close && {
        let mut b = [0u8; 256];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    };
    (answer, closed)
}

/// Read one HTTP/1.1 answer off `s`, through `buf` (what was read past it stays there).
pub async fn read_answer(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> Option<Answer> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if !read_more(s, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().map(str::to_owned);
    let status: u16 = parts.next()?.parse().ok()?;
    let reason = Some(parts.next().unwrap_or("").to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut answer = Answer {
        status,
        reason,
        version,
        headers,
        body: Vec::new(),
    };
    if head_request || status < 200 || status == 204 || status == 304 {
        return Some(answer);
    }
    if answer.header("transfer-encoding").is_some() {
        answer.body = read_chunked(s, buf).await?;
    } else if let Some(n) = answer
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        while buf.len() < n {
            if !read_more(s, buf).await {
                break;
            }
        }
        answer.body = buf.drain(..n.min(buf.len())).collect();
    } else {
        while read_more(s, buf).await {}
        answer.body = std::mem::take(buf);
    }
    Some(answer)
}

/// Send one request over HTTP/2 with prior knowledge; `None` when the stream failed.
pub async fn h2c(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&'static [u8]>,
) -> Option<Answer> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.ok()?;
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://conformance.test{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        // As the HTTP/1.1 client sends it: the env then gets the same framing.
        req = req.header("content-length", b.len());
    }
    let req = req.body(()).expect("request");
    let (resp, mut send) = client.send_request(req, body.is_none()).ok()?;
    if let Some(b) = body {
        send.send_data(Bytes::from_static(b), true).ok()?;
    }
    let resp = tokio::time::timeout(WAIT, resp).await.ok()?.ok()?;
    let (parts, mut recv) = resp.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.ok()?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Some(Answer {
        status: parts.status.as_u16(),
        reason: None,
        version: None,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: data,
    })
}
