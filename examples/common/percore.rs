//! What the benchmark's yardstick proxies share (`bare_proxy`, `raw_proxy`): their command
//! line and their shape, one single-threaded tokio runtime per core, each with its own
//! SO_REUSEPORT listener.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::{TcpSocket, TcpStream};

/// `LISTEN OLD NEW` from the command line, skipping the flags in `flags`.
pub fn addrs(flags: &[&str]) -> Result<[SocketAddr; 3], Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| !flags.contains(&a.as_str()));
    let mut next = || -> Result<SocketAddr, Box<dyn std::error::Error + Send + Sync>> {
        Ok(args.next().ok_or("LISTEN OLD NEW")?.parse()?)
    };
    Ok([next()?, next()?, next()?])
}

/// Accept on `listen` on every core and spawn `serve(stream, peer)` for each connection (on
/// the runtime that accepted it, with `TCP_NODELAY` set); runs until every thread fails.
pub fn serve_per_core<F, Fut>(listen: SocketAddr, serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || -> std::io::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let sock = TcpSocket::new_v4()?;
                    sock.set_reuseport(true)?;
                    sock.set_reuseaddr(true)?;
                    sock.bind(listen)?;
                    let listener = sock.listen(4096)?;
                    loop {
                        let (stream, peer) = listener.accept().await?;
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve(stream, peer));
                    }
                })
            })
        })
        .collect();
    for t in threads {
        if let Ok(Err(e)) = t.join() {
            eprintln!("a serving thread failed: {e}");
        }
    }
}
