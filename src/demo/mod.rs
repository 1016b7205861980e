//! `cutover demo` and the simulated environments it (and the tests) run against.
//!
//! Owns: [`upstream`], a real HTTP/WebSocket server that plays an environment with tunable
//! faults and capacity. Must not touch: the proxy's internals — simulated environments and
//! users talk to cutover only over loopback sockets, like real ones would.

pub mod upstream;
