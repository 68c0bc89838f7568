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
mod purge_gate;
pub mod rebuild;
pub mod recover;
mod redb_tables;
pub mod seed;
pub mod snapshot;
mod state_machine;
mod sync;

pub use error::{recovery_hint, StoreError, REBUILD_COMMAND, RECOVERY_HINT};
pub use log_store::{
    decode_log_record, encode_log_record, push_log_frame, read_log_frame, LogPage, LogStore,
    LOG_FRAME_RECORD_BYTES_MAX, LOG_RECORD_FORMAT_VERSION, LOG_WRITE_GROUP_MAX,
    LOG_WRITE_QUEUE_MAX, REPLICATION_READ_BYTES_MAX, REPLICATION_READ_ENTRIES_MAX,
};
pub use purge_gate::PURGE_AWAIT_STATE_MAX;
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

/// Suffix of a database file being created (see [`create_durably`]); one
/// left by a crash is removed at the next start.
const CREATING_SUFFIX: &str = "creating";

/// Creates an empty redb database at `path` if there is none, so that a
/// power loss at any moment leaves either no database or a whole one.
/// redb sizes a new file before it writes and fsyncs its header, and it
/// refuses to open a non-empty file without its magic number ("not a redb
/// database"); a crash in between, seen once under the chaos suite's power
/// loss right after a node's first start, would keep the node down for
/// good. So the file is built under a temporary name, committed durably,
/// renamed into place, and its directory fsynced to make the name durable.
fn create_durably(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let tmp = path.with_extension(CREATING_SUFFIX);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(&tmp, e)),
    }
    {
        let db = redb::Database::create(&tmp).map_err(|e| StoreError::db(&tmp, e))?;
        // Durability::Immediate, redb's default: the commit fsyncs the file.
        let txn = db.begin_write().map_err(|e| StoreError::db(&tmp, e))?;
        txn.commit().map_err(|e| StoreError::db(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => state_machine::sync_dir(dir),
        None => state_machine::sync_dir(Path::new(".")),
    }
}

/// Opens (creating if needed) a node's storage in `data_dir`: `log.redb`,
/// `state.redb` and `snapshots/`. Every log record's checksum is verified on
/// the way and the state's metadata must decode; corruption is reported with
/// its file and location, never served.
pub fn open(data_dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let created = !data_dir.exists();
    std::fs::create_dir_all(data_dir).map_err(|e| StoreError::io(data_dir, e))?;
    create_durably(&data_dir.join(LOG_FILE))?;
    create_durably(&data_dir.join(STATE_FILE))?;
    let mut log = LogStore::open(&data_dir.join(LOG_FILE))?;
    let sm = StateMachineStore::open(&data_dir.join(STATE_FILE), &data_dir.join(SNAPSHOT_DIR))?;
    // The log is purged only behind what the state holds durably.
    log.purge_behind(sm.purge_gate());
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

    use super::*;

    /// What a crash inside redb's creation of a file leaves: the file
    /// sized, its header never written.
    fn zeros(path: &Path) {
        std::fs::write(path, vec![0u8; 1 << 20]).unwrap();
    }

    #[test]
    fn a_database_half_created_by_a_crash_is_replaced_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node");
        std::fs::create_dir_all(&data).unwrap();
        zeros(&data.join("state.creating"));
        zeros(&data.join("log.creating"));
        let (log, sm) = open(&data).unwrap();
        drop((log, sm));
        assert!(!data.join("state.creating").exists());
        assert!(!data.join("log.creating").exists());
        assert!(data.join(STATE_FILE).exists() && data.join(LOG_FILE).exists());
        // Opens again, as the same database.
        open(&data).unwrap();
    }

    #[test]
    fn a_database_half_created_in_place_cannot_be_opened() {
        // Why databases are created under a temporary name: the same
        // half-created file under the real name keeps the node down.
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node");
        std::fs::create_dir_all(&data).unwrap();
        zeros(&data.join(STATE_FILE));
        let e = open(&data).err().unwrap().to_string();
        assert!(e.contains("magic number"), "{e}");
    }

    fn blank(index: u64) -> openraft::Entry<TypeConfig> {
        openraft::Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Blank,
        }
    }

    /// How long a purge is seen waiting before the state catches up.
    const STILL_WAITING: std::time::Duration = std::time::Duration::from_millis(300);

    #[tokio::test]
    async fn the_log_is_purged_only_behind_what_the_state_holds_durably() {
        use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
        let dir = tempfile::tempdir().unwrap();
        let (log, mut sm) = open(&dir.path().join("node")).unwrap();
        let upto = blank(2).log_id;
        // openraft asks for this purge as it hands a received snapshot to
        // the state machine, without waiting for the install.
        let mut purging = tokio::spawn({
            let mut log = log.clone();
            async move { log.purge(upto).await }
        });
        // Applied, but not yet durable: the purge still waits.
        sm.apply(vec![blank(0), blank(1), blank(2)]).await.unwrap();
        assert!(
            tokio::time::timeout(STILL_WAITING, &mut purging)
                .await
                .is_err(),
            "the log was purged past a state that is not on disk"
        );
        assert_eq!(log.purged().unwrap(), None);
        // A snapshot's fsynced commit holds index 2: the purge goes ahead.
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        tokio::time::timeout(PURGE_AWAIT_STATE_MAX, purging)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(log.purged().unwrap(), Some(upto));
    }

    #[tokio::test]
    async fn a_purge_waiting_for_a_failed_install_fails_and_purges_nothing() {
        use openraft::storage::{RaftLogStorage, RaftStateMachine};
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let (log, mut sm) = open(&dir.path().join("node")).unwrap();
        let upto = blank(9).log_id;
        let purging = tokio::spawn({
            let mut log = log.clone();
            async move { log.purge(upto).await }
        });
        let mut received = sm.begin_receiving_snapshot().await.unwrap();
        received.write_all(b"not a snapshot").await.unwrap();
        let meta = openraft::SnapshotMeta {
            last_log_id: Some(upto),
            last_membership: Default::default(),
            snapshot_id: "damaged".into(),
        };
        sm.install_snapshot(&meta, received).await.unwrap_err();
        let refused = tokio::time::timeout(STILL_WAITING, purging)
            .await
            .expect("the purge gave up with the install")
            .unwrap()
            .unwrap_err();
        assert!(refused.to_string().contains("install"), "{refused}");
        assert_eq!(log.purged().unwrap(), None);
    }
}
