//! HTTP/1.1 from the clients, by hand for the common request: a request head read with
//! `httparse` (hyper's own parser) into the same `http::Request` hyper would build, and the
//! answer's head written from the handler's response.
//!
//! Pure: bytes in, decisions out. No sockets, clocks or routing ([`super::lane`] does the
//! I/O). Must not touch: what the handler decides, or any request it does not take.
//!
//! What it takes is deliberately narrow, so that nothing here has to agree with hyper on a
//! hard case: an HTTP/1.1 request in origin form, with no `Content-Length`, no
//! `Transfer-Encoding` (so no body, RFC 9112 §6.3), no `Upgrade`, no `Expect` and no `TE`
//! (whose answer may carry trailers, which only hyper's server writes), within the
//! configured head limits. Anything else — HTTP/1.0, HTTP/2's preface, a head `httparse`
//! refuses, a request with a body — is [`Unfit`], and the connection goes to hyper from that
//! request's first byte on, so hyper answers it exactly as it always has.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

use crate::proxy::headers::has_token;

/// At most this many header lines in a head taken here; a longer head goes to hyper (which
/// applies `max_headers` itself).
pub const MAX_HEADERS: usize = 64;

/// A request this lane does not take: hyper gets the connection from its first byte on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unfit;

/// A request head taken by the lane.
#[derive(Debug)]
pub struct ClientHead {
    pub req: Request<()>,
    /// The client asked to close the connection after this answer (`Connection: close`).
    pub close: bool,
}

/// Where the bytes of one header line are inside the head (offset and length of its name,
/// then of its value). `u32`: a head is far shorter, and the array of them is zeroed per
/// request.
type Span = [u32; 4];

/// Read the request head at the start of `buf`. `Ok(None)`: not complete yet (and within
/// `max_head` bytes). `Ok(Some(head))`: taken, and its bytes removed from `buf` (what follows
/// is the next request). `Err(Unfit)`: hyper's; `buf` is untouched.
pub fn parse_request(
    buf: &mut BytesMut,
    max_head: usize,
    max_headers: usize,
) -> Result<Option<ClientHead>, Unfit> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Ok(None),
        _ => return Err(Unfit),
    };
    if len > max_head
        || u32::try_from(len).is_err()
        || parsed.headers.len() > max_headers
        || parsed.version != Some(1)
    {
        return Err(Unfit);
    }
    let method = parsed.method.ok_or(Unfit)?;
    let path = parsed.path.ok_or(Unfit)?;
    if !path.starts_with('/') || method == "CONNECT" {
        return Err(Unfit);
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Unfit)?;
    let base = buf.as_ptr() as usize;
    // Inside the head, whose length fits a `u32` (checked above).
    let at = |s: &[u8]| ((s.as_ptr() as usize - base) as u32, s.len() as u32);
    let path = at(path.as_bytes());
    let mut spans: [Span; MAX_HEADERS] = [[0; 4]; MAX_HEADERS];
    let mut close = false;
    for (h, span) in parsed.headers.iter().zip(spans.iter_mut()) {
        let name = h.name.as_bytes();
        // `te`: a client that may ask for trailers is hyper's, which sends them (the lane
        // writes none).
        if [
            "content-length",
            "transfer-encoding",
            "upgrade",
            "expect",
            "te",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        {
            return Err(Unfit);
        }
        if name.eq_ignore_ascii_case(b"connection") && has_token(h.value, b"close") {
            close = true;
        }
        let ((n, n_len), (v, v_len)) = (at(name), at(h.value));
        *span = [n, n_len, v, v_len];
    }
    let count = parsed.headers.len();
    // The head's bytes become the request's: the path and values are slices of them.
    let head = buf.split_to(len).freeze();
    match build(&head, method, path, &spans[..count], close) {
        Ok(head) => Ok(Some(head)),
        Err(Unfit) => {
            // Not reached for a head httparse accepted, but if it were, hyper must get the
            // bytes whole: put the head back in front of what follows it.
            let mut whole = BytesMut::with_capacity(head.len() + buf.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buf);
            *buf = whole;
            Err(Unfit)
        }
    }
}

fn build(
    head: &Bytes,
    method: Method,
    path: (u32, u32),
    spans: &[Span],
    close: bool,
) -> Result<ClientHead, Unfit> {
    let range = |at: u32, len: u32| at as usize..(at + len) as usize;
    let slice = |(at, len): (u32, u32)| head.slice(range(at, len));
    let uri = Uri::from_maybe_shared(slice(path)).map_err(|_| Unfit)?;
    let mut headers = HeaderMap::with_capacity(spans.len());
    for s in spans {
        let [n, n_len, v, v_len] = *s;
        let name = HeaderName::from_bytes(&head[range(n, n_len)]).map_err(|_| Unfit)?;
        let value = HeaderValue::from_maybe_shared(slice((v, v_len))).map_err(|_| Unfit)?;
        headers.append(name, value);
    }
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Ok(ClientHead { req, close })
}

/// How an answer's body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerFraming {
    /// No body on the wire (an answer to HEAD, 1xx, 204, 304).
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked: the length is not known up front.
    Chunked,
}

/// Append the head of the answer `parts` (its status, the env's own reason phrase if it
/// carries one as hyper's `ReasonPhrase`, and its headers) to `out`, and say how its body
/// is framed. `exact` is the body's exact length if known; `date` the `Date` value to add
/// when the answer has none (as hyper's server does); `close` adds `Connection: close`.
///
/// Framing as hyper's server does it: a known length is written as `Content-Length` (a
/// length header in `headers` is replaced by it), an unknown one is sent chunked, and the
/// answer to `HEAD` keeps the headers it has but no body.
pub fn encode_response(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    exact: Option<u64>,
    head_request: bool,
    date: &[u8],
    close: bool,
) -> AnswerFraming {
    let (status, headers) = (parts.status, &parts.headers);
    let reason = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| r.as_bytes());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    // The env's own phrase when it had one of its own (hyper's `ReasonPhrase`, as hyper's
    // server writes it), else the standard one.
    out.extend_from_slice(reason.unwrap_or(status.canonical_reason().unwrap_or("").as_bytes()));
    out.extend_from_slice(b"\r\n");
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless || head_request {
        AnswerFraming::None
    } else {
        // A length the body does not know but the headers state is used as hyper's server
        // uses it (the body must then bring exactly that much: [`super::lane`] checks).
        match exact.or_else(|| stated_length(headers)) {
            Some(n) => AnswerFraming::Length(n),
            None => AnswerFraming::Chunked,
        }
    };
    let mut has_date = false;
    for (name, value) in headers {
        if name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || (name == header::CONTENT_LENGTH && (bodiless || !head_request))
        {
            // Framing and the connection's fate are this hop's, written below.
            continue;
        }
        has_date |= name == header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        AnswerFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        AnswerFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        AnswerFraming::None => {}
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// The one valid `Content-Length` in `headers`, if there is exactly one.
fn stated_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let v = values.next()?;
    if values.next().is_some() || v.is_empty() || !v.as_bytes().iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.to_str().ok()?.parse().ok()
}

/// Append the start of a chunk of `len` bytes to `out`.
pub fn chunk_start(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunk.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The end of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
