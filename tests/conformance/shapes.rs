//! The table of env answers: each by name, the bytes the env sends and whether it closes
//! the connection after, and what every client must get for it, whatever the path.

/// What a client must get for an answer shape (`None`: no such check).
pub struct Expect {
    pub status: u16,
    /// The reason phrase on HTTP/1.1.
    pub reason: &'static str,
    pub body: &'static [u8],
    /// `x-cutover-error` of the proxy's own answer, if it answers itself.
    pub error: Option<&'static str>,
    /// `Content-Length` an HTTP/1.1 client sees (`None`: none, or not checked).
    pub length: Option<&'static str>,
}

pub struct AnswerShape {
    pub name: &'static str,
    pub why: &'static str,
    pub expect: Expect,
}

const fn ok(name: &'static str, why: &'static str, body: &'static [u8]) -> AnswerShape {
    AnswerShape {
        name,
        why,
        expect: Expect {
            status: 200,
            reason: "OK",
            body,
            error: None,
            length: None,
        },
    }
}

const fn bad_gateway(name: &'static str, why: &'static str) -> AnswerShape {
    AnswerShape {
        name,
        why,
        expect: Expect {
            status: 502,
            reason: "Bad Gateway",
            body: b"",
            error: Some("reset"),
            length: None,
        },
    }
}

pub const ANSWERS: &[AnswerShape] = &[
    ok("ok", "a plain answer", b"ok"),
    ok(
        "chunked",
        "chunked, with an extension and a trailer",
        b"hello world",
    ),
    AnswerShape {
        name: "odd-reason",
        why: "a status without a standard phrase keeps the env's",
        expect: Expect {
            status: 599,
            reason: "Odd",
            body: b"ok",
            error: None,
            length: Some("2"),
        },
    },
    AnswerShape {
        name: "empty-reason",
        why: "an empty reason phrase stays empty",
        expect: Expect {
            status: 599,
            reason: "",
            body: b"ok",
            error: None,
            length: Some("2"),
        },
    },
    ok(
        "both-framings",
        "Content-Length and Transfer-Encoding: the coding wins, the length is dropped",
        b"hello",
    ),
    AnswerShape {
        name: "repeated-length",
        why: "`Content-Length: 5, 5` is passed on as one value",
        expect: Expect {
            status: 200,
            reason: "OK",
            body: b"hello",
            error: None,
            length: Some("5"),
        },
    },
    AnswerShape {
        name: "two-lengths",
        why: "two equal Content-Length lines are passed on as one",
        expect: Expect {
            status: 200,
            reason: "OK",
            body: b"hello",
            error: None,
            length: Some("5"),
        },
    },
    ok(
        "http10",
        "an HTTP/1.0 answer reaches the client as HTTP/1.1",
        b"ok",
    ),
    ok(
        "to-close",
        "a body delimited by the close",
        b"until the end",
    ),
    AnswerShape {
        name: "no-content",
        why: "204 has no body",
        expect: Expect {
            status: 204,
            reason: "No Content",
            body: b"",
            error: None,
            length: None,
        },
    },
    AnswerShape {
        name: "not-modified",
        why: "304 has no body, whatever its length says",
        expect: Expect {
            status: 304,
            reason: "Not Modified",
            body: b"",
            error: None,
            length: None,
        },
    },
    bad_gateway(
        "unasked-101",
        "a 101 to a request that asked for no upgrade",
    ),
    bad_gateway("bad-length", "a Content-Length that is not a number"),
    bad_gateway("huge-head", "an answer head over 64 KiB, arriving whole"),
];

/// The bytes the env sends for the answer named `name`, and whether it closes after.
pub fn answer(name: &str) -> (&'static [u8], bool) {
    match name {
        "chunked" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
            false,
        ),
        "odd-reason" => (b"HTTP/1.1 599 Odd\r\ncontent-length: 2\r\n\r\nok", false),
        "empty-reason" => (b"HTTP/1.1 599 \r\ncontent-length: 2\r\n\r\nok", false),
        "both-framings" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n",
            true,
        ),
        "repeated-length" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello",
            false,
        ),
        "two-lengths" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
            false,
        ),
        "http10" => (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", true),
        "to-close" => (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true),
        "no-content" => (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        "not-modified" => (
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
            false,
        ),
        "unasked-101" => (
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: foo\r\nconnection: upgrade\r\n\r\n",
            true,
        ),
        "bad-length" => (b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n", true),
        "huge-head" => (huge_head(), true),
        _ => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-env: 1\r\n\r\nok",
            false,
        ),
    }
}

fn huge_head() -> &'static [u8] {
    static HEAD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    HEAD.get_or_init(|| {
        let mut h = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n".to_vec();
        for i in 0..70 {
            h.extend_from_slice(format!("x-big-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
        }
        h.extend_from_slice(b"\r\nok");
        h
    })
}
