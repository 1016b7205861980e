//! Unit tests of [`super::h1`]: which request heads the client lane takes, what it
//! leaves for hyper (untouched), and how it writes answer heads.

use bytes::BytesMut;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use super::{
    chunk_start, encode_response, parse_request, AnswerFraming, ClientHead, Unfit, MAX_HEADERS,
};

const MAX_HEAD: usize = 8 * 1024;

fn parse(bytes: &[u8]) -> (Result<Option<ClientHead>, Unfit>, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let r = parse_request(&mut buf, MAX_HEAD, 100);
    (r, buf)
}

#[test]
fn takes_a_plain_get_and_leaves_the_next_request_in_the_buffer() {
    let (r, rest) = parse(
        b"GET /a/b?c=1 HTTP/1.1\r\nHost: example\r\nX-User-Id: u1\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\nGET /next",
    );
    let head = r.expect("taken").expect("complete");
    assert_eq!(head.req.method(), Method::GET);
    assert_eq!(head.req.uri().path(), "/a/b");
    assert_eq!(head.req.uri().query(), Some("c=1"));
    assert_eq!(head.req.version(), http::Version::HTTP_11);
    assert_eq!(head.req.headers()["host"], "example");
    assert_eq!(head.req.headers()["x-user-id"], "u1");
    let dups: Vec<_> = head.req.headers().get_all("x-dup").iter().collect();
    assert_eq!(dups, ["1", "2"], "repeated headers kept in order");
    assert!(!head.close);
    assert_eq!(&rest[..], b"GET /next");
}

#[test]
fn an_incomplete_head_waits_for_more_bytes() {
    let whole = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for cut in 0..whole.len() {
        let (r, rest) = parse(&whole[..cut]);
        assert!(matches!(r, Ok(None)), "cut at {cut}");
        assert_eq!(&rest[..], &whole[..cut], "nothing consumed at {cut}");
    }
}

#[test]
fn connection_close_is_seen_among_other_tokens() {
    for value in ["close", "Close", "keep-alive, close", " x ,CLOSE "] {
        let text = format!("GET / HTTP/1.1\r\nConnection: {value}\r\n\r\n");
        let (r, _) = parse(text.as_bytes());
        assert!(r.expect("taken").expect("complete").close, "{value}");
    }
    let (r, _) = parse(b"GET / HTTP/1.1\r\nConnection: keep-alive, closer\r\n\r\n");
    assert!(!r.expect("taken").expect("complete").close);
}

#[test]
fn requests_it_does_not_take_are_left_whole_for_hyper() {
    let unfit: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        b"GET / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET http://example/ HTTP/1.1\r\n\r\n",
        b"CONNECT example:443 HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET /  HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nfolded: a\r\n b\r\n\r\n",
    ];
    for bytes in unfit {
        let (r, rest) = parse(bytes);
        assert_eq!(r.err(), Some(Unfit), "{}", String::from_utf8_lossy(bytes));
        assert_eq!(&rest[..], *bytes, "buffer untouched");
    }
}

#[test]
fn heads_past_the_limits_go_to_hyper() {
    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..10 {
        many.push_str(&format!("h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let mut buf = BytesMut::from(many.as_bytes());
    assert_eq!(parse_request(&mut buf, MAX_HEAD, 9).err(), Some(Unfit));
    assert!(parse_request(&mut buf, MAX_HEAD, 10).is_ok_and(|h| h.is_some()));

    // Too long, complete or not.
    let long = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(200));
    let mut buf = BytesMut::from(long.as_bytes());
    assert_eq!(parse_request(&mut buf, 100, 100).err(), Some(Unfit));
    let mut buf = BytesMut::from(&long.as_bytes()[..150]);
    assert_eq!(parse_request(&mut buf, 100, 100).err(), Some(Unfit));
    assert_eq!(buf.len(), 150);

    // More header lines than the lane's own array holds.
    let mut huge = String::from("GET / HTTP/1.1\r\n");
    for i in 0..MAX_HEADERS + 1 {
        huge.push_str(&format!("h{i}: v\r\n"));
    }
    huge.push_str("\r\n");
    let mut buf = BytesMut::from(huge.as_bytes());
    assert_eq!(parse_request(&mut buf, MAX_HEAD, 1000).err(), Some(Unfit));
}

fn encode(
    status: u16,
    headers: &[(&str, &str)],
    exact: Option<u64>,
    head_request: bool,
    close: bool,
) -> (String, AnswerFraming) {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    let mut resp = http::Response::new(());
    *resp.status_mut() = StatusCode::from_u16(status).expect("status");
    *resp.headers_mut() = map;
    let (parts, ()) = resp.into_parts();
    let mut out = Vec::new();
    let framing = encode_response(
        &mut out,
        &parts,
        exact,
        head_request,
        b"Tue, 01 Dec 2026 00:00:00 GMT",
        close,
    );
    (String::from_utf8(out).expect("ascii"), framing)
}

#[test]
fn a_known_length_is_written_as_content_length() {
    let (head, framing) = encode(
        200,
        &[("content-type", "text/plain")],
        Some(5),
        false,
        false,
    );
    assert_eq!(framing, AnswerFraming::Length(5));
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\
         date: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n"
    );
    // The upstream's own length header is replaced, not repeated.
    let (head, _) = encode(200, &[("content-length", "5")], Some(5), false, false);
    assert_eq!(head.matches("content-length").count(), 1, "{head}");
    // A length only the headers know is used; a doubtful one is not.
    let (_, framing) = encode(200, &[("content-length", "7")], None, false, false);
    assert_eq!(framing, AnswerFraming::Length(7));
    for bad in [
        &[("content-length", "7"), ("content-length", "7")][..],
        &[("content-length", "+7")],
    ] {
        let (head, framing) = encode(200, bad, None, false, false);
        assert_eq!(framing, AnswerFraming::Chunked, "{bad:?}");
        assert!(!head.contains("content-length"), "{head}");
    }
}

#[test]
fn an_unknown_length_is_sent_chunked_and_framing_headers_are_this_hops() {
    let (head, framing) = encode(
        200,
        &[
            ("transfer-encoding", "gzip, chunked"),
            ("connection", "keep-alive"),
            ("date", "d"),
        ],
        None,
        false,
        true,
    );
    assert_eq!(framing, AnswerFraming::Chunked);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\ndate: d\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
}

#[test]
fn head_answers_keep_their_length_and_bodiless_statuses_have_none() {
    let (head, framing) = encode(200, &[("content-length", "10")], Some(0), true, false);
    assert_eq!(framing, AnswerFraming::None);
    assert!(head.contains("content-length: 10\r\n"), "{head}");
    for status in [204, 304, 103] {
        let (head, framing) = encode(status, &[("content-length", "10")], Some(10), false, false);
        assert_eq!(framing, AnswerFraming::None, "{status}");
        assert!(!head.contains("content-length"), "{status}: {head}");
        assert!(!head.contains("transfer-encoding"), "{status}: {head}");
    }
    let (head, _) = encode(599, &[], Some(0), false, false);
    assert!(
        head.starts_with("HTTP/1.1 599 \r\n"),
        "no reason for an unknown code: {head}"
    );
}

#[test]
fn chunk_sizes_are_hex() {
    for (len, text) in [
        (0, "0\r\n"),
        (10, "a\r\n"),
        (255, "ff\r\n"),
        (4096, "1000\r\n"),
    ] {
        let mut out = Vec::new();
        chunk_start(&mut out, len);
        assert_eq!(out, text.as_bytes());
    }
}
