use super::*;

fn head(buf: &[u8], head_request: bool) -> (EnvHead, usize) {
    match parse_response(buf, head_request) {
        Ok(Parsed::EnvHead(h, n)) => (h, n),
        other => panic!("expected a head, got {other:?}"),
    }
}

/// Decode a whole chunked body fed in pieces of `piece` bytes; returns the data and the bytes
/// left after the body.
fn dechunk(body: &[u8], piece: usize) -> Result<(Vec<u8>, usize), H1Error> {
    let mut dec = Chunked::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut data = Vec::new();
    loop {
        match dec.step(&buf)? {
            Step::Data { skip, len } => {
                buf.drain(..skip);
                data.extend_from_slice(&buf[..len]);
                buf.drain(..len);
                dec.took(len);
            }
            Step::More { skip } => {
                buf.drain(..skip);
                if fed == body.len() {
                    return Err(H1Error::Chunked("ended early"));
                }
                let end = (fed + piece).min(body.len());
                buf.extend_from_slice(&body[fed..end]);
                fed = end;
            }
            Step::End { skip } => {
                buf.drain(..skip);
                assert!(dec.is_done());
                return Ok((data, buf.len() + body.len() - fed));
            }
        }
    }
}

#[test]
fn the_request_head_is_the_prepared_map_as_bytes() {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("example.test"));
    headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
    let mut out = Vec::new();
    let path = http::uri::PathAndQuery::from_static("/a?b=1");
    encode_request(&mut out, &Method::GET, &path, &headers);
    assert_eq!(
        out,
        b"GET /a?b=1 HTTP/1.1\r\nhost: example.test\r\nx-forwarded-for: 10.0.0.1\r\n\r\n"
    );
    out.clear();
    encode_request(&mut out, &Method::POST, &path, &headers);
    assert!(out.ends_with(b"content-length: 0\r\n\r\n"), "{out:?}");
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    out.clear();
    encode_request(&mut out, &Method::POST, &path, &headers);
    assert_eq!(
        out.windows(15).filter(|w| w == b"content-length:").count(),
        1,
        "one length only"
    );
}

#[test]
fn a_length_response_is_framed_by_its_length_and_kept_alive() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello";
    let (h, n) = head(raw, false);
    assert_eq!(&raw[n..], b"hello");
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.framing, EnvFraming::Length(5));
    assert!(h.keep_alive);
    assert_eq!(h.headers.get_all("x-a").iter().count(), 2);
    assert!(matches!(
        parse_response(&raw[..20], false),
        Ok(Parsed::Partial)
    ));
}

#[test]
fn framing_follows_rfc_9112() {
    let (h, _) = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
    assert_eq!(h.framing, EnvFraming::Empty, "HEAD");
    let (h, _) = head(b"HTTP/1.1 204 No Content\r\n\r\n", false);
    assert_eq!(h.framing, EnvFraming::Empty);
    let (h, _) = head(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        false,
    );
    assert_eq!(h.framing, EnvFraming::Empty);
    let (h, _) = head(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        false,
    );
    assert_eq!(h.framing, EnvFraming::Chunked);
    assert!(h.keep_alive);
    let (h, _) = head(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        false,
    );
    assert_eq!(
        h.framing,
        EnvFraming::Close,
        "not chunked last: read to close"
    );
    assert!(!h.keep_alive);
    let (h, _) = head(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        false,
    );
    assert_eq!(h.framing, EnvFraming::Chunked, "Transfer-Encoding wins");
    assert!(
        h.headers.get(header::CONTENT_LENGTH).is_none(),
        "length dropped"
    );
    assert!(!h.keep_alive, "suspect message: not reused");
    let (h, _) = head(b"HTTP/1.1 200 OK\r\n\r\n", false);
    assert_eq!(h.framing, EnvFraming::Close);
    assert!(!h.keep_alive);
    let (h, _) = head(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    assert_eq!(h.framing, EnvFraming::Length(0));
    assert!(!h.keep_alive, "Connection: close");
    let (h, _) = head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
    assert!(!h.keep_alive, "HTTP/1.0");
}

#[test]
fn lengths_must_be_digits_and_agree() {
    for same in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n",
    ] {
        let (h, _) = head(same, false);
        assert_eq!(h.framing, EnvFraming::Length(7));
        let passed_on: Vec<_> = h.headers.get_all(header::CONTENT_LENGTH).iter().collect();
        assert_eq!(passed_on, ["7"], "one length is passed on");
    }
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 7, 8\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
    ] {
        assert_eq!(
            parse_response(bad, false).err(),
            Some(H1Error::Length),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn interim_answers_are_skipped_and_unasked_upgrades_refused() {
    let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let Ok(Parsed::Interim(n)) = parse_response(raw, false) else {
        panic!("100 is interim");
    };
    let (h, _) = head(&raw[n..], false);
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(
        parse_response(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false).err(),
        Some(H1Error::UnaskedUpgrade)
    );
}

#[test]
fn broken_heads_are_errors_not_guesses() {
    assert!(matches!(
        parse_response(b"HTTP/1.1 2000 OK\r\n\r\n", false),
        Err(H1Error::Parse(_))
    ));
    assert!(matches!(
        parse_response(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", false),
        Err(H1Error::Parse(_))
    ));
    assert!(matches!(
        parse_response(b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", false),
        Err(H1Error::Parse(_))
    ));
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for _ in 0..=MAX_HEADERS {
        many.extend_from_slice(b"x: y\r\n");
    }
    many.extend_from_slice(b"\r\n");
    assert!(matches!(
        parse_response(&many, false),
        Err(H1Error::Parse(httparse::Error::TooManyHeaders))
    ));
    let mut huge = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
    huge.resize(MAX_HEAD + 10, b'a');
    assert_eq!(
        parse_response(&huge, false).err(),
        Some(H1Error::HeadTooLarge)
    );
    // A whole head past the limit, arrived in one piece, is refused too.
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(
        parse_response(&huge, false).err(),
        Some(H1Error::HeadTooLarge)
    );
}

#[test]
fn chunked_bodies_decode_in_any_pieces() {
    let body = b"5\r\nhello\r\n7;name=value\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
    for piece in [1, 2, 3, 7, body.len()] {
        let (data, left) = dechunk(body, piece).expect("valid body");
        assert_eq!(data, b"hello, world", "pieces of {piece}");
        assert_eq!(left, 4, "the bytes after the body stay, pieces of {piece}");
    }
    let (data, _) = dechunk(b"A\r\n0123456789\r\n0\r\n\r\n", 4).expect("hex size");
    assert_eq!(data.len(), 10);
    let (data, _) = dechunk(b"0\r\n\r\n", 1).expect("empty body");
    assert!(data.is_empty());
}

#[test]
fn bad_chunked_framing_is_an_error() {
    for bad in [
        &b"\r\nhello\r\n0\r\n\r\n"[..],
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"g\r\n",
        b"1234567890abcdef0\r\n",
        b"5\r\nhello\r\n0\r\nX: y\rZ",
    ] {
        assert!(
            matches!(dechunk(bad, 3), Err(H1Error::Chunked(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut ext = b"1;".to_vec();
    ext.resize(MAX_CHUNK_META + 10, b'a');
    assert!(matches!(dechunk(&ext, 4096), Err(H1Error::Chunked(_))));
}

#[test]
fn hyper_answers_are_normalized_like_the_hand_spoken_ones() {
    let answer = |status: u16, lengths: &[&'static str]| {
        let mut r = http::Response::new(());
        *r.status_mut() = http::StatusCode::from_u16(status).expect("status");
        *r.version_mut() = http::Version::HTTP_10;
        for l in lengths {
            r.headers_mut()
                .append(header::CONTENT_LENGTH, HeaderValue::from_static(l));
        }
        r
    };
    let mut r = answer(200, &["5, 5"]);
    assert!(normalize_answer(&mut r, false));
    assert_eq!(r.version(), http::Version::HTTP_11);
    let got: Vec<_> = r.headers().get_all(header::CONTENT_LENGTH).iter().collect();
    assert_eq!(got, ["5"]);
    let mut r = answer(200, &["7", "7"]);
    assert!(normalize_answer(&mut r, false));
    let got: Vec<_> = r.headers().get_all(header::CONTENT_LENGTH).iter().collect();
    assert_eq!(got, ["7"]);
    assert!(!normalize_answer(&mut answer(101, &[]), false));
    assert!(normalize_answer(&mut answer(101, &[]), true));
}
