//! The file under the Raft log: redb's own file backend, through which the
//! deliberate bug `ack-before-fsync` (`keel_domain::test_bugs`) skips the
//! fsync, so the log's commits reach the OS (and survive a killed process)
//! but not the disk (and are lost with the power). Without that bug every
//! call goes straight through.

use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::path::Path;

use keel_domain::test_bugs::{on, TestBug};
use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// redb's file backend, whose fsync the `ack-before-fsync` bug skips.
#[derive(Debug)]
pub struct LogBackend {
    file: FileBackend,
}

impl LogBackend {
    /// Opens (creating if needed) the file at `path` as redb's own
    /// `Builder::create` would.
    pub fn open(path: &Path) -> Result<Self, redb::DatabaseError> {
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Self {
            file: FileBackend::new(file)?,
        })
    }
}

impl StorageBackend for LogBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        if on(TestBug::AckBeforeFsync) {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.file.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}
