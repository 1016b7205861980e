//! A small fault proxy between the cutover proxy and a simulated env: it passes traffic, or
//! resets, black-holes, slows or flaps connections on command. Loopback only.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// What the fault proxy does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Forward both ways.
    Pass = 0,
    /// Accept, then reset at once (a process that died behind a live socket).
    Reset = 1,
    /// Accept and read, never answer (a hung process).
    BlackHole = 2,
    /// Wait `delay` before forwarding (a slow one).
    Slow = 3,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::Reset,
            2 => Mode::BlackHole,
            3 => Mode::Slow,
            _ => Mode::Pass,
        }
    }
}

pub struct Fault {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    pub accepted: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Fault {
    /// A fault proxy in front of `target`, passing traffic.
    pub async fn start(target: SocketAddr) -> Fault {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (m, d, a) = (mode.clone(), delay_ms.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                a.fetch_add(1, SeqCst);
                let mode = Mode::from_u8(m.load(SeqCst));
                let delay = Duration::from_millis(d.load(SeqCst));
                tokio::spawn(handle(client, target, mode, delay, m.clone()));
            }
        });
        Fault {
            addr,
            mode,
            delay_ms,
            accepted,
            tasks: vec![task],
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, SeqCst);
    }

    /// Alternate between passing and resetting every `period` (a flapping upstream).
    pub fn flap(&mut self, period: Duration) {
        let mode = self.mode.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let next = match Mode::from_u8(mode.load(SeqCst)) {
                    Mode::Pass => Mode::Reset,
                    _ => Mode::Pass,
                };
                mode.store(next as u8, SeqCst);
            }
        }));
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn handle(
    mut client: TcpStream,
    target: SocketAddr,
    mode: Mode,
    delay: Duration,
    now: Arc<AtomicU8>,
) {
    match mode {
        Mode::Reset => {
            let _ = client.set_zero_linger();
        }
        Mode::BlackHole => {
            let mut sink = [0u8; 4096];
            while let Ok(n) = client.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        Mode::Pass | Mode::Slow => {
            if mode == Mode::Slow {
                tokio::time::sleep(delay).await;
            }
            let Ok(mut up) = TcpStream::connect(target).await else {
                return;
            };
            // A switch to Reset also kills connections already open (pooled ones included).
            let reset = async {
                while Mode::from_u8(now.load(SeqCst)) != Mode::Reset {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut up) => {}
                _ = reset => {
                    let _ = client.set_zero_linger();
                }
            }
        }
    }
}

/// A listener that never accepts, with its backlog full: new connects get no SYN-ACK (the
/// kernel drops their SYNs), like a host whose packets vanish. Keep it alive while in use.
pub struct SynBlackHole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<std::net::TcpStream>,
}

impl SynBlackHole {
    pub async fn start() -> SynBlackHole {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let listener = socket.listen(1).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let mut queued = Vec::new();
        // Fill the accept queue until a connect no longer completes.
        let full = tokio::task::spawn_blocking(move || {
            for _ in 0..64 {
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                    Ok(s) => queued.push(s),
                    Err(_) => return Some(queued),
                }
            }
            None
        })
        .await
        .expect("join")
        .expect("the accept queue never filled");
        SynBlackHole {
            addr,
            _listener: listener,
            _queued: full,
        }
    }
}
