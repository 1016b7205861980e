//! The routing core: which environment a request's user belongs to.
//!
//! Owns: user-key extraction ([`key`]), the stable bucket hash ([`hash`]), the routing
//! snapshot ([`table`]) that the data path reads once per request, and the cell that shares
//! it ([`publish`]). Pure code apart from [`publish`]'s change signal: no sockets, no clocks,
//! no store, and tokio only in [`publish`] (tests/layering.rs checks). The orchestrator builds
//! new tables; the proxy only reads them.
//!
//! The rule: a user's bucket is a stable hash of salt + key into 0..10000; the user
//! goes to NEW when `bucket < weight` (weight in basis points). Because a user's bucket never
//! changes for a given salt, raising the weight only adds users to NEW and lowering it only
//! returns users to OLD.

pub mod hash;
pub mod key;
pub mod publish;
pub mod table;

pub use hash::{bucket, salt_seed, BUCKETS};
pub use key::{KeySource, KeySourceError, UserKey};
pub use publish::Router;
pub use table::{Env, RoutingTable, Weight};
