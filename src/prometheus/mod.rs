//! The Prometheus client of query gates: asks `[prometheus] url`'s instant-query API for every
//! query gate of the run, concurrently, each bounded by `timeout`, from a task of its own
//! ([`poll`]) so that the driver's tick reads the latest answers and never waits.
//!
//! Owns: the HTTP calls (`POST /api/v1/query`, a bearer token read from its file on every call
//! so a rotated token is picked up, `https://` trusting the system's roots plus `ca_file`), and
//! how long each gate's query has been failing. Must not touch: judging — the answers go to
//! [`crate::analyzer::evaluate_with`] as data ([`crate::analyzer::query`] reads them) — nor the
//! data path: only the driver's poller calls this, once per analysis interval.

pub mod poll;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::{header, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client as HttpClient};
use hyper_util::rt::TokioExecutor;
use thiserror::Error;
// Tokio's clock, so the driver's paused-time tests drive how long a query has failed.
use tokio::time::Instant;

use crate::analyzer::query::read_answer;
use crate::analyzer::{QueryOutcome, QueryResults};
use crate::config::PrometheusConfig;
use crate::plan::model::QueryGate;

#[derive(Debug, Error)]
pub enum PrometheusError {
    #[error("[prometheus] url `{0}`: use http://HOST:PORT or https://HOST:PORT")]
    BadUrl(String),
    #[error("[prometheus] ca_file: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The client, and since when each gate's query has failed without a break.
pub struct Prometheus {
    endpoint: Uri,
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    token_file: Option<PathBuf>,
    timeout: Duration,
    pause_after: Duration,
    /// Gate name → first failure of the current run of failures. Locked only between awaits.
    failing_since: Mutex<HashMap<String, Instant>>,
}

impl Prometheus {
    pub fn new(cfg: &PrometheusConfig) -> Result<Self, PrometheusError> {
        let base = cfg.url.trim_end_matches('/');
        let endpoint: Uri = format!("{base}/api/v1/query")
            .parse()
            .map_err(|_| PrometheusError::BadUrl(cfg.url.clone()))?;
        let tls = match endpoint.scheme_str() {
            Some("https") => crate::tls::client_config(cfg.ca_file.as_deref(), &[])?.config,
            Some("http") => crate::tls::client_config_without_roots()?,
            _ => return Err(PrometheusError::BadUrl(cfg.url.clone())),
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(std::sync::Arc::unwrap_or_clone(tls))
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(Prometheus {
            endpoint,
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
            token_file: cfg.bearer_token_file.clone(),
            timeout: cfg.timeout,
            pause_after: cfg.pause_after,
            failing_since: Mutex::new(HashMap::new()),
        })
    }

    /// Asks for every gate's query at once; each answer or error within `timeout`.
    pub async fn ask_all(&self, gates: &[QueryGate]) -> QueryResults {
        let answers = join_all(gates.iter().map(|g| self.ask(&g.query))).await;
        let now = Instant::now();
        let mut since = self
            .failing_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        since.retain(|name, _| gates.iter().any(|g| &g.name == name));
        let outcomes = gates
            .iter()
            .zip(answers)
            .map(|(g, value)| {
                let failing_for = match &value {
                    Ok(_) => {
                        since.remove(&g.name);
                        Duration::ZERO
                    }
                    Err(error) => {
                        tracing::warn!(gate = %g.name, query = %g.query, %error, "query gate cannot judge");
                        now.duration_since(*since.entry(g.name.clone()).or_insert(now))
                    }
                };
                (g.name.clone(), QueryOutcome { value, failing_for })
            })
            .collect();
        QueryResults {
            outcomes,
            pause_after: self.pause_after,
        }
    }

    /// One instant query: its value, or why there is none.
    pub async fn ask(&self, query: &str) -> Result<f64, String> {
        match tokio::time::timeout(self.timeout, self.post(query)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "Prometheus did not answer within {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }

    async fn post(&self, query: &str) -> Result<f64, String> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(path) = &self.token_file {
            let token = tokio::fs::read_to_string(path).await.map_err(|e| {
                format!(
                    "cannot read [prometheus] bearer_token_file {}: {e}",
                    path.display()
                )
            })?;
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
        }
        let body = Full::new(Bytes::from(format!("query={}", form_encode(query))));
        let req = req.body(body).map_err(|e| e.to_string())?;
        let resp = self.http.request(req).await.map_err(|e| {
            format!(
                "cannot reach Prometheus at {}: {}",
                self.endpoint,
                cause(&e)
            )
        })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("Prometheus's answer broke off: {e}"))?
            .to_bytes();
        // Prometheus puts an error status's reason in the same JSON shape (400, 422, 503).
        match read_answer(&bytes) {
            Err(e) if !status.is_success() && e.contains("not Prometheus's JSON") => {
                Err(format!("Prometheus answered HTTP {status}"))
            }
            other => other,
        }
    }
}

/// The innermost error's text (hyper's outer one says only "client error (Connect)").
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    format!("{e}: {inner}")
}

/// `application/x-www-form-urlencoded` form of a value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_query_is_form_encoded() {
        assert_eq!(
            super::form_encode("sum(rate(x{a=\"b\"}[1m])) > 0.5"),
            "sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29%20%3E%200.5"
        );
    }
}
