//! openraft's own storage test suite (`openraft::testing::Suite`), run
//! against the redb stores, each case in a fresh temporary data directory.
//!
//! The suite drives the log on its own: it purges entries no state ever
//! applied. A node's log (`keel_store::open`) purges only behind what its
//! state holds durably and would wait for that state here, so the suite
//! gets the two stores opened apart, the log without that gate. The gate
//! has its own tests (`keel_store`'s unit tests).
#![allow(clippy::unwrap_used)] // Test file: a failed unwrap is a failed test.

use keel_store::{LogStore, NodeId, StateMachineStore, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use tempfile::TempDir;

struct TempStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let io = |e: keel_store::StoreError| StorageIOError::write_logs(AnyError::new(&e));
        let log = LogStore::open(&dir.path().join("log.redb")).map_err(io)?;
        let sm = StateMachineStore::open(
            &dir.path().join("state.redb"),
            &dir.path().join("snapshots"),
        )
        .map_err(io)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(TempStores).unwrap();
}
