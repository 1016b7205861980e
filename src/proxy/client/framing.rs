//! HTTP/1 request framing, followed byte by byte as a client connection is read, to find a
//! request that carries both `Content-Length` and `Transfer-Encoding` before hyper parses it.
//!
//! Owns: [`Tracker`], a pure state machine fed the bytes a connection reads — in any split,
//! with the same result — and its [`Verdict`]. Must not touch: sockets or hyper (the socket
//! side is [`super::screen`]), nor the heap: it runs on every byte of every HTTP/1
//! connection, so it keeps a few integers between reads, scans lines with `memchr` and skips
//! bodies by their length.
//!
//! Why a second look at the bytes: hyper 1.x accepts such a request (chunked wins, RFC 9112
//! §6.3), drops the `Content-Length` and closes after the answer; the service never learns
//! the length was there, so it cannot refuse. The tracker only has to agree with hyper where
//! hyper accepts a request. Where it meets what it does not follow — HTTP/2's preface, a
//! malformed line or chunk, a method or header hyper refuses — it stops
//! ([`Verdict::PassThrough`]) and hyper, which refuses malformed input itself, decides alone.
//!
//! The grammar is hyper 1.12's with httparse 1.10 as [`super::settings`] configures them:
//! empty lines before a request line skipped; CRLF or a bare LF ends a head line; header names
//! matched case-insensitively (blanks before the colon too, which hyper refuses anyway);
//! `Content-Length` as digits with blanks around, equal duplicates allowed; any
//! `Transfer-Encoding` means a chunked body (hyper refuses a request whose last coding is not
//! chunked); chunk sizes in hex with blanks and `;` extensions; chunk lines end in CRLF;
//! trailers run to an empty line. `Upgrade` and `CONNECT` are remembered
//! ([`Tracker::may_upgrade`]): after a `101` the bytes are no longer HTTP, and the caller stops
//! the tracker with [`Tracker::stop`].

use memchr::{memchr, memchr2};

/// What the bytes fed so far mean for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every request so far is framed one way only; keep feeding.
    Continue,
    /// The tracker stopped at stream offset `at` (HTTP/2, a protocol switch, or input hyper
    /// refuses itself). Sticky: from here on hyper alone reads the connection.
    PassThrough { at: u64 },
    /// The request whose first byte is at stream offset `head_at` has both a
    /// `Content-Length` and a `Transfer-Encoding`. Sticky. Nothing from `head_at` on may be
    /// parsed as HTTP.
    Reject { head_at: u64 },
}

/// Why a request was refused ([`Verdict::Reject`]; [`Tracker::refusal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Both `Content-Length` and `Transfer-Encoding`.
    ConflictingFraming,
    /// HTTP/2's preface after an HTTP/1.1 request on the same connection (h2c is spoken from
    /// a connection's first byte or not at all; NGINX and HAProxy answer it 400 too).
    LateHttp2,
}

/// Watched header names, lowercase, by index.
const NAMES: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"upgrade"];
const CL: u8 = 0;
const TE: u8 = 1;
const UPGRADE: u8 = 2;
const CONNECT: &[u8] = b"CONNECT";
const VERSION: &[u8] = b"HTTP/1.";
/// `Method::connect` once the method can no longer be `CONNECT`.
const NOT_CONNECT: u8 = u8::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Before a request line: empty lines are skipped.
    Lead,
    /// In the method; `connect` bytes of `CONNECT` matched so far.
    Method {
        connect: u8,
    },
    Target,
    /// `n` bytes of `HTTP/1.` matched; at 7 the minor digit is next.
    Version {
        n: u8,
    },
    /// After the version: CR (then `cr`) and LF.
    VersionEnd {
        cr: bool,
    },
    LineStart,
    /// A CR at the start of a line: LF ends the head.
    HeadLf,
    /// `n` bytes of `NAMES[which]` matched at the start of a line.
    Name {
        which: u8,
        n: u8,
    },
    /// A whole watched name: blanks, then the colon.
    Colon {
        which: u8,
    },
    Length(Digits),
    SkipLine,
    /// Fixed-length body: `left` bytes to go.
    Body,
    ChunkStart,
    ChunkSize,
    ChunkBlank,
    ChunkExt,
    ChunkSizeLf,
    /// Chunk data: `left` bytes to go.
    ChunkData,
    ChunkCr,
    ChunkLf,
    /// After the last chunk (and after each trailer line): CR ends the body, else a trailer.
    TrailerStart,
    Trailer,
    TrailerLf,
    LastLf,
    PassThrough {
        at: u64,
    },
    Rejected {
        head_at: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digits {
    Before,
    In,
    After,
}

/// The framing state of one client connection: 80 bytes, no heap.
#[derive(Debug, Clone)]
pub struct Tracker {
    st: St,
    /// Stream offset of the next byte fed.
    pos: u64,
    /// Stream offset of the current request's first byte.
    head_at: u64,
    /// Body or chunk bytes still to skip.
    left: u64,
    /// The `Content-Length` value or chunk size being read.
    num: u64,
    /// The request's `Content-Length`, once read.
    length: Option<u64>,
    has_cl: bool,
    has_te: bool,
    /// A `Content-Length` hyper refuses (not digits, or two different values).
    bad_cl: bool,
    /// This request asks to switch protocols (`Upgrade`, `CONNECT`).
    upgrade: bool,
    may_upgrade: bool,
    requests: u64,
    refusal: Refusal,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl Tracker {
    pub const fn new() -> Tracker {
        Tracker {
            st: St::Lead,
            pos: 0,
            head_at: 0,
            left: 0,
            num: 0,
            length: None,
            has_cl: false,
            has_te: false,
            bad_cl: false,
            upgrade: false,
            may_upgrade: false,
            requests: 0,
            refusal: Refusal::ConflictingFraming,
        }
    }

    /// Stream offset of the next byte to feed.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Request heads read completely so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Why the tracker rejected a request (meaningful once [`Verdict::Reject`] is given).
    pub fn refusal(&self) -> Refusal {
        self.refusal
    }

    /// Some request asked to switch protocols: once it has (a `101`), call [`Tracker::stop`].
    pub fn may_upgrade(&self) -> bool {
        self.may_upgrade
    }

    /// Stop following the connection: what comes next is not HTTP/1 requests.
    pub fn stop(&mut self) {
        if !matches!(self.st, St::PassThrough { .. } | St::Rejected { .. }) {
            self.st = St::PassThrough { at: self.pos };
        }
    }

    pub fn verdict(&self) -> Verdict {
        match self.st {
            St::PassThrough { at } => Verdict::PassThrough { at },
            St::Rejected { head_at } => Verdict::Reject { head_at },
            _ => Verdict::Continue,
        }
    }

    /// Follow the next bytes of the connection.
    pub fn feed(&mut self, data: &[u8]) -> Verdict {
        let base = self.pos;
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            match self.st {
                St::PassThrough { .. } | St::Rejected { .. } => break,
                St::Body | St::ChunkData => {
                    let n = usize::try_from(self.left).map_or(rest.len(), |l| l.min(rest.len()));
                    i += n;
                    self.left -= n as u64;
                    if self.left == 0 {
                        if self.st == St::Body {
                            self.message_end(base + i as u64);
                        } else {
                            self.st = St::ChunkCr;
                        }
                    }
                }
                St::SkipLine => match memchr(b'\n', rest) {
                    Some(k) => {
                        i += k + 1;
                        self.st = St::LineStart;
                    }
                    None => i = data.len(),
                },
                St::Target => match memchr2(b' ', b'\n', rest) {
                    Some(k) if rest[k] == b' ' => {
                        i += k + 1;
                        self.st = St::Version { n: 0 };
                    }
                    Some(k) => self.pass(base + (i + k) as u64),
                    None => i = data.len(),
                },
                St::ChunkExt => match memchr2(b'\r', b'\n', rest) {
                    Some(k) if rest[k] == b'\r' => {
                        i += k + 1;
                        self.st = St::ChunkSizeLf;
                    }
                    Some(k) => self.pass(base + (i + k) as u64),
                    None => i = data.len(),
                },
                St::Trailer => match memchr(b'\r', rest) {
                    Some(k) => {
                        i += k + 1;
                        self.st = St::TrailerLf;
                    }
                    None => i = data.len(),
                },
                // Fast paths for a whole name or version within this read; the byte-wise
                // states below give the same result for any split.
                St::LineStart => {
                    let which = match rest[0].to_ascii_lowercase() {
                        b'c' => CL,
                        b't' => TE,
                        b'u' => UPGRADE,
                        b'\r' | b'\n' | b' ' | b'\t' => {
                            self.step(rest[0], base + i as u64);
                            i += 1;
                            continue;
                        }
                        _ => {
                            self.st = St::SkipLine;
                            i += 1;
                            continue;
                        }
                    };
                    let name = NAMES[usize::from(which)];
                    match rest.get(..name.len()) {
                        Some(head) if head.eq_ignore_ascii_case(name) => {
                            self.st = St::Colon { which };
                            i += name.len();
                        }
                        // Not this name: the line's LF, wherever it is, ends the skip.
                        Some(_) => {
                            self.st = St::SkipLine;
                            i += 1;
                        }
                        None => {
                            self.step(rest[0], base + i as u64);
                            i += 1;
                        }
                    }
                }
                St::Version { n: 0 }
                    if rest.len() > VERSION.len()
                        && rest.starts_with(VERSION)
                        && matches!(rest[VERSION.len()], b'0' | b'1') =>
                {
                    self.st = St::VersionEnd { cr: false };
                    i += VERSION.len() + 1;
                }
                _ => {
                    self.step(rest[0], base + i as u64);
                    i += 1;
                }
            }
        }
        self.pos = base + data.len() as u64;
        self.verdict()
    }

    /// One byte at stream offset `at`, in a state that looks at single bytes.
    #[inline]
    fn step(&mut self, b: u8, at: u64) {
        let st = self.st;
        self.st = match st {
            St::Lead => match b {
                b'\r' | b'\n' => St::Lead,
                b'C' => St::Method { connect: 1 },
                _ if is_tchar(b) => St::Method {
                    connect: NOT_CONNECT,
                },
                _ => return self.pass(at),
            },
            St::Method { connect } => match b {
                b' ' => {
                    self.upgrade = usize::from(connect) == CONNECT.len();
                    St::Target
                }
                _ if is_tchar(b) => St::Method {
                    connect: match CONNECT.get(usize::from(connect)) {
                        Some(&c) if c == b => connect + 1,
                        _ => NOT_CONNECT,
                    },
                },
                _ => return self.pass(at),
            },
            St::Version { n } => match VERSION.get(usize::from(n)) {
                Some(&c) if c == b => St::Version { n: n + 1 },
                // `HTTP/2` after a request was served: HTTP/2's preface, too late.
                Some(_) if n == 5 && b == b'2' && self.requests > 0 => {
                    self.refusal = Refusal::LateHttp2;
                    St::Rejected {
                        head_at: self.head_at,
                    }
                }
                None if b == b'0' || b == b'1' => St::VersionEnd { cr: false },
                _ => return self.pass(at),
            },
            St::VersionEnd { cr } => match b {
                b'\r' if !cr => St::VersionEnd { cr: true },
                b'\n' => St::LineStart,
                _ => return self.pass(at),
            },
            St::LineStart => match b.to_ascii_lowercase() {
                b'\r' => St::HeadLf,
                b'\n' => return self.head_end(at),
                // obs-fold or a blank before the first name: hyper refuses the request.
                b' ' | b'\t' => return self.pass(at),
                b'c' => St::Name { which: CL, n: 1 },
                b't' => St::Name { which: TE, n: 1 },
                b'u' => St::Name {
                    which: UPGRADE,
                    n: 1,
                },
                _ => St::SkipLine,
            },
            St::HeadLf => match b {
                b'\n' => return self.head_end(at),
                _ => return self.pass(at),
            },
            St::Name { which, n } => {
                let name = NAMES[usize::from(which)];
                if b.to_ascii_lowercase() != name[usize::from(n)] {
                    skip_rest(b)
                } else if usize::from(n) + 1 == name.len() {
                    St::Colon { which }
                } else {
                    St::Name { which, n: n + 1 }
                }
            }
            St::Colon { which } => match b {
                b' ' | b'\t' => St::Colon { which },
                b':' => return self.header(which),
                _ => skip_rest(b),
            },
            St::Length(d) => self.length_byte(d, b),
            St::ChunkStart => match hex(b) {
                Some(v) => {
                    self.num = v;
                    St::ChunkSize
                }
                None => return self.pass(at),
            },
            St::ChunkSize => match (b, hex(b)) {
                (_, Some(v)) => match self.num.checked_mul(16).and_then(|n| n.checked_add(v)) {
                    Some(n) => {
                        self.num = n;
                        St::ChunkSize
                    }
                    None => return self.pass(at),
                },
                (b' ' | b'\t', _) => St::ChunkBlank,
                (b';', _) => St::ChunkExt,
                (b'\r', _) => St::ChunkSizeLf,
                _ => return self.pass(at),
            },
            St::ChunkBlank => match b {
                b' ' | b'\t' => St::ChunkBlank,
                b';' => St::ChunkExt,
                b'\r' => St::ChunkSizeLf,
                _ => return self.pass(at),
            },
            St::ChunkSizeLf if b == b'\n' => {
                self.left = self.num;
                if self.num == 0 {
                    St::TrailerStart
                } else {
                    St::ChunkData
                }
            }
            St::ChunkCr if b == b'\r' => St::ChunkLf,
            St::ChunkLf if b == b'\n' => St::ChunkStart,
            St::TrailerStart => match b {
                b'\r' => St::LastLf,
                _ => St::Trailer,
            },
            St::TrailerLf if b == b'\n' => St::TrailerStart,
            St::LastLf if b == b'\n' => return self.message_end(at + 1),
            _ => return self.pass(at),
        };
    }

    /// A watched header name and its colon.
    fn header(&mut self, which: u8) {
        match which {
            CL => self.has_cl = true,
            TE => self.has_te = true,
            _ => self.upgrade = true,
        }
        self.st = if self.has_cl && self.has_te {
            St::Rejected {
                head_at: self.head_at,
            }
        } else if which == CL {
            St::Length(Digits::Before)
        } else {
            St::SkipLine
        };
    }

    /// One byte of a `Content-Length` value (hyper: digits only, blanks trimmed).
    fn length_byte(&mut self, d: Digits, b: u8) -> St {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'));
        match (d, b, digit) {
            (_, b' ' | b'\t', _) if d != Digits::In => St::Length(d),
            (Digits::In, b' ' | b'\t', _) => St::Length(Digits::After),
            (Digits::Before, _, Some(v)) => {
                self.num = v;
                St::Length(Digits::In)
            }
            (Digits::In, _, Some(v)) => {
                match self.num.checked_mul(10).and_then(|n| n.checked_add(v)) {
                    Some(n) => {
                        self.num = n;
                        St::Length(Digits::In)
                    }
                    None => {
                        self.bad_cl = true;
                        St::SkipLine
                    }
                }
            }
            (Digits::In | Digits::After, b'\r' | b'\n', _) => {
                match self.length {
                    Some(prev) if prev != self.num => self.bad_cl = true,
                    _ => self.length = Some(self.num),
                }
                skip_rest(b)
            }
            _ => {
                self.bad_cl = true;
                skip_rest(b)
            }
        }
    }

    /// The empty line that ends a head, at stream offset `at`.
    fn head_end(&mut self, at: u64) {
        self.requests += 1;
        self.may_upgrade |= self.upgrade;
        if self.has_te {
            self.num = 0;
            self.st = St::ChunkStart;
        } else if self.bad_cl {
            self.pass(at);
        } else {
            match self.length {
                Some(n) if n > 0 => {
                    self.left = n;
                    self.st = St::Body;
                }
                _ => self.message_end(at + 1),
            }
        }
    }

    /// The current request ended; the next one starts at stream offset `next`.
    fn message_end(&mut self, next: u64) {
        self.st = St::Lead;
        self.head_at = next;
        self.length = None;
        self.has_cl = false;
        self.has_te = false;
        self.bad_cl = false;
        self.upgrade = false;
    }

    fn pass(&mut self, at: u64) {
        self.st = St::PassThrough { at };
    }
}

/// The state after a byte that ends interest in a head line: the line ends with it (LF), or
/// the rest of it is skipped.
fn skip_rest(b: u8) -> St {
    if b == b'\n' {
        St::LineStart
    } else {
        St::SkipLine
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// An RFC 9110 token character (methods and header names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
