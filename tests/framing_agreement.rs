//! The framing tracker agrees with hyper (issue 9): random pipelines of requests hyper
//! accepts — sized, chunked with extensions and trailers, bare-LF heads, odd header case,
//! blanks around a `Content-Length`, empty lines between requests, an `Upgrade` that is not
//! granted — are served by a real hyper HTTP/1 server, and the tracker, fed the same bytes,
//! must count the same requests and never stop or refuse. Bodies carry decoys that look like
//! requests framed two ways, so a tracker that lost its place would refuse one.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use cutover::proxy::client::framing::{Tracker, Verdict};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DECOY: &[u8] = b"POST /d HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";

#[derive(Debug, Clone)]
struct Req {
    lf_only: bool,
    upper_names: bool,
    leading_empty_lines: usize,
    upgrade: bool,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Sized {
        len: usize,
        blanks: bool,
        twice: bool,
    },
    Chunked {
        chunks: Vec<usize>,
        ext: bool,
        trailer: bool,
        gzip_first: bool,
    },
}

fn payload(len: usize) -> Vec<u8> {
    DECOY.iter().copied().cycle().take(len).collect()
}

impl Req {
    fn bytes(&self, n: usize) -> Vec<u8> {
        let eol: &[u8] = if self.lf_only { b"\n" } else { b"\r\n" };
        let name = |s: &str| {
            if self.upper_names {
                s.to_ascii_uppercase()
            } else {
                s.to_string()
            }
        };
        let mut out = Vec::new();
        for _ in 0..self.leading_empty_lines {
            out.extend(b"\r\n");
        }
        let line = |out: &mut Vec<u8>, l: String| {
            out.extend(l.as_bytes());
            out.extend(eol);
        };
        line(&mut out, format!("POST /r{n} HTTP/1.1"));
        line(&mut out, "Host: a".into());
        if self.upgrade {
            line(&mut out, format!("{}: x-proto", name("Upgrade")));
            line(&mut out, "Connection: upgrade".into());
        }
        let mut body = Vec::new();
        match &self.body {
            Body::None => {}
            Body::Sized { len, blanks, twice } => {
                let v = if *blanks {
                    format!(" \t{len} ")
                } else {
                    format!("{len}")
                };
                line(&mut out, format!("{}:{v}", name("Content-Length")));
                if *twice {
                    line(&mut out, format!("{}: {len}", name("content-length")));
                }
                body = payload(*len);
            }
            Body::Chunked {
                chunks,
                ext,
                trailer,
                gzip_first,
            } => {
                let te = if *gzip_first {
                    "gzip, chunked"
                } else {
                    "chunked"
                };
                line(&mut out, format!("{}: {te}", name("Transfer-Encoding")));
                for len in chunks.iter().filter(|l| **l > 0) {
                    let ext = if *ext { "; a=b" } else { "" };
                    body.extend(format!("{len:x}{ext}\r\n").bytes());
                    body.extend(payload(*len));
                    body.extend(b"\r\n");
                }
                body.extend(b"0\r\n");
                if *trailer {
                    body.extend(b"X-Check: 1\r\n");
                }
                body.extend(b"\r\n");
            }
        }
        out.extend(eol);
        out.extend(body);
        out
    }
}

fn req() -> impl Strategy<Value = Req> {
    let body =
        prop_oneof![
            Just(Body::None),
            (0..200usize, any::<bool>(), any::<bool>())
                .prop_map(|(len, blanks, twice)| Body::Sized { len, blanks, twice }),
            (
                proptest::collection::vec(0..100usize, 0..4),
                any::<bool>(),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(chunks, ext, trailer, gzip_first)| Body::Chunked {
                    chunks,
                    ext,
                    trailer,
                    gzip_first
                }),
        ];
    (
        any::<bool>(),
        any::<bool>(),
        0..3usize,
        prop::bool::weighted(0.2),
        body,
    )
        .prop_map(
            |(lf_only, upper_names, leading_empty_lines, upgrade, body)| Req {
                lf_only,
                upper_names,
                leading_empty_lines,
                upgrade,
                body,
            },
        )
}

/// Serve `bytes` with a plain hyper HTTP/1 server; the number of requests it handled.
async fn hyper_count(bytes: Vec<u8>) -> u64 {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let counter = counter.clone();
        async move {
            // Read the whole body, so hyper's framing decides where the next request starts.
            let ok = req.into_body().collect().await.is_ok();
            if ok {
                counter.fetch_add(1, SeqCst);
            }
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
        }
    });
    let conn = tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service)
            .with_upgrades(),
    );
    client.write_all(&bytes).await.expect("write");
    // hyper closes after the `Connection: close` request that ends every stream.
    let mut sink = Vec::new();
    let _ = client.read_to_end(&mut sink).await;
    let _ = conn.await;
    served.load(SeqCst)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_tracker_counts_the_requests_hyper_serves(reqs in proptest::collection::vec(req(), 1..8)) {
        let mut bytes = Vec::new();
        for (n, r) in reqs.iter().enumerate() {
            bytes.extend(r.bytes(n));
        }
        bytes.extend(b"GET /end HTTP/1.1\r\nConnection: close\r\n\r\n");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let by_hyper = rt.block_on(hyper_count(bytes.clone()));
        let mut t = Tracker::new();
        let verdict = t.feed(&bytes);
        prop_assert_eq!(by_hyper, reqs.len() as u64 + 1, "hyper refused a generated request");
        prop_assert_eq!(verdict, Verdict::Continue);
        prop_assert_eq!(t.requests(), by_hyper);
    }
}
