//! A measuring stick for `bench/proxy.sh` (target `raw`), not a proxy to use: the same 50/50
//! split on a hash of `x-user-id` as `bare_proxy`, but with hand-written HTTP/1.1 on both
//! sides instead of hyper. Request and response heads are parsed with `httparse` (hyper's own
//! parser) and forwarded as bytes: no header map is built, nothing is re-encoded. One
//! single-threaded tokio runtime per core with its own SO_REUSEPORT listener, and a
//! per-thread pool of upstream connections; the request is written to the upstream and its
//! response read back by the client connection's own task.
//!
//! It handles only what the benchmark sends: HTTP/1.1 requests without a body and responses
//! framed by `Content-Length`. Anything else closes the connection. Its number answers one
//! question: how much of the distance to NGINX is the HTTP stack, i.e. what a hand-written
//! data path could win.
//!
//! ```sh
//! cargo run --release --example raw_proxy -- 127.0.0.1:19184 127.0.0.1:19101 127.0.0.1:19102
//! ```

use std::cell::RefCell;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "common/percore.rs"]
mod percore;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
];

/// An upstream connection and the bytes read past the last response.
struct Upstream {
    stream: TcpStream,
    buf: Vec<u8>,
}

thread_local! {
    static POOL: RefCell<[Vec<Upstream>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn checkout(i: usize, addr: SocketAddr) -> Result<Upstream, Error> {
    if let Some(up) = POOL.with(|p| p.borrow_mut()[i].pop()) {
        return Ok(up);
    }
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(Upstream {
        stream,
        buf: Vec::with_capacity(8192),
    })
}

/// Read until `buf` holds a whole head; `Ok(None)` on a clean close before any byte.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, Error> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(8192);
    }
    let n = stream.read_buf(buf).await?;
    Ok(n)
}

async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    targets: [SocketAddr; 2],
) -> Result<(), Error> {
    let mut cbuf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    let xff = peer.ip().to_string();
    loop {
        // The request head.
        let (head_len, key_hash, path_range, method_range, kept) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&cbuf)? {
                httparse::Status::Complete(len) => {
                    if req.version != Some(1) {
                        return Err("HTTP/1.1 only".into());
                    }
                    let base = cbuf.as_ptr() as usize;
                    let range = |s: &[u8]| {
                        let start = s.as_ptr() as usize - base;
                        start..start + s.len()
                    };
                    let method = range(req.method.unwrap_or("GET").as_bytes());
                    let path = range(req.path.unwrap_or("/").as_bytes());
                    let mut key = &b""[..];
                    let mut kept: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> =
                        Vec::with_capacity(req.headers.len());
                    for h in req.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") && h.value != b"0" {
                            return Err("request bodies are not handled".into());
                        }
                        if h.name.eq_ignore_ascii_case("x-user-id") {
                            key = h.value;
                        }
                        if HOP_BY_HOP.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
                            continue;
                        }
                        kept.push((range(h.name.as_bytes()), range(h.value)));
                    }
                    break (len, xxhash_rust::xxh3::xxh3_64(key), path, method, kept);
                }
                httparse::Status::Partial => {
                    if read_more(&mut client, &mut cbuf).await? == 0 {
                        return Ok(());
                    }
                }
            }
        };
        let i = (key_hash % 2) as usize;
        let mut up = checkout(i, targets[i]).await?;

        // Rewrite the head as bytes: request line, kept headers, X-Forwarded-For.
        out.clear();
        out.extend_from_slice(&cbuf[method_range]);
        out.push(b' ');
        out.extend_from_slice(&cbuf[path_range]);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (n, v) in kept {
            out.extend_from_slice(&cbuf[n]);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&cbuf[v]);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"x-forwarded-for: ");
        out.extend_from_slice(xff.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        cbuf.drain(..head_len);
        up.stream.write_all(&out).await?;

        // The response head, then its body (Content-Length only).
        let (resp_head, body_len, _) = read_answer(&mut up, |_| {}).await?;
        let total = resp_head + body_len;
        client.write_all(&up.buf[..total]).await?;
        up.buf.drain(..total);
        POOL.with(|p| p.borrow_mut()[i].push(up));
    }
}

/// Read one whole answer (a head and a `Content-Length` body) into `up.buf`, handing each
/// header line to `header`; returns the lengths of the head and the body, and the status.
async fn read_answer(
    up: &mut Upstream,
    mut header: impl FnMut(&httparse::Header<'_>),
) -> Result<(usize, usize, u16), Error> {
    let (head, body_len, status) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&up.buf)? {
            httparse::Status::Complete(len) => {
                let mut body = None;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        body = std::str::from_utf8(h.value)?.trim().parse::<usize>().ok();
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err("chunked responses are not handled".into());
                    }
                    header(h);
                }
                break (
                    len,
                    body.ok_or("no content-length")?,
                    resp.code.unwrap_or(502),
                );
            }
            httparse::Status::Partial => {
                if read_more(&mut up.stream, &mut up.buf).await? == 0 {
                    return Err("upstream closed".into());
                }
            }
        }
    };
    while up.buf.len() < head + body_len {
        if read_more(&mut up.stream, &mut up.buf).await? == 0 {
            return Err("upstream closed mid-body".into());
        }
    }
    Ok((head, body_len, status))
}

/// `--hyper-server`: hyper's server on the client side (as in cutover), the hand-written
/// upstream side above: how much of the gain is the upstream side alone.
async fn hybrid(
    req: http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
    targets: [SocketAddr; 2],
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, Error> {
    let key = req
        .headers()
        .get("x-user-id")
        .map_or(&b""[..], |v| v.as_bytes());
    let i = (xxhash_rust::xxh3::xxh3_64(key) % 2) as usize;
    let mut up = checkout(i, targets[i]).await?;
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        req.uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (n, v) in req.headers() {
        if HOP_BY_HOP.contains(&n.as_str()) {
            continue;
        }
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    out.extend_from_slice(peer.ip().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    up.stream.write_all(&out).await?;
    let mut headers = http::HeaderMap::new();
    let (head, body_len, status) = read_answer(&mut up, |h| {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) {
            headers.append(n, v);
        }
    })
    .await?;
    let body = bytes::Bytes::copy_from_slice(&up.buf[head..head + body_len]);
    up.buf.drain(..head + body_len);
    POOL.with(|p| p.borrow_mut()[i].push(up));
    let mut resp = http::Response::new(http_body_util::Full::new(body));
    *resp.status_mut() = http::StatusCode::from_u16(status)?;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// One client connection, in the mode chosen on the command line.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    targets: [SocketAddr; 2],
    hyper_server: bool,
) {
    if hyper_server {
        let service = hyper::service::service_fn(move |req| hybrid(req, peer, targets));
        let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    } else if let Err(e) = serve(stream, peer, targets).await {
        eprintln!("{peer}: {e}");
    }
}

fn main() -> Result<(), Error> {
    let hyper_server = std::env::args().any(|a| a == "--hyper-server");
    let [listen, old, new] = percore::addrs(&["--hyper-server"])?;
    println!("raw proxy on http://{listen}");
    percore::serve_per_core(listen, move |stream, peer| {
        connection(stream, peer, [old, new], hyper_server)
    });
    Ok(())
}
