//! Open N idle WebSockets through a proxy and hold them (`bench/ws-idle.sh`):
//!
//! ```sh
//! cargo run --release --example ws_idle -- 127.0.0.1:8080 10000 /ws
//! ```
//!
//! Each connection does the HTTP/1.1 upgrade by hand (its own `x-user-id`), checks the `101`,
//! and then stays open without a byte sent. When all are open it prints `open N` (or
//! `failed K: reason` and exits 1), then holds them until its standard input closes or gives a
//! line, and exits (closing them all). One single-threaded runtime, at most 100 handshakes at
//! a time: the client's own cost is not what is measured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const AT_ONCE: usize = 100;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

async fn open(addr: SocketAddr, path: &str, user: usize) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         x-user-id: idle-{user}\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err(format!(
                "no answer head: {:?}",
                String::from_utf8_lossy(&head)
            ));
        }
        head.extend_from_slice(&buf[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(format!("not 101: {:?}", String::from_utf8_lossy(&head)));
    }
    Ok(s)
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(n)) = (
        args.next().and_then(|a| a.parse::<SocketAddr>().ok()),
        args.next().and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: ws_idle ADDR N [PATH]");
        return std::process::ExitCode::from(2);
    };
    let path = args.next().unwrap_or_else(|| "/ws".to_owned());
    // One descriptor per WebSocket, and a few of our own.
    let files = cutover::rlimit::raise_open_files(u64::MAX);
    if files.is_some_and(|f| f.soft < n as u64 + 64) {
        eprintln!("ws_idle: the open-file limit {files:?} is too low for {n} WebSockets");
        return std::process::ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws_idle: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    rt.block_on(async move {
        let gate = Arc::new(Semaphore::new(AT_ONCE));
        let path: Arc<str> = path.into();
        let tasks: Vec<_> = (0..n)
            .map(|user| {
                let (gate, path) = (gate.clone(), path.clone());
                tokio::spawn(async move {
                    let _slot = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, open(addr, &path, user))
                        .await
                        .map_err(|_| "handshake timed out".to_owned())?
                })
            })
            .collect();
        let mut held = Vec::with_capacity(n);
        let mut failed = Vec::new();
        for t in tasks {
            match t.await {
                Ok(Ok(s)) => held.push(s),
                Ok(Err(e)) => failed.push(e),
                Err(e) => failed.push(e.to_string()),
            }
        }
        if !failed.is_empty() {
            println!("failed {}: {}", failed.len(), failed[0]);
            return std::process::ExitCode::from(1);
        }
        println!("open {}", held.len());
        let mut line = String::new();
        let _ = tokio::io::BufReader::new(tokio::io::stdin())
            .read_line(&mut line)
            .await;
        drop(held);
        std::process::ExitCode::SUCCESS
    })
}
