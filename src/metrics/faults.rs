//! Failed exchanges that were not an env's fault: the client's, or the proxy's own.
//!
//! Owns: the kinds of such failures (their label values in `/metrics` and fields in
//! `/v1/status`). Must not touch: any env's scope — a client's broken request or the proxy
//! running out of sockets says nothing about an env's health, and an env's error rate feeds
//! the gates that roll a migration back. Which party a failure belongs to is decided in one
//! place, `proxy::upstream::attempt::classify`.

/// What a client did wrong. Answered `400` or `408` (never `502`), counted in
/// `cutover_client_errors_total{kind}`, never in an env's scope nor in `users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The request body broke its own framing (a malformed chunk).
    BodyMalformed,
    /// The client hung up or reset its connection before its body was all sent.
    BodyAborted,
    /// The client paused its body for longer than `[limits] body_read_timeout`.
    BodyTimeout,
    /// The client sent its body slower on average than `[limits] min_body_rate`.
    BodyTooSlow,
    /// An upgrade request that declares a body (refused before anything reaches an env).
    UpgradeWithBody,
    /// A request the proxy refuses before routing (`CONNECT`, a target over `max_uri_bytes`,
    /// the `Host` rules): `400`/`405`/`414`, nothing reaches an env.
    BadRequest,
    /// The client closed its connection before its answer came (a request without a body;
    /// the `499` of other proxies: nobody is left to answer). The exchange is cancelled and
    /// counted nowhere else.
    Gone,
}

impl ClientFault {
    pub const ALL: [ClientFault; 7] = [
        ClientFault::BodyMalformed,
        ClientFault::BodyAborted,
        ClientFault::BodyTimeout,
        ClientFault::BodyTooSlow,
        ClientFault::UpgradeWithBody,
        ClientFault::BadRequest,
        ClientFault::Gone,
    ];

    /// The label value (`kind`) and status field name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientFault::BodyMalformed => "body_malformed",
            ClientFault::BodyAborted => "body_aborted",
            ClientFault::BodyTimeout => "body_timeout",
            ClientFault::BodyTooSlow => "body_too_slow",
            ClientFault::UpgradeWithBody => "upgrade_with_body",
            ClientFault::BadRequest => "bad_request",
            ClientFault::Gone => "gone",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the proxy itself ran out of. Answered `503` (`x-cutover-error: proxy-resources`),
/// counted in `cutover_proxy_errors_total{kind}`, never in an env's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFault {
    /// No socket for an upstream connection: out of file handles (`EMFILE`, `ENFILE`), of
    /// local ports (`EADDRNOTAVAIL`) or of kernel memory (`ENOBUFS`, `ENOMEM`).
    Resources,
}

impl ProxyFault {
    pub const ALL: [ProxyFault; 1] = [ProxyFault::Resources];

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyFault::Resources => "resources",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How a TLS handshake on the users' listener ended, counted in
/// `cutover_tls_handshakes_total{result}` (a connection, not a request: never in a scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The handshake completed.
    Done,
    /// The client's hello or the handshake was refused (no common version or cipher, a bad
    /// record, the client rejected the certificate and said so).
    Failed,
    /// Not done within `[limits] header_read_timeout`: closed, its slot freed.
    Timeout,
    /// A plain-HTTP request on the TLS listener: answered `400` and closed.
    PlainHttp,
}

impl Handshake {
    pub const ALL: [Handshake; 4] = [
        Handshake::Done,
        Handshake::Failed,
        Handshake::Timeout,
        Handshake::PlainHttp,
    ];

    /// The label value (`result`).
    pub fn as_str(self) -> &'static str {
        match self {
            Handshake::Done => "done",
            Handshake::Failed => "failed",
            Handshake::Timeout => "timeout",
            Handshake::PlainHttp => "plain_http",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
