//! Keel's backups of a running cluster, over the repository in
//! `keel-backup-repo`.
//!
//! - [`source`]: reads a running cluster through the node's backup
//!   endpoints (never around them): a consistent snapshot stream and the
//!   committed log after an index, at a [`Pace`];
//! - [`job`]: takes full, incremental, differential and cold (a stopped
//!   node's data directory) backups into a [`Repository`];
//! - [`schedule`]: runs jobs on a timer, on events and as a continuous
//!   archive of the log;
//! - [`restore`]: replays a chain of backups into a fresh data directory
//!   through `keel-store`'s seed, to a point in time or an index, and
//!   checks the result's digest and the domain's invariants before it
//!   becomes visible.
//!
//! Log records travel in the log's own checksummed format ([`frames`]), so
//! a restored log is byte-for-byte what the cluster committed. The
//! repository's types are re-exported here, so a caller needs one crate.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod frames;
pub mod job;
pub mod pace;
mod queue;
pub mod restore;
pub mod schedule;
pub mod source;

pub use error::JobError;
pub use keel_backup_repo::*;
pub use pace::Pace;
pub use source::{NodeSource, SourceError};
