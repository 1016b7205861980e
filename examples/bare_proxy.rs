//! The floor of cutover's HTTP stack, for `bench/proxy.sh` (target `bare`): a reverse proxy
//! built from the same parts as cutover's data path — hyper-util's auto server builder and its
//! pooled legacy client on a multi-threaded tokio runtime — with nothing else: a 50/50 split on
//! a hash of `x-user-id`, no metrics, no header rules, no fallback, no timeouts.
//!
//! ```sh
//! cargo run --release --example bare_proxy -- 127.0.0.1:19183 127.0.0.1:19101 127.0.0.1:19102
//! ```
//!
//! The distance between this and `cutover serve` is what cutover's own logic costs; the
//! distance between this and NGINX/HAProxy is what the stack costs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Incoming>;

// Same allocator as the `cutover` binary, so the comparison is of the code, not of malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn forward(
    client: Upstream,
    targets: [http::uri::Authority; 2],
    mut req: Request<Incoming>,
) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
    let key = req
        .headers()
        .get("x-user-id")
        .map_or(&b""[..], |v| v.as_bytes());
    let target = &targets[(xxhash_rust::xxh3::xxh3_64(key) % 2) as usize];
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    if let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(target.clone())
        .path_and_query(path)
        .build()
    {
        *req.uri_mut() = uri;
    }
    client.request(req).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args.next().ok_or("LISTEN OLD NEW")?.parse()?;
    let old: http::uri::Authority = args.next().ok_or("LISTEN OLD NEW")?.parse()?;
    let new: http::uri::Authority = args.next().ok_or("LISTEN OLD NEW")?.parse()?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .build(connector);
    let listener = TcpListener::bind(listen).await?;
    println!("bare proxy on http://{}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, targets) = (client.clone(), [old.clone(), new.clone()]);
        let service =
            service_fn(move |req| {
                let (client, targets) = (client.clone(), targets.clone());
                async move {
                    Ok::<_, Infallible>(match forward(client, targets, req).await {
                        Ok(resp) => resp.map(http_body_util::Either::Left),
                        Err(_) => {
                            let mut r = Response::new(http_body_util::Either::Right(
                                http_body_util::Empty::<bytes::Bytes>::new(),
                            ));
                            *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                            r
                        }
                    })
                }
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(conn);
    }
}
