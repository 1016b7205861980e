//! The control API client, used by the CLI and the console.
//!
//! Owns: HTTP calls to the admin listener (`http://`, or `https://` trusting the system's roots
//! plus a `--ca-file`), the bearer token and actor header, decoding answers and
//! `{"error","hint"}` bodies, and the server-sent event stream. Must not touch: the store or
//! any server state directly — everything goes through the API.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client as HttpClient};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::api::{
    ActionRequest, ApiError, Event, PlanInfo, Status, TicksPage, Verb, WeightRequest, ACTOR_HEADER,
};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("invalid admin URL `{0}`: use http://HOST:PORT or https://HOST:PORT")]
    BadUrl(String),
    #[error("cannot set up TLS for {url}: {source}")]
    Tls {
        url: String,
        source: crate::tls::TlsError,
    },
    #[error("cannot reach the control API at {url}: {cause}")]
    Connect { url: String, cause: String },
    #[error("{}: {} (hint: {})", .status, .body.error, .body.hint)]
    Api { status: u16, body: ApiError },
    #[error("unexpected answer from the control API: {0}")]
    BadResponse(String),
    #[error("the control API did not answer within {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    /// The HTTP status of an API error, if the server answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one control API.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    actor: String,
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Client {
    /// `admin_url` like `http://127.0.0.1:9900`; `actor` is recorded in events (`cli`, `console`).
    pub fn new(admin_url: &str, token: Option<String>, actor: &str) -> Result<Self, ClientError> {
        Client::with_ca_file(admin_url, token, actor, None)
    }

    /// As [`Client::new`]; an `https://` URL's certificate is checked against the system's
    /// roots plus `ca_file` (the CA that signed the admin listener's certificate).
    pub fn with_ca_file(
        admin_url: &str,
        token: Option<String>,
        actor: &str,
        ca_file: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let base = admin_url.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::BadUrl(admin_url.to_owned()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(ClientError::BadUrl(admin_url.to_owned())),
        };
        if uri.authority().is_none() {
            return Err(ClientError::BadUrl(admin_url.to_owned()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        // Trust is built only for an https:// URL: a plain one needs no CA at all.
        let tls = match https {
            // No ALPN here: hyper-rustls sets it from the protocols enabled below.
            true => crate::tls::client_config(ca_file, &[]).map(|t| t.config),
            false => crate::tls::client_config_without_roots(),
        }
        .map_err(|source| ClientError::Tls {
            url: base.clone(),
            source,
        })?;
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(std::sync::Arc::unwrap_or_clone(tls))
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(Client {
            base,
            token,
            actor: actor.to_owned(),
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
            timeout: Duration::from_secs(10),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call(Method::GET, "/v1/status", None).await
    }

    /// `POST /v1/start` with the plan's TOML text.
    pub async fn start(&self, plan_toml: String) -> Result<Status, ClientError> {
        self.call(Method::POST, "/v1/start", Some(Bytes::from(plan_toml)))
            .await
    }

    /// `POST /v1/{pause,resume,approve,rollback,abort}`.
    pub async fn action(&self, verb: Verb, reason: Option<&str>) -> Result<Status, ClientError> {
        let body = ActionRequest {
            reason: reason.map(str::to_owned),
        };
        let path = format!("/v1/{}", verb.route());
        self.call(Method::POST, &path, Some(json_bytes(&body)?))
            .await
    }

    /// `POST /v1/weight`.
    pub async fn set_weight(
        &self,
        weight: f64,
        reason: Option<&str>,
    ) -> Result<Status, ClientError> {
        let body = WeightRequest {
            weight,
            reason: reason.map(str::to_owned),
        };
        self.call(Method::POST, "/v1/weight", Some(json_bytes(&body)?))
            .await
    }

    /// `POST /v1/weight` with a `ramp`: reach `weight` over `ramp` (e.g. `"2m"`).
    pub async fn set_weight_ramped(
        &self,
        weight: f64,
        ramp: &str,
        reason: Option<&str>,
    ) -> Result<Status, ClientError> {
        let body = serde_json::json!({ "weight": weight, "ramp": ramp, "reason": reason });
        self.call(Method::POST, "/v1/weight", Some(json_bytes(&body)?))
            .await
    }

    /// `GET /v1/events?since=ID`: events with an id above `since`, oldest first.
    pub async fn events(&self, since: u64) -> Result<Vec<Event>, ClientError> {
        self.call(Method::GET, &format!("/v1/events?since={since}"), None)
            .await
    }

    /// `GET /v1/ticks?from=&to=`: one page of recorded analysis ticks.
    pub async fn ticks(&self, from_ms: u64, to_ms: u64) -> Result<TicksPage, ClientError> {
        self.call(
            Method::GET,
            &format!("/v1/ticks?from={from_ms}&to={to_ms}"),
            None,
        )
        .await
    }

    pub async fn plans(&self) -> Result<Vec<PlanInfo>, ClientError> {
        self.call(Method::GET, "/v1/plans", None).await
    }

    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> Result<String, ClientError> {
        let (_, body) = self.raw(Method::GET, "/metrics", None).await?;
        String::from_utf8(body.to_vec()).map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    /// The live event stream (`GET /v1/events?since=ID&follow=1`, server-sent events).
    pub async fn follow(&self, since: u64) -> Result<EventStream, ClientError> {
        let req = self.request(
            Method::GET,
            &format!("/v1/events?since={since}&follow=1"),
            None,
        )?;
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
            .map_err(|e| self.connect_error(e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::BadResponse(e.to_string()))?
                .to_bytes();
            return Err(api_error(status, &body));
        }
        Ok(EventStream {
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T, ClientError> {
        let (_, bytes) = self.raw(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let req = self.request(method, path, body)?;
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| self.connect_error(e))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::BadResponse(e.to_string()))?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        Ok((status, bytes))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header(ACTOR_HEADER, &self.actor);
        if let Some(token) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::BadUrl(format!("{}{path}: {e}", self.base)))
    }

    fn connect_error(&self, e: hyper_util::client::legacy::Error) -> ClientError {
        let mut cause = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            cause = format!("{cause}: {s}");
            src = s.source();
        }
        ClientError::Connect {
            url: self.base.clone(),
            cause,
        }
    }
}

fn json_bytes<T: serde::Serialize>(v: &T) -> Result<Bytes, ClientError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| ClientError::BadResponse(e.to_string()))
}

fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let body = serde_json::from_slice::<ApiError>(body).unwrap_or_else(|_| ApiError {
        error: String::from_utf8_lossy(body).trim().to_owned(),
        hint: String::from("the server answered without a JSON error body"),
        details: Vec::new(),
    });
    ClientError::Api {
        status: status.as_u16(),
        body,
    }
}

/// Server-sent events from `follow`, decoded to [`Event`]s.
pub struct EventStream {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            if let Some(pos) = find_frame_end(&self.buf) {
                let frame: Vec<u8> = self.buf.drain(..pos + 2).collect();
                if let Some(data) = sse_data(&frame) {
                    return Some(
                        serde_json::from_str(&data)
                            .map_err(|e| ClientError::BadResponse(e.to_string())),
                    );
                }
                continue;
            }
            match self.body.frame().await {
                None => return None,
                Some(Err(e)) => return Some(Err(ClientError::BadResponse(e.to_string()))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

fn find_frame_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

/// The joined `data:` lines of one SSE frame; `None` for comments and keep-alives.
fn sse_data(frame: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(frame);
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_decode() {
        assert_eq!(
            sse_data(b"id: 3\ndata: {\"a\":1}\n\n").as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(sse_data(b": keep-alive\n\n"), None);
        assert_eq!(find_frame_end(b"data: x\n\nrest"), Some(7));
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(Client::new("ftp://x", None, "cli").is_err());
        assert!(Client::new("not a url", None, "cli").is_err());
        assert!(Client::new("http://127.0.0.1:9", None, "cli").is_ok());
        let missing = Path::new("/nonexistent/ca.pem");
        let e = Client::with_ca_file("https://127.0.0.1:9", None, "cli", Some(missing))
            .expect_err("a CA file that is not there");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
