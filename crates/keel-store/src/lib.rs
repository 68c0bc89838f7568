//! Keel's storage on redb: the Raft log ([`LogStore`]), the state machine
//! ([`StateMachineStore`]) for openraft 0.9's storage-v2 API, and the
//! snapshot format ([`snapshot`]). It knows nothing of HTTP or Raft
//! networking.
//!
//! A node's data directory holds `log.redb` (entries, vote, committed and
//! purged log ids), `state.redb` (one redb table per
//! [`keel_domain::Table`], plus the applied log id, membership and the name
//! of the current snapshot) and `snapshots/` (at most one current snapshot
//! file, plus temporary files that are removed at open).
//!
//! Durability, in one place (each fsync point repeats its own reason):
//! - a log append is fsynced before openraft is told it is flushed, so an
//!   entry counted towards a quorum is on that node's disk;
//! - the vote is fsynced before `save_vote` returns, so a node never votes
//!   twice in a term across a crash;
//! - applying entries is not fsynced: after a crash redb recovers its last
//!   durable commit, which stores the applied log id with the state it
//!   describes, and openraft re-applies the log from there;
//! - the log is only purged behind a snapshot, and a snapshot is reported
//!   to openraft only after a durable commit that covers the state it holds.
//!
//! Every stored record is checksummed and verified when read; log records
//! are all verified at [`open`], and every page of `state.redb` is checked
//! against redb's page checksums there. Corruption is reported as
//! [`StoreError::Corrupt`] with the file, the location and what to do,
//! never served. A damaged state is rebuilt with [`rebuild::rebuild_state`]
//! (`keel rebuild-state`).
#![deny(missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod error;
mod log_backend;
mod log_store;
pub mod rebuild;
mod redb_tables;
pub mod seed;
pub mod snapshot;
mod state_machine;

pub use error::{recovery_hint, StoreError, REBUILD_COMMAND, RECOVERY_HINT};
pub use log_store::{
    decode_log_record, encode_log_record, push_log_frame, read_log_frame, LogPage, LogStore,
    LOG_FRAME_RECORD_BYTES_MAX, LOG_RECORD_FORMAT_VERSION, LOG_WRITE_GROUP_MAX,
    LOG_WRITE_QUEUE_MAX, REPLICATION_READ_BYTES_MAX, REPLICATION_READ_ENTRIES_MAX,
};
pub use redb_tables::StateReader;
pub use state_machine::{
    SnapshotExport, StateMachineStore, APPLY_COMMANDS_PER_COMMIT_MAX, APPLY_COMMANDS_PER_FSYNC_MAX,
    APPLY_COMMITS_PER_FSYNC_MAX, DEBUG_INVARIANT_CHECK_ORDERS_MAX,
};

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

/// A callback that observes how long a storage operation took (metrics).
pub type Observer = Arc<dyn Fn(Duration) + Send + Sync>;

/// The log database's file name inside the data directory.
pub const LOG_FILE: &str = "log.redb";
/// The state database's file name inside the data directory.
pub const STATE_FILE: &str = "state.redb";
/// The snapshot directory's name inside the data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Opens (creating if needed) a node's storage in `data_dir`: `log.redb`,
/// `state.redb` and `snapshots/`. Every log record's checksum is verified on
/// the way and the state's metadata must decode; corruption is reported with
/// its file and location, never served.
pub fn open(data_dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let created = !data_dir.exists();
    std::fs::create_dir_all(data_dir).map_err(|e| StoreError::io(data_dir, e))?;
    let log = LogStore::open(&data_dir.join(LOG_FILE))?;
    let sm = StateMachineStore::open(&data_dir.join(STATE_FILE), &data_dir.join(SNAPSHOT_DIR))?;
    // fsync the directory (and, if it was just made, its parent): a file's
    // directory entry is only durable once its directory is fsynced, and
    // redb fsyncs the files' contents, not their names. Without this a
    // power loss right after the first start could lose `log.redb` whole,
    // with the vote and entries it had fsynced.
    state_machine::sync_dir(data_dir)?;
    if let Some(parent) = data_dir.parent().filter(|_| created) {
        state_machine::sync_dir(parent)?;
    }
    Ok((log, sm))
}
