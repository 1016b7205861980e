//! Start three simulated environments (old, new, fallback) on loopback for `examples/cutover.toml`:
//!
//! ```sh
//! cargo run --example upstream            # old :9001, new :9002, fallback :9003
//! ```
//!
//! Each answers JSON naming itself, `/healthz`, and WebSocket echo on `/ws`.

use cutover::demo::upstream::SimEnv;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let base: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(9001);
    let mut envs = Vec::new();
    for (i, name) in ["old", "new", "fallback"].iter().enumerate() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], base + i as u16));
        let env = SimEnv::start(name, addr).await?;
        println!("{name:<9} on http://{}", env.addr);
        envs.push(env);
    }
    println!("Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    for env in &envs {
        env.stop();
    }
    Ok(())
}
