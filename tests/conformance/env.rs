//! The env of the suite: a raw HTTP/1.1 server that records every request exactly as it
//! arrived (method, target, every header in order, the decoded body) and answers each with
//! the scripted bytes its path names (`/answer/<name>`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::common::raw::{next_head, read_chunked, read_more};
use crate::shapes;

/// One request as the env received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Every header, names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(k, _)| k == name).count()
    }
}

pub struct Env {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Env {
    pub async fn start() -> Env {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s, log.clone()));
            }
        });
        Env { addr, seen }
    }

    /// Everything received so far, and forget it.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().expect("log"))
    }
}

async fn serve(mut s: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        let Some((head, start)) = next_head(&mut s, &mut buf).await else {
            return;
        };
        buf.drain(..start);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_owned();
        let target = first.next().unwrap_or("").to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut seen = Seen {
            method,
            target,
            headers,
            body: Vec::new(),
        };
        if seen.header("transfer-encoding").is_some() {
            match read_chunked(&mut s, &mut buf).await {
                Some(body) => seen.body = body,
                None => return,
            }
        } else if let Some(n) = seen
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            while buf.len() < n {
                if !read_more(&mut s, &mut buf).await {
                    return;
                }
            }
            seen.body = buf.drain(..n).collect();
        }
        let name = seen.target.rsplit('/').next().unwrap_or("").to_owned();
        log.lock().expect("log").push(seen);
        let (answer, close) = shapes::answer(&name);
        if s.write_all(answer).await.is_err() || close {
            let _ = s.shutdown().await;
            return;
        }
    }
}
