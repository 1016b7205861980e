//! Tests of [`Tracker`]: shapes one by one, then a property over random pipelines cut at
//! random points.

use proptest::prelude::*;

use super::{Refusal, Tracker, Verdict};

fn whole(bytes: &[u8]) -> (Verdict, u64) {
    let mut t = Tracker::new();
    let v = t.feed(bytes);
    (v, t.requests())
}

/// The same bytes fed one at a time.
fn bytewise(bytes: &[u8]) -> (Verdict, u64) {
    let mut t = Tracker::new();
    let mut v = Verdict::Continue;
    for b in bytes {
        v = t.feed(std::slice::from_ref(b));
    }
    (v, t.requests())
}

fn check(bytes: &[u8]) -> (Verdict, u64) {
    let got = whole(bytes);
    assert_eq!(got, bytewise(bytes), "{:?}", String::from_utf8_lossy(bytes));
    got
}

const POST: &str = "POST /x HTTP/1.1\r\nHost: a\r\n";

#[test]
fn both_framings_are_found_in_either_order_and_in_disguise() {
    for framing in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "content-LENGTH: 5\r\ntransfer-ENCODING: chunked\r\n",
        "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
        "Transfer-Encoding:\tchunked\r\nContent-Length:\t5\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Transfer-Encoding: gzip, chunked\r\nContent-Length: x\r\n",
        "Content-Length: 5\nTransfer-Encoding: chunked\n",
        "Content-Length: 0\r\nX-A: b\r\nTransfer-Encoding: identity\r\n",
    ] {
        let req = format!("{POST}{framing}\r\n0\r\n\r\n");
        assert_eq!(
            check(req.as_bytes()),
            (Verdict::Reject { head_at: 0 }, 0),
            "{framing:?}"
        );
    }
}

#[test]
fn http2_preface_passes_first_and_is_refused_after_a_request() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let (v, n) = check(PREFACE);
    assert!(matches!(v, Verdict::PassThrough { .. }), "{v:?}");
    assert_eq!(n, 0);
    let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut both = get.to_vec();
    both.extend_from_slice(PREFACE);
    assert_eq!(
        check(&both),
        (
            Verdict::Reject {
                head_at: get.len() as u64
            },
            1
        )
    );
    let mut t = Tracker::new();
    t.feed(&both);
    assert_eq!(t.refusal(), Refusal::LateHttp2);
    let mut t = Tracker::new();
    t.feed(format!("{POST}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes());
    assert_eq!(t.refusal(), Refusal::ConflictingFraming);
}

#[test]
fn one_framing_alone_is_followed_to_the_next_request() {
    let cases = [
        format!("{POST}Content-Length: 5\r\n\r\nhello"),
        format!("{POST}Content-Length:  5 \r\nContent-Length: 5\r\n\r\nhello"),
        format!("{POST}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        format!(
            "{POST}Transfer-Encoding: chunked\r\n\r\n5;ext=1 ; b\r\nhello\r\nA \r\n0123456789\r\n\
             0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n"
        ),
        "GET / HTTP/1.0\nHost: a\n\n".to_string(),
        "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nX-Content-Length: 9\r\n\r\n".to_string(),
    ];
    for req in &cases {
        let two = format!("{req}GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(check(two.as_bytes()), (Verdict::Continue, 2), "{req:?}");
    }
}

#[test]
fn a_bad_request_after_good_ones_is_found_at_its_first_byte() {
    let good = format!(
        "{POST}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
         {POST}Content-Length: 3\r\n\r\nabc\
         GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    );
    let bad = format!("{POST}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    let all = format!("{good}{bad}");
    assert_eq!(
        check(all.as_bytes()),
        (
            Verdict::Reject {
                head_at: good.len() as u64
            },
            3
        )
    );
}

#[test]
fn bodies_are_skipped_not_read_as_heads() {
    let inner = "GET /s HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let fixed = format!("{POST}Content-Length: {}\r\n\r\n{inner}", inner.len());
    assert_eq!(check(fixed.as_bytes()), (Verdict::Continue, 1));
    let chunked = format!(
        "{POST}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
        inner.len()
    );
    assert_eq!(check(chunked.as_bytes()), (Verdict::Continue, 1));
    // Trailers are not a head either.
    let trailer = format!("{POST}Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(check(trailer.as_bytes()), (Verdict::Continue, 1));
}

#[test]
fn what_is_not_http1_or_is_malformed_is_left_to_hyper() {
    let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04";
    assert_eq!(check(h2), (Verdict::PassThrough { at: 11 }, 0));
    let tls = b"\x16\x03\x01\x02\x00\x01\x00";
    assert_eq!(check(tls), (Verdict::PassThrough { at: 0 }, 0));
    let cases = [
        format!("{POST}Transfer-Encoding: chunked\r\n\r\n5\nhello"), // chunk line without CR
        format!("{POST}Transfer-Encoding: chunked\r\n\r\nz\r\n"),    // not hex
        format!("{POST}Transfer-Encoding: chunked\r\n\r\n1\r\nab"),  // no CRLF after data
        format!("{POST}Transfer-Encoding: chunked\r\n\r\n1;a\nb"),   // LF in an extension
        format!("{POST}Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n"), // overflow
        format!("{POST}Content-Length: 5x\r\n\r\nhello"),
        format!("{POST}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        format!("{POST}Content-Length: 99999999999999999999\r\n\r\n"),
        format!("{POST}X-Folded: a\r\n b\r\n\r\n"),
        "GET / HTTP/1.2\r\n\r\n".to_string(),
        "GET  / HTTP/1.1\r\n\r\n".to_string(),
        "GE(T / HTTP/1.1\r\n\r\n".to_string(),
    ];
    for req in &cases {
        let (v, _) = check(req.as_bytes());
        assert!(matches!(v, Verdict::PassThrough { .. }), "{req:?}: {v:?}");
    }
}

#[test]
fn upgrade_and_connect_are_remembered_and_stop_is_sticky() {
    for req in [
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    ] {
        let mut t = Tracker::new();
        assert_eq!(t.feed(req.as_bytes()), Verdict::Continue);
        assert!(t.may_upgrade(), "{req:?}");
        t.stop();
        let bad = format!("{POST}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        let at = req.len() as u64;
        assert_eq!(t.feed(bad.as_bytes()), Verdict::PassThrough { at });
    }
    let mut t = Tracker::new();
    t.feed(b"CONNECTS / HTTP/1.1\r\nUpgradeX: 1\r\n\r\n");
    assert!(!t.may_upgrade());
}

/// One request of a generated pipeline.
#[derive(Debug, Clone)]
enum Req {
    Get {
        lf_only: bool,
    },
    Fixed(Vec<u8>),
    Chunked {
        chunks: Vec<Vec<u8>>,
        ext: bool,
        trailer: bool,
    },
    /// Both framings (order by the flag).
    Bad(bool),
}

impl Req {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Req::Get { lf_only: true } => {
                out.extend(b"GET /a?b=c HTTP/1.1\nHost: a\ncookie: x\n\n")
            }
            Req::Get { lf_only: false } => {
                out.extend(b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
            }
            Req::Fixed(body) => {
                out.extend(format!("{POST}content-length: {}\r\n\r\n", body.len()).bytes());
                out.extend(body);
            }
            Req::Chunked {
                chunks,
                ext,
                trailer,
            } => {
                out.extend(format!("{POST}Transfer-Encoding: chunked\r\n\r\n").bytes());
                for c in chunks.iter().filter(|c| !c.is_empty()) {
                    let ext = if *ext { ";x=y" } else { "" };
                    out.extend(format!("{:X}{ext}\r\n", c.len()).bytes());
                    out.extend(c);
                    out.extend(b"\r\n");
                }
                out.extend(b"0\r\n");
                if *trailer {
                    out.extend(b"X-Sum: 1\r\n");
                }
                out.extend(b"\r\n");
            }
            Req::Bad(te_first) => {
                let (a, b) = ("Transfer-Encoding: chunked\r\n", "Content-Length: 4\r\n");
                let (a, b) = if *te_first { (a, b) } else { (b, a) };
                out.extend(format!("{POST}{a}{b}\r\n0\r\n\r\n").bytes());
            }
        }
        out
    }
}

/// Bodies that look like heads, so a tracker that loses its place would notice.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        Just(b"\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()),
    ]
}

fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        3 => any::<bool>().prop_map(|lf_only| Req::Get { lf_only }),
        3 => body().prop_map(Req::Fixed),
        3 => (
            proptest::collection::vec(body(), 0..4),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(chunks, ext, trailer)| Req::Chunked {
                chunks,
                ext,
                trailer
            }),
        1 => any::<bool>().prop_map(Req::Bad),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any split of a pipeline gives the verdict of the whole: `Reject` at the first byte of
    /// the first bad request, after exactly the requests before it.
    #[test]
    fn any_split_of_a_pipeline_gives_the_same_verdict(
        reqs in proptest::collection::vec(req(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut stream = Vec::new();
        let mut expect = (Verdict::Continue, 0u64);
        for (n, r) in reqs.iter().enumerate() {
            if matches!(r, Req::Bad(_)) && expect.0 == Verdict::Continue {
                expect = (Verdict::Reject { head_at: stream.len() as u64 }, n as u64);
            }
            stream.extend(r.bytes());
        }
        if expect.0 == Verdict::Continue {
            expect.1 = reqs.len() as u64;
        }
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        at.sort_unstable();
        let mut t = Tracker::new();
        let mut last = 0;
        let mut v = Verdict::Continue;
        for cut in at.into_iter().chain([stream.len()]) {
            v = t.feed(&stream[last..cut]);
            last = cut;
        }
        prop_assert_eq!((v, t.requests()), expect);
        prop_assert_eq!(whole(&stream), expect);
    }

    /// Pieces of requests in any order: no panic, and the same verdict whole, byte by byte
    /// and cut at random points.
    #[test]
    fn shuffled_request_pieces_split_anywhere_agree(
        pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..40),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = pieces.concat();
        let (a, b) = bytes.split_at(cut.index(bytes.len() + 1));
        let mut t = Tracker::new();
        t.feed(a);
        let v = t.feed(b);
        prop_assert_eq!((v, t.requests()), whole(&bytes));
        prop_assert_eq!(whole(&bytes), bytewise(&bytes));
    }
}

const PIECES: &[&[u8]] = &[
    b"POST / HTTP/1.1\r\n",
    b"GET / HTTP/1.0\n",
    b"CONNECT a:1 HTTP/1.1\r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Upgrade: x\r\n",
    b"X-A: b\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"3\r\nabc\r\n",
    b"0\r\n",
    b"1;e\r\n",
    b"abc",
    b" ",
    b":",
    b"\t",
    b"\x00",
];

#[test]
fn the_state_kept_per_connection_is_small() {
    // What every HTTP/1 connection carries (docs/benchmarks.md).
    assert_eq!(std::mem::size_of::<Tracker>(), 80);
}
