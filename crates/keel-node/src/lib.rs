//! A Keel node: openraft wiring over `keel-store`, the proposer that batches
//! commands into Raft entries, internal RPC, and the public HTTP API.
//! Business rules live in `keel-domain`; this crate moves commands to the
//! log and results back to clients.
#![deny(missing_docs)]
// Handlers return `Response`/`Problem` errors by design (axum's idiom); they are
// built once per refused request, so their size costs nothing that matters.
#![allow(clippy::result_large_err)]

pub mod business;
pub mod clock;
pub mod config;
pub mod election;
pub mod export;
pub mod http;
pub mod launch;
pub mod metrics;
pub mod node;
pub mod proposer;
pub mod rpc;
pub mod rpc_server;
pub mod server;
pub mod signals;
pub mod watch;
pub mod windows;

pub use config::NodeConfig;
pub use server::{run, NodeError};
