//! Herd protection (docs/protection.md): the decisions that keep load the system makes itself
//! off the envs.
//!
//! Owns: admission control per env ([`admission`]) with its adaptive limit ([`gradient`]),
//! new-session rates ([`rate`]) and the retry budget ([`budget`]).
//!
//! Must not touch: requests, answers or the metrics of requests — the handler asks, answers
//! and records; this room only decides and publishes the limits it uses.

pub(crate) mod admission;
pub(crate) mod budget;
pub(crate) mod gradient;
pub(crate) mod rate;
