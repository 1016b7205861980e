//! A minimal, fast upstream for proxy benchmarks (`bench/proxy.sh`): three HTTP/1.1 servers on
//! `BASE`, `BASE+1`, `BASE+2` (old, new, fallback), each answering every request with a fixed
//! 200 body naming itself, after reading the request body.
//!
//! ```sh
//! cargo run --release --example bench_upstream -- 9101
//! ```
//!
//! Why not `examples/upstream.rs`: the simulated env echoes every request as JSON (headers into
//! a map, then serialised), which costs about as much CPU as the proxy under test on a
//! two-core machine. A static answer keeps the upstream's share of the CPU small and the same
//! for every proxy compared.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn answer(req: Request<Incoming>, body: Bytes) -> Result<Response<Full<Bytes>>, Infallible> {
    // Drain the request body so the connection can be reused.
    let _ = req.into_body().collect().await;
    let mut r = Response::new(Full::new(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn serve(listener: TcpListener, name: &'static str) {
    let body = Bytes::from(format!("{{\"env\":\"{name}\"}}\n"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, body.clone()));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let base: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(9101);
    for (i, name) in ["old", "new", "fallback"].into_iter().enumerate() {
        let addr = SocketAddr::from(([127, 0, 0, 1], base + i as u16));
        let listener = TcpListener::bind(addr).await?;
        println!("{name:<9} on http://{}", listener.local_addr()?);
        tokio::spawn(serve(listener, name));
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
