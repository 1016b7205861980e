//! Cost of the HTTP/1 framing tracker (`src/proxy/client/framing.rs`), which sees every byte
//! every HTTP/1 client connection reads: nanoseconds per request and per byte for typical shapes,
//! fed as a kept-alive connection would read them (4 KiB reads), next to a plain `memchr`
//! pass over the same bytes for scale.
//!
//!     cargo run --release --example framing_bench

use std::hint::black_box;
use std::time::{Duration, Instant};

use cutover::proxy::client::framing::{Tracker, Verdict};

/// A browser-like GET head (~0.5 KB: user agent, accept headers, cookies).
fn browser_get() -> Vec<u8> {
    b"GET /api/v1/orders?page=2&sort=desc HTTP/1.1\r\n\
      Host: shop.example.com\r\n\
      User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
      Accept: application/json, text/plain, */*\r\n\
      Accept-Language: en-US,en;q=0.5\r\n\
      Accept-Encoding: gzip, deflate, br\r\n\
      Connection: keep-alive\r\n\
      Cookie: uid=8f3a9c2e-1b7d-4e5f-9a0b-c1d2e3f4a5b6; session=eyJhbGciOiJIUzI1NiJ9.e30.x\r\n\
      Cache-Control: no-cache\r\n\
      X-User-Id: 48213\r\n\r\n"
        .to_vec()
}

fn sized_post(body: usize) -> Vec<u8> {
    let mut r = format!(
        "POST /api/v1/orders HTTP/1.1\r\nHost: shop.example.com\r\n\
         Content-Type: application/json\r\nContent-Length: {body}\r\nX-User-Id: 48213\r\n\r\n"
    )
    .into_bytes();
    r.extend(std::iter::repeat_n(b'x', body));
    r
}

fn chunked_post(chunks: usize, size: usize) -> Vec<u8> {
    let mut r = b"POST /upload HTTP/1.1\r\nHost: shop.example.com\r\n\
                  Transfer-Encoding: chunked\r\nX-User-Id: 48213\r\n\r\n"
        .to_vec();
    for _ in 0..chunks {
        r.extend(format!("{size:x}\r\n").bytes());
        r.extend(std::iter::repeat_n(b'y', size));
        r.extend(b"\r\n");
    }
    r.extend(b"0\r\n\r\n");
    r
}

/// Run `f` over the stream until about `budget` has passed; nanoseconds per pass.
fn time(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut passes = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        passes += 16;
    }
    start.elapsed().as_nanos() as f64 / passes as f64
}

fn main() {
    let budget = Duration::from_millis(700);
    println!(
        "| shape | bytes/request | tracker ns/request | tracker ns/byte | memchr(\\n) ns/request |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, one) in [
        ("browser GET head", browser_get()),
        ("POST, 1 KiB sized body", sized_post(1024)),
        ("POST, 64 KiB sized body", sized_post(64 * 1024)),
        ("POST, 4 x 256 B chunks", chunked_post(4, 256)),
    ] {
        let per_stream = 64;
        let stream: Vec<u8> = one.repeat(per_stream);
        let tracker = time(budget, || {
            let mut t = Tracker::new();
            for read in black_box(&stream).chunks(4096) {
                if t.feed(read) != Verdict::Continue {
                    panic!("{name}: {:?}", t.verdict());
                }
            }
            assert_eq!(t.requests(), per_stream as u64);
        });
        let scan = time(budget, || {
            let n: usize = black_box(&stream)
                .chunks(4096)
                .map(|read| memchr::memchr_iter(b'\n', read).count())
                .sum();
            black_box(n);
        });
        let (req, bytes) = (tracker / per_stream as f64, one.len() as f64);
        println!(
            "| {name} | {} | {req:.0} | {:.3} | {:.0} |",
            one.len(),
            req / bytes,
            scan / per_stream as f64
        );
    }
}
