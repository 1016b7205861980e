//! Requests straight to an env's upstreams, outside the pools: what the probes and the
//! pre-step checks send, so that they reach an env exactly as users' requests do (TLS with the
//! env's trust and SNI for `https://`, the env's `host_header`) but on a connection of their
//! own, made for the one request.
//!
//! Owns: [`Direct`] (one configured upstream as seen from outside the pools: its current
//! addresses and a GET on one of them). Must not touch: the pools, metrics or what an answer
//! means (the caller judges it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::connect::Link;
use crate::config::{EnvConfig, UpstreamConfig};
use crate::resolve::{lookup, Host, Hosts, Target};

/// One configured upstream of an env, reached outside the pools.
#[derive(Debug, Clone)]
pub struct Direct {
    upstream: UpstreamConfig,
    link: Arc<Link>,
    /// The `Host` sent: the env's `host_header`, else the upstream's host (with its port
    /// unless it is the scheme's default).
    host: Option<HeaderValue>,
    /// `[resolve] hosts_file`, read at each lookup.
    hosts_file: Option<PathBuf>,
}

impl Direct {
    /// Every configured upstream of `env`.
    pub fn of(env: &EnvConfig, hosts_file: Option<&std::path::Path>) -> Vec<Direct> {
        env.upstreams
            .iter()
            .map(|upstream| {
                let host = env.host_header.clone().or_else(|| {
                    let target = &upstream.target;
                    let default = if target.tls { 443 } else { 80 };
                    let text = match target.port == default {
                        true => target.host.to_string(),
                        false => format!("{}:{}", target.host, target.port),
                    };
                    HeaderValue::from_str(&text).ok()
                });
                Direct {
                    upstream: upstream.clone(),
                    link: Link::new(env, upstream),
                    host,
                    hosts_file: hosts_file.map(Into::into),
                }
            })
            .collect()
    }

    pub fn target(&self) -> &Target {
        &self.upstream.target
    }

    /// The addresses it has when the config was read.
    pub fn first_addrs(&self) -> &[SocketAddr] {
        &self.upstream.addrs
    }

    /// Its addresses now: an IP address as it is, a name looked up again (hosts file first);
    /// `None` when the lookup (or the hosts file) fails.
    pub async fn lookup(&self) -> Option<Vec<SocketAddr>> {
        if matches!(self.upstream.target.host, Host::Ip(_)) {
            return Some(self.upstream.addrs.to_vec());
        }
        let hosts = match self.hosts_file.as_deref().map(Hosts::load) {
            Some(Ok(h)) => Some(h),
            Some(Err(_)) => return None,
            None => None,
        };
        lookup(&self.upstream.target, hosts.as_ref()).await.ok()
    }

    /// GET `path` on `addr`, on a new connection, in the env's protocol (HTTP/2 for an h2
    /// env: it may speak nothing else). The caller bounds the time it takes.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<Response<Incoming>, String> {
        let io = TokioIo::new(self.link.connect(addr).await.map_err(|e| e.to_string())?);
        let mut req = Request::get(path)
            .header(header::USER_AGENT, "cutover")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("not a valid request path `{path}`: {e}"))?;
        if self.link.h2 {
            let scheme = if self.link.is_tls() { "https" } else { "http" };
            let authority = self.host.as_ref().and_then(|h| h.to_str().ok());
            let uri = format!("{scheme}://{}{path}", authority.unwrap_or("localhost"));
            *req.uri_mut() = uri
                .parse()
                .map_err(|e| format!("not a valid request path `{path}`: {e}"))?;
            let (mut tx, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            // Ends once the answer has been read and `tx` dropped.
            tokio::spawn(conn);
            return tx.send_request(req).await.map_err(|e| e.to_string());
        }
        let (mut tx, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        if let Some(host) = &self.host {
            req.headers_mut().insert(header::HOST, host.clone());
        }
        tx.send_request(req).await.map_err(|e| e.to_string())
    }
}
