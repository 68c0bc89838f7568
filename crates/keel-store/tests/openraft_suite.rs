//! openraft's own storage test suite (`openraft::testing::Suite`), run
//! against the redb stores, each case in a fresh temporary data directory.
#![allow(clippy::unwrap_used)] // Test file: a failed unwrap is a failed test.

use keel_store::{LogStore, NodeId, StateMachineStore, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use tempfile::TempDir;

struct TempStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let (log, sm) = keel_store::open(dir.path())
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(TempStores).unwrap();
}
