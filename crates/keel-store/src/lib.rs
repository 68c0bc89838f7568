//! Keel's storage on redb: the Raft log ([`LogStore`]) and the state machine
//! ([`StateMachineStore`]) for openraft 0.9's storage-v2 API, and the
//! snapshot format. It knows nothing of HTTP or Raft networking.
//!
//! Durability, in one place:
//! - a log append is fsynced before openraft is told it is flushed, so an
//!   entry counted towards a quorum is on that node's disk;
//! - the vote is fsynced before `save_vote` returns;
//! - applying entries to the state machine is not fsynced: after a crash redb
//!   recovers its last durable commit and openraft re-applies the log from
//!   there, and the log is never purged past a snapshot, which is only taken
//!   after a durable commit of the state.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::{AnyError, StorageError};

mod log_store;
mod redb_tables;
mod snapshot;
mod state_machine;

pub use log_store::LogStore;
pub use redb_tables::StateReader;
pub use state_machine::StateMachineStore;

/// A node's id in the cluster.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Keel's Raft type configuration: an entry carries a batch of commands,
    /// its response is one result per command.
    pub TypeConfig:
        D = keel_domain::Batch,
        R = Vec<keel_domain::Applied>,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime
);

/// A callback that observes how long a storage operation took.
pub type Observer = Arc<dyn Fn(Duration) + Send + Sync>;

const RECOVERY_HINT: &str =
    "the node refuses to serve it; wipe this node's data directory and let it rejoin from its peers (or restore from a backup)";

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// redb reported an error.
    #[error("database {path}: {detail}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        detail: String,
    },
    /// Stored data failed its checksum or does not decode.
    #[error("corrupt data in {file} at {location}: {detail}; {RECOVERY_HINT}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Where in it (a log index, a table and key).
        location: String,
        /// What is wrong.
        detail: String,
    },
}

impl StoreError {
    pub(crate) fn db(path: &Path, e: impl std::fmt::Display) -> Self {
        StoreError::Db {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }
    }
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub(crate) fn any(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

pub(crate) fn sm_write_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    crate::se::write_state_machine(any(e))
}

pub(crate) fn sm_read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    crate::se::read_state_machine(any(e))
}

/// Opens (creating if needed) a node's storage in `data_dir`: `log.redb`,
/// `state.redb` and `snapshots/`. Every log record is verified on the way;
/// corruption is reported with its location, never served.
pub fn open(data_dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|e| StoreError::io(data_dir, e))?;
    let log = LogStore::open(&data_dir.join("log.redb"))?;
    let sm = StateMachineStore::open(&data_dir.join("state.redb"), &data_dir.join("snapshots"))?;
    Ok((log, sm))
}

/// Constructors of openraft storage errors by subject and verb.
pub(crate) mod se {
    use openraft::{AnyError, StorageError, StorageIOError};

    use crate::NodeId;

    pub(crate) fn write_logs(e: AnyError) -> StorageError<NodeId> {
        StorageIOError::write_logs(e).into()
    }
    pub(crate) fn read_logs(e: AnyError) -> StorageError<NodeId> {
        StorageIOError::read_logs(e).into()
    }
    pub(crate) fn write_vote(e: AnyError) -> StorageError<NodeId> {
        StorageIOError::write_vote(e).into()
    }
    pub(crate) fn read_vote(e: AnyError) -> StorageError<NodeId> {
        StorageIOError::read_vote(e).into()
    }
    pub(crate) fn write_state_machine(e: AnyError) -> StorageError<NodeId> {
        StorageIOError::write_state_machine(e).into()
    }
    pub(crate) fn read_state_machine(e: AnyError) -> StorageError<NodeId> {
        StorageIOError::read_state_machine(e).into()
    }
    pub(crate) fn write_snapshot(_: Option<()>, e: AnyError) -> StorageError<NodeId> {
        StorageIOError::write_snapshot(None, e).into()
    }
    pub(crate) fn read_snapshot(_: Option<()>, e: AnyError) -> StorageError<NodeId> {
        StorageIOError::read_snapshot(None, e).into()
    }
}
