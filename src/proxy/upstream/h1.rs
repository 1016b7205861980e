//! HTTP/1.1 towards the upstreams, written by hand for the common request: the request head
//! encoded straight from the prepared header map, the response head parsed with `httparse`
//! (hyper's own parser), and the response body's framing decided and decoded (RFC 9112 §6).
//!
//! Pure: bytes in, decisions out. No sockets, clocks or pools ([`super::rawconn`] does the
//! I/O). Must not touch: routing, metrics, header rules (the map it encodes is already
//! prepared by the handler).
//!
//! Why by hand: hyper's client builds a request from a header map, hands it to a connection
//! task through a channel, encodes it there and parses the answer back into a header map. For
//! a request without a body that is about a tenth of the proxy's CPU per request
//! (docs/benchmarks.md, "Sixth round"). Requests with a body and upgrades still go through
//! hyper.

use std::mem::MaybeUninit;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::proxy::headers::has_token;

/// A response head longer than this is refused (the upstream is broken or hostile).
pub const MAX_HEAD: usize = 64 * 1024;
/// More header lines than this in one response head are refused (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// Chunk extensions and trailers are skipped, but only this many bytes of them per body.
const MAX_CHUNK_META: usize = 16 * 1024;

/// Why a response could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum H1Error {
    #[error("malformed response head: {0}")]
    Parse(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid status code {0}")]
    Status(u16),
    #[error("invalid header name or value in the response")]
    Header,
    #[error("invalid Content-Length in the response")]
    Length,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnaskedUpgrade,
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
}

/// Append the head of a request for `method path` with `headers` (prepared: hop-by-hop
/// headers gone, forwarding headers set) to `out`. The request has no body: a method that
/// usually carries one gets `content-length: 0` unless the map says so already.
pub fn encode_request(
    out: &mut Vec<u8>,
    method: &Method,
    path: &http::uri::PathAndQuery,
    headers: &HeaderMap,
) {
    encode_request_to(out, method, path, headers, None);
}

/// [`encode_request`], with `host` (the env's `host_header`) sent instead of the map's `Host`.
pub fn encode_request_to(
    out: &mut Vec<u8>,
    method: &Method,
    path: &http::uri::PathAndQuery,
    headers: &HeaderMap,
    host: Option<&HeaderValue>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |name: &HeaderName, value: &HeaderValue| {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    match host {
        None => headers.iter().for_each(|(n, v)| line(n, v)),
        Some(host) => {
            line(&header::HOST, host);
            headers
                .iter()
                .filter(|(n, _)| *n != header::HOST)
                .for_each(|(n, v)| line(n, v));
        }
    }
    let bodiless = matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    );
    if !bodiless && !headers.contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvFraming {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct EnvHead {
    pub status: StatusCode,
    /// The env's reason phrase, where it is not the standard one for `status` (passed on as
    /// hyper's client does, so every path answers with the same phrase).
    pub reason: Option<hyper::ext::ReasonPhrase>,
    pub headers: HeaderMap,
    pub framing: EnvFraming,
    /// The connection may carry another request once this body has been read.
    pub keep_alive: bool,
}

/// What the start of a buffer holds.
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// An interim `1xx` answer of this many bytes: skip it, the real one follows.
    Interim(usize),
    /// The head, and how many bytes it took.
    EnvHead(EnvHead, usize),
}

/// Parse the response head at the start of `buf`. `head_request`: the request was `HEAD`, so
/// the response has no body whatever its headers say.
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Parsed, H1Error> {
    // Uninitialised slots: nothing to zero per answer (hyper does the same).
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => return Err(H1Error::HeadTooLarge),
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(H1Error::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(H1Error::Parse(e)),
    };
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Status(code))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(H1Error::UnaskedUpgrade);
    }
    if status.is_informational() {
        return Ok(Parsed::Interim(len));
    }
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    let mut length: Option<u64> = None;
    let mut chunked = None;
    // HTTP/1.0 answers are not kept alive (the proxy answers its clients in HTTP/1.1).
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| H1Error::Header)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| H1Error::Header)?;
        if name == header::CONTENT_LENGTH {
            let n = parse_length(h.value)?;
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Length);
            }
            if length.is_none() {
                // One value, however many the env repeated (`5, 5` or two lines of `5`).
                headers.append(name, HeaderValue::from(n));
            }
            length = Some(n);
            continue;
        } else if name == header::TRANSFER_ENCODING {
            // Only the last coding frames the body.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONNECTION && has_token(h.value, b"close") {
            close = true;
        }
        headers.append(name, value);
    }
    let framing =
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            EnvFraming::Empty
        } else if let Some(chunked) = chunked {
            // Transfer-Encoding overrides Content-Length, which must not be passed on; a message
            // with both is suspect, so its connection is not reused.
            if length.is_some() {
                headers.remove(header::CONTENT_LENGTH);
                close = true;
            }
            if chunked {
                EnvFraming::Chunked
            } else {
                EnvFraming::Close
            }
        } else if let Some(n) = length {
            EnvFraming::Length(n)
        } else {
            EnvFraming::Close
        };
    let keep_alive = !close && framing != EnvFraming::Close;
    Ok(Parsed::EnvHead(
        EnvHead {
            status,
            reason: resp
                .reason
                .filter(|r| Some(*r) != status.canonical_reason())
                .and_then(|r| hyper::ext::ReasonPhrase::try_from(r.as_bytes()).ok()),
            headers,
            framing,
            keep_alive,
        },
        len,
    ))
}

/// A `Content-Length` value: digits, or a list of the same digits (RFC 9110 §8.6).
fn parse_length(value: &[u8]) -> Result<u64, H1Error> {
    let mut found: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return Err(H1Error::Length);
        }
        let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(H1Error::Length);
        }
        found = Some(n);
    }
    found.ok_or(H1Error::Length)
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// Skipping a chunk extension (or whitespace before it) up to CR.
    Ext {
        size: u64,
    },
    /// CR seen after the size line.
    SizeLf {
        size: u64,
    },
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section; `empty`: at the start of a line.
    Trailer {
        empty: bool,
    },
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// What [`Chunked::step`] found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Skip `skip` framing bytes; then up to `len` bytes of data follow (report them taken
    /// with [`Chunked::took`]).
    Data { skip: usize, len: usize },
    /// Skip `skip` framing bytes and read more.
    More { skip: usize },
    /// The body ended after `skip` bytes.
    End { skip: usize },
}

/// Decoder of a chunked body (RFC 9112 §7.1). Extensions and trailers are skipped.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    /// Bytes of extensions and trailers seen, against [`MAX_CHUNK_META`].
    meta: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size { size: 0, digits: 0 },
            meta: 0,
        }
    }
}

impl Chunked {
    /// Walk the framing at the start of `buf` up to the next data, the end, or the end of
    /// `buf`.
    pub fn step(&mut self, buf: &[u8]) -> Result<Step, H1Error> {
        let mut i = 0;
        loop {
            if let State::Data(left) = self.state {
                let avail = buf.len() - i;
                if avail == 0 {
                    return Ok(Step::More { skip: i });
                }
                let len = usize::try_from(left).unwrap_or(usize::MAX).min(avail);
                return Ok(Step::Data { skip: i, len });
            }
            if self.state == State::Done {
                return Ok(Step::End { skip: i });
            }
            let Some(&b) = buf.get(i) else {
                return Ok(Step::More { skip: i });
            };
            i += 1;
            self.state = match self.state {
                State::Size { size, digits } => match hex(b) {
                    Some(d) if digits < 15 => State::Size {
                        size: size * 16 + u64::from(d),
                        digits: digits + 1,
                    },
                    Some(_) => return Err(H1Error::Chunked("chunk size too large")),
                    None if digits == 0 => return Err(H1Error::Chunked("no chunk size")),
                    None => match b {
                        b'\r' => State::SizeLf { size },
                        b';' | b' ' | b'\t' => {
                            self.meta_byte()?;
                            State::Ext { size }
                        }
                        _ => return Err(H1Error::Chunked("bad chunk size")),
                    },
                },
                State::Ext { size } => match b {
                    b'\r' => State::SizeLf { size },
                    _ => {
                        self.meta_byte()?;
                        State::Ext { size }
                    }
                },
                State::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => State::Trailer { empty: true },
                    (b'\n', n) => State::Data(n),
                    _ => return Err(H1Error::Chunked("no LF after the chunk size")),
                },
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    _ => return Err(H1Error::Chunked("no CRLF after chunk data")),
                },
                State::DataLf => match b {
                    b'\n' => State::Size { size: 0, digits: 0 },
                    _ => return Err(H1Error::Chunked("no CRLF after chunk data")),
                },
                State::Trailer { empty } => match b {
                    b'\r' => State::TrailerLf { empty },
                    _ => {
                        self.meta_byte()?;
                        State::Trailer { empty: false }
                    }
                },
                State::TrailerLf { empty } => match (b, empty) {
                    (b'\n', true) => State::Done,
                    (b'\n', false) => State::Trailer { empty: true },
                    _ => return Err(H1Error::Chunked("no LF in the trailer section")),
                },
                // Handled above, before a byte is read.
                s @ (State::Data(_) | State::Done) => s,
            };
        }
    }

    /// The caller took `n` bytes of the data that [`Step::Data`] offered.
    pub fn took(&mut self, n: usize) {
        if let State::Data(left) = self.state {
            let left = left.saturating_sub(n as u64);
            self.state = if left == 0 {
                State::DataCr
            } else {
                State::Data(left)
            };
        }
    }

    /// The whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn meta_byte(&mut self) -> Result<(), H1Error> {
        self.meta += 1;
        if self.meta > MAX_CHUNK_META {
            return Err(H1Error::Chunked("chunk extensions or trailers too long"));
        }
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// An env's answer as hyper's client read it (requests with a body), held to the rules of
/// cutover's own client (this module) so that every path answers alike: `false` for a `101`
/// to a request that asked for no upgrade, or a head larger than the answer-head limit (an
/// invalid answer, never passed on); otherwise the
/// version is the proxy's own (HTTP/1.1: an HTTP/1.0 env is not shown to the client) and a
/// repeated `Content-Length` (`5, 5`, or two lines of `5`, which hyper accepts) is passed on
/// as one value.
pub fn normalize_answer<B>(resp: &mut http::Response<B>, upgrade: bool) -> bool {
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return false;
    }
    *resp.version_mut() = http::Version::HTTP_11;
    let headers = resp.headers_mut();
    // hyper's client checks its head limit only while a head is incomplete; a larger head
    // that arrived whole is refused here, by the same measure as the hand-spoken path's
    // (its lines without the optional blanks around values).
    let head: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if head > MAX_HEAD {
        return false;
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let repeated = match (lengths.next(), lengths.next()) {
        (Some(v), None) => v.as_bytes().contains(&b','),
        (Some(_), Some(_)) => true,
        _ => false,
    };
    if repeated {
        // hyper accepted it, so every value is the same number.
        let first = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|n| n.trim().parse::<u64>().ok());
        match first {
            Some(n) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            None => return false,
        }
    }
    true
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
