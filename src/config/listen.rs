//! `[listen]`, `[admin]` and `[store]`: where the server listens and keeps its state.
//!
//! Owns: their raw shapes and positioned checks. Must not touch: what the server does with
//! them (`serve` binds and opens them).

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::check::Checker;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub(super) addr: Option<Spanned<String>>,
    pub(super) workers: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) addr: Option<Spanned<String>>,
    pub(super) token_file: Option<String>,
    /// Named operators and their roles (`control::tokens`); read and checked by `serve`.
    pub(super) tokens_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    /// Default `cutover-data`, beside the config file.
    pub(super) path: Option<String>,
}

impl Checker<'_> {
    /// `listen.addr` and `listen.workers` (default: one per core).
    pub(super) fn listen(&mut self, raw: Option<&RawListen>) -> (Option<SocketAddr>, usize) {
        let listen = match raw.and_then(|l| l.addr.as_ref()) {
            Some(addr) => self.addr(addr, "listen.addr"),
            None => {
                let at = self.text.find("[listen]").unwrap_or(0);
                self.missing(
                    at,
                    "listen.addr",
                    "missing: add `[listen]` with `addr = \"0.0.0.0:8080\"` (where users connect)",
                );
                None
            }
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = raw.and_then(|l| l.workers.as_ref());
        let workers = self.count(workers, "listen.workers", 1, 256, cores as u64) as usize;
        (listen, workers)
    }

    /// `admin.addr` (default 127.0.0.1:9900).
    pub(super) fn admin(&mut self, raw: Option<&RawAdmin>) -> Option<SocketAddr> {
        match raw.and_then(|a| a.addr.as_ref()) {
            Some(a) => self.addr(a, "admin.addr"),
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9900))),
        }
    }
}
