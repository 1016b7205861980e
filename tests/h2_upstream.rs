//! HTTP/2 towards an env (`protocol = "h2"`) and trailers both ways, through real sockets: an
//! HTTP/1.1 env's trailers reach an HTTP/1.1 client that sent `TE: trailers`; an h2 env's
//! trailers reach an h2 client and the client's reach the env; a worker's requests share a
//! few connections to an h2 env, reconnect when the env closes one, and fail as they do on
//! HTTP/1.1 (refused: replayed on FALLBACK; no answer in time: 504).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{any_port, dead_addr, wait_until};
use cutover::config::Config;
use cutover::metrics::Metrics;
use cutover::proxy::{Live, Proxy};
use cutover::router::{Router, RoutingTable, Weight};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch, Notify};

/// Every wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

type Answer = Response<
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>,
>;

/// What a scripted env saw and holds.
#[derive(Default)]
struct EnvState {
    conns: AtomicUsize,
    /// Requests waiting in `/hold`.
    held: AtomicUsize,
    release: Option<watch::Receiver<bool>>,
}

/// An answer of `data` ending with `trailers`, with `headers`.
fn answer(data: &'static [u8], headers: &[(&'static str, String)], trailers: HeaderMap) -> Answer {
    let mut frames = vec![Ok(Frame::data(Bytes::from_static(data)))];
    if !trailers.is_empty() {
        frames.push(Ok(Frame::trailers(trailers)));
    }
    let mut resp = Response::new(StreamBody::new(futures_util::stream::iter(frames)));
    for (k, v) in headers {
        resp.headers_mut()
            .insert(*k, HeaderValue::from_str(v).expect("value"));
    }
    resp
}

fn trailer(name: &'static str, value: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert(name, HeaderValue::from_str(value).expect("value"));
    t
}

/// The scripted env's answer to one request. `bye` asks its connection to close.
async fn serve(req: Request<Incoming>, state: Arc<EnvState>, bye: Arc<Notify>) -> Answer {
    let te = req
        .headers()
        .get(http::header::TE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let seen = vec![("x-seen-te", te)];
    match req.uri().path() {
        "/echo" => {
            // The request's own trailer comes back as a trailer of the answer.
            let Ok(body) = req.into_body().collect().await else {
                return answer(b"the request body failed", &seen, HeaderMap::new());
            };
            let got = body
                .trailers()
                .and_then(|t| t.get("x-req"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            let mut t = trailer("x-echo", &got);
            t.insert("grpc-status", HeaderValue::from_static("0"));
            answer(b"echoed", &seen, t)
        }
        "/chunked" => {
            // An HTTP/1.1 server sends only the trailers it declared.
            let mut headers = seen;
            headers.push(("trailer", "x-checksum".to_owned()));
            answer(b"hello", &headers, trailer("x-checksum", "abc"))
        }
        "/hold" => {
            state.held.fetch_add(1, SeqCst);
            if let Some(mut release) = state.release.clone() {
                let _ = release.wait_for(|r| *r).await;
            }
            answer(b"held", &seen, HeaderMap::new())
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            answer(b"late", &seen, HeaderMap::new())
        }
        "/bye" => {
            bye.notify_one();
            answer(b"bye", &seen, HeaderMap::new())
        }
        _ => answer(b"ok", &seen, HeaderMap::new()),
    }
}

/// A scripted env speaking HTTP/2 with prior knowledge (`h2`) or HTTP/1.1.
async fn env(h2: bool, state: EnvState) -> (SocketAddr, Arc<EnvState>) {
    let listener = tokio::net::TcpListener::bind(any_port())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(state);
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            shared.conns.fetch_add(1, SeqCst);
            let (state, bye) = (shared.clone(), Arc::new(Notify::new()));
            let closing = bye.clone();
            let svc = service_fn(move |req| {
                let (state, bye) = (state.clone(), bye.clone());
                async move { Ok::<_, Infallible>(serve(req, state, bye).await) }
            });
            let io = TokioIo::new(stream);
            tokio::spawn(async move {
                if h2 {
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = closing.notified() => conn.as_mut().graceful_shutdown(),
                    }
                    let _ = conn.await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                }
            });
        }
    });
    (addr, state)
}

/// cutover in front of `old` (where every user goes) with `old_lines` in `[envs.old]`, and
/// `fallback`.
struct Proxied {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    _stop: oneshot::Sender<()>,
}

async fn proxy(old: SocketAddr, old_lines: &str, fallback: SocketAddr) -> Proxied {
    let new = dead_addr();
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [envs.old]\nupstreams = [\"{old}\"]\n{old_lines}\n\
         [envs.new]\nupstreams = [\"{new}\"]\n\
         [envs.fallback]\nupstreams = [\"{fallback}\"]\n"
    );
    let cfg = Config::parse(&text, "test.toml").expect("config");
    let router = Arc::new(Router::new(RoutingTable::new(
        Weight::from_percent(0.0),
        "test-salt",
    )));
    let metrics = Arc::new(Metrics::new());
    let proxy = Arc::new(Proxy::new(&cfg, router, metrics.clone()));
    let listener = tokio::net::TcpListener::bind(any_port())
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stop_rx) = oneshot::channel::<()>();
    let live = Live::new(proxy, cfg.limits, Duration::from_secs(5));
    tokio::spawn(cutover::proxy::serve_live(listener, live, async {
        let _ = stop_rx.await;
    }));
    Proxied {
        addr,
        metrics,
        _stop: stop,
    }
}

/// An HTTP/2 (prior knowledge) client connection to `addr`.
async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<BoxedBody> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (tx, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    tx
}

type BoxedBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn with_trailers(data: &'static [u8], trailers: HeaderMap) -> BoxedBody {
    let frames = vec![
        Ok(Frame::data(Bytes::from_static(data))),
        Ok(Frame::trailers(trailers)),
    ];
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// Read from `s` until the end of a chunked answer (its trailer section included).
async fn read_chunked_answer(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let read = async {
        loop {
            let text = String::from_utf8_lossy(&buf);
            if let Some(at) = text.find("\r\n0\r\n") {
                if text[at + 5..].contains("\r\n\r\n") || text[at + 5..].starts_with("\r\n") {
                    return;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before the answer ended: {text}");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("answer in time");
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn an_http1_envs_trailers_reach_an_http1_client_that_asked_for_them() {
    let (env, _) = env(false, EnvState::default()).await;
    let p = proxy(env, "", dead_addr()).await;
    let mut s = tokio::net::TcpStream::connect(p.addr)
        .await
        .expect("connect");
    s.write_all(b"GET /chunked HTTP/1.1\r\nhost: shop.test\r\nte: trailers\r\n\r\n")
        .await
        .expect("write");
    let text = read_chunked_answer(&mut s).await.to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("x-seen-te: trailers"),
        "te: trailers reached the env: {text}"
    );
    let tail = &text[text.find("\r\n0\r\n").expect("last chunk")..];
    assert!(
        tail.contains("x-checksum: abc"),
        "the env's trailer: {text}"
    );

    // Without `TE: trailers` the env sends none and the client gets none.
    s.write_all(b"GET /chunked HTTP/1.1\r\nhost: shop.test\r\n\r\n")
        .await
        .expect("write");
    let text = read_chunked_answer(&mut s).await.to_ascii_lowercase();
    assert!(text.contains("x-seen-te: none"), "{text}");
    assert!(!text.contains("x-checksum: abc"), "{text}");
}

#[tokio::test]
async fn trailers_cross_an_h2_env_both_ways_for_an_h2_client() {
    let (env, state) = env(true, EnvState::default()).await;
    let p = proxy(env, "protocol = \"h2\"", dead_addr()).await;
    let mut tx = h2_client(p.addr).await;
    let req = Request::post(format!("http://{}/echo", p.addr))
        .header("te", "trailers")
        .body(with_trailers(b"payload", trailer("x-req", "42")))
        .expect("request");
    let resp = tokio::time::timeout(WAIT, tx.send_request(req))
        .await
        .expect("in time")
        .expect("answer");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-seen-te"], "trailers");
    assert_eq!(resp.headers()["x-cutover-served-by"], "old");
    let body = resp.into_body().collect().await.expect("body");
    let trailers = body.trailers().cloned().expect("the env's trailers");
    assert_eq!(
        trailers["x-echo"], "42",
        "the client's trailer reached the env"
    );
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(body.to_bytes(), "echoed");
    assert_eq!(state.conns.load(SeqCst), 1);

    // An HTTP/1.1 client's request goes to the h2 env too.
    let got = common::client()
        .get(format!("http://{}/plain", p.addr))
        .send()
        .await
        .expect("http/1.1 request");
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.expect("body"), "ok");
    assert_eq!(state.conns.load(SeqCst), 1, "the same connection");
}

#[tokio::test]
async fn requests_share_an_h2_envs_connection_until_it_is_full() {
    let (release, rx) = watch::channel(false);
    let (env, state) = env(
        true,
        EnvState {
            release: Some(rx),
            ..EnvState::default()
        },
    )
    .await;
    let p = proxy(env, "protocol = \"h2\"", dead_addr()).await;
    // 150 requests held at the env at once: 100 streams on the first connection, and the rest
    // on one more (not one connection each).
    let client = common::client();
    let url = format!("http://{}/hold", p.addr);
    let requests: Vec<_> = (0..150)
        .map(|_| tokio::spawn(client.get(&url).send()))
        .collect();
    wait_until("150 requests held at the env", WAIT, || async {
        state.held.load(SeqCst) == 150
    })
    .await;
    assert_eq!(state.conns.load(SeqCst), 2, "connections to the env");
    release.send(true).expect("release");
    for r in requests {
        let resp = r.await.expect("task").expect("answer");
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
async fn an_h2_env_closing_its_connection_costs_no_request() {
    let (env, state) = env(true, EnvState::default()).await;
    let p = proxy(env, "protocol = \"h2\"", dead_addr()).await;
    let client = common::client();
    for i in 1..=5 {
        let resp = client
            .get(format!("http://{}/bye", p.addr))
            .send()
            .await
            .expect("answer");
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.text().await.expect("body"), "bye");
    }
    // A request that came before the env's final GOAWAY may still be served on the closing
    // connection; every other one went out on a new connection.
    let conns = state.conns.load(SeqCst);
    assert!((2..=5).contains(&conns), "{conns} connections for 5 closes");
}

#[tokio::test]
async fn an_h2_env_fails_like_an_http1_one() {
    // Refused: nothing was sent, so FALLBACK answers.
    let (fallback, _) = env(false, EnvState::default()).await;
    let p = proxy(dead_addr(), "protocol = \"h2\"", fallback).await;
    let resp = common::client()
        .get(format!("http://{}/plain", p.addr))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-cutover-served-by"], "fallback");

    // No answer in time: 504 and the connection goes on (only its stream was reset).
    let (env, state) = env(true, EnvState::default()).await;
    let p = proxy(
        env,
        "protocol = \"h2\"\nrequest_timeout = \"300ms\"",
        dead_addr(),
    )
    .await;
    let client = common::client();
    let resp = client
        .get(format!("http://{}/slow", p.addr))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["x-cutover-error"], "timeout");
    let resp = client
        .get(format!("http://{}/plain", p.addr))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        state.conns.load(SeqCst),
        1,
        "the timed-out stream did not cost the connection"
    );
}

#[tokio::test]
async fn a_clients_broken_body_towards_an_h2_env_is_the_clients_fault() {
    let (env, state) = env(true, EnvState::default()).await;
    let p = proxy(env, "protocol = \"h2\"", dead_addr()).await;
    let head = "POST /echo HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n";
    // A broken chunk, and a client that stops mid-chunk: 400, never the env's 502.
    let malformed = format!("{head}5\r\nhelloXX0\r\n\r\n");
    let reply = common::raw::exchange(p.addr, malformed.as_bytes(), WAIT).await;
    assert_eq!(reply.status(), Some(400), "{}", reply.text());
    let code = reply.header("x-cutover-error");
    assert_eq!(code.as_deref(), Some("client-body-malformed"));
    let mut s = tokio::net::TcpStream::connect(p.addr)
        .await
        .expect("connect");
    s.write_all(format!("{head}10\r\n0123456789").as_bytes())
        .await
        .expect("write");
    s.shutdown().await.expect("half-close");
    let reply = common::raw::read_until_closed(&mut s, std::time::Instant::now(), WAIT).await;
    assert_eq!(reply.status(), Some(400), "{}", reply.text());
    let code = reply.header("x-cutover-error");
    assert_eq!(code.as_deref(), Some("client-body-aborted"));
    assert_eq!(
        p.metrics
            .client_errors_total(cutover::metrics::ClientFault::BodyMalformed)
            + p.metrics
                .client_errors_total(cutover::metrics::ClientFault::BodyAborted),
        2
    );
    // Only the streams were reset: the env's connection serves the next request.
    let resp = common::client()
        .post(format!("http://{}/echo", p.addr))
        .body("fine")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    assert_eq!(state.conns.load(SeqCst), 1);
}
