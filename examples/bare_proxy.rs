//! The floor of cutover's HTTP stack, for `bench/proxy.sh` (target `bare`): a reverse proxy
//! built like cutover's data path — hyper's server (hyper-util's auto builder) on one
//! single-threaded tokio runtime per core, and a per-thread pool of hyper HTTP/1 client
//! connections — with nothing else: a 50/50 split on a hash of `x-user-id`, no metrics, no
//! header rules, no fallback, no timeouts. (Each thread has its own SO_REUSEPORT listener
//! here; cutover uses one acceptor that hands connections to the least busy worker.)
//!
//! ```sh
//! cargo run --release --example bare_proxy -- 127.0.0.1:19183 127.0.0.1:19101 127.0.0.1:19102
//! ```
//!
//! The distance between this and `cutover serve` is what cutover's own logic costs; the
//! distance between this and NGINX/HAProxy is what the stack costs.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Either, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

#[path = "common/percore.rs"]
mod percore;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Sender = SendRequest<Incoming>;

thread_local! {
    static POOL: RefCell<[Vec<Sender>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

struct Pooled {
    inner: Incoming,
    back: Option<(usize, Sender)>,
}

impl Pooled {
    fn release(&mut self) {
        if let Some((i, s)) = self.back.take() {
            POOL.with(|p| p.borrow_mut()[i].push(s));
        }
    }
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            self.release();
        } else if self.inner.is_end_stream() {
            self.release();
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

async fn checkout(i: usize, addr: SocketAddr) -> Result<Sender, Box<dyn std::error::Error>> {
    loop {
        let s = POOL.with(|p| p.borrow_mut()[i].pop());
        match s {
            Some(mut s) => {
                if s.is_closed() {
                    continue;
                }
                if s.ready().await.is_ok() {
                    return Ok(s);
                }
            }
            None => break,
        }
    }
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(s)
}

async fn forward(
    targets: [SocketAddr; 2],
    req: Request<Incoming>,
) -> Result<Response<Pooled>, Box<dyn std::error::Error>> {
    let key = req
        .headers()
        .get("x-user-id")
        .map_or(&b""[..], |v| v.as_bytes());
    let i = (xxhash_rust::xxh3::xxh3_64(key) % 2) as usize;
    let mut s = checkout(i, targets[i]).await?;
    let resp = s.send_request(req).await?;
    let mut back = Some((i, s));
    if resp.body().is_end_stream() {
        if let Some((i, s)) = back.take() {
            POOL.with(|p| p.borrow_mut()[i].push(s));
        }
    }
    Ok(resp.map(|inner| Pooled { inner, back }))
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let [listen, old, new] = percore::addrs(&[])?;
    println!("bare proxy on http://{listen}");
    percore::serve_per_core(listen, move |stream, _| async move {
        let service = service_fn(move |req| async move {
            Ok::<_, Infallible>(match forward([old, new], req).await {
                Ok(resp) => resp.map(Either::Left),
                Err(_) => {
                    let mut r = Response::new(Either::Right(
                        Empty::<Bytes>::new()
                            .map_err(|never: Infallible| -> hyper::Error { match never {} }),
                    ));
                    *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                    r
                }
            })
        });
        let _ = auto::Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .await;
    });
    Ok(())
}
