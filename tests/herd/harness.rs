//! A proxy in front of three simulated envs, with per-env config lines, and raw HTTP/1.1
//! helpers whose connections are exactly the ones the test opens.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cutover::config::Config;
use cutover::demo::upstream::SimEnv;
use cutover::metrics::Metrics;
use cutover::proxy::Proxy;
use cutover::router::{Router, RoutingTable, Weight};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

pub const SALT: &str = "herd-salt";

pub struct Herd {
    pub addr: SocketAddr,
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    pub proxy: Arc<Proxy>,
    pub old: SimEnv,
    pub new: SimEnv,
    pub fallback: SimEnv,
    _stop: oneshot::Sender<()>,
}

/// Per-env extra lines (inside `[envs.NAME]`) and top-level extra tables.
#[derive(Default)]
pub struct Setup<'a> {
    pub weight: f64,
    pub old: &'a str,
    pub new: &'a str,
    pub fallback: &'a str,
    pub extra: &'a str,
    /// Replace FALLBACK's address (e.g. a dead port).
    pub fallback_addr: Option<SocketAddr>,
    pub old_addr: Option<SocketAddr>,
}

impl Herd {
    pub async fn start(s: Setup<'_>) -> Herd {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let old = SimEnv::start("old", any).await.expect("old");
        let new = SimEnv::start("new", any).await.expect("new");
        let fallback = SimEnv::start("fallback", any).await.expect("fallback");
        let text = format!(
            r#"
[listen]
addr = "127.0.0.1:0"
[envs.old]
upstreams = ["{}"]
request_timeout = "10s"
{}
[envs.new]
upstreams = ["{}"]
request_timeout = "10s"
{}
[envs.fallback]
upstreams = ["{}"]
request_timeout = "10s"
{}
{}
"#,
            s.old_addr.unwrap_or(old.addr),
            s.old,
            new.addr,
            s.new,
            s.fallback_addr.unwrap_or(fallback.addr),
            s.fallback,
            s.extra
        );
        let cfg = Config::parse(&text, "herd.toml").expect("config");
        let router = Arc::new(Router::new(RoutingTable::new(
            Weight::from_percent(s.weight),
            SALT,
        )));
        let metrics = Arc::new(Metrics::new());
        let proxy = Arc::new(Proxy::new(&cfg, router.clone(), metrics.clone()));
        let listener = cutover::proxy::bind(any).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(cutover::proxy::serve(
            listener,
            proxy.clone(),
            Duration::from_secs(2),
            async {
                let _ = stop_rx.await;
            },
        ));
        Herd {
            addr,
            router,
            metrics,
            proxy,
            old,
            new,
            fallback,
            _stop: stop,
        }
    }
}

/// One HTTP/1.1 connection of our own.
pub struct Conn(SendRequest<Empty<Bytes>>);

/// What came back: status, a few headers, the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Conn(send))
    }

    /// GET `path` as `user` with the given `accept` (if any).
    pub async fn get(
        &mut self,
        path: &str,
        user: &str,
        accept: Option<&str>,
    ) -> Result<Answer, hyper::Error> {
        self.0.ready().await?;
        let mut req = http::Request::get(path)
            .header("host", "herd.test")
            .header("x-user-id", user);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let req = req.body(Empty::new()).expect("request");
        let resp = self.0.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub fn is_open(&self) -> bool {
        !self.0.is_closed()
    }
}

/// One request on a connection of its own.
pub async fn get_once(
    addr: SocketAddr,
    path: &str,
    user: &str,
    accept: Option<&str>,
) -> Result<Answer, String> {
    let mut c = Conn::open(addr).await.map_err(|e| e.to_string())?;
    c.get(path, user, accept).await.map_err(|e| e.to_string())
}

/// Raise the open-files soft limit to the hard limit (a thousand tunnels are four thousand
/// sockets in this one process); returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
    let limit = lim.rlim_cur as u64;
    limit
}
