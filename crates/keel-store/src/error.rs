//! The crate's error type and its conversions to openraft's storage errors.

use std::path::{Path, PathBuf};

use openraft::{AnyError, ErrorSubject, ErrorVerb, LogId, StorageError, StorageIOError};

use crate::{NodeId, SNAPSHOT_DIR, STATE_FILE};

/// What an operator should do about corrupt data in the log (or any file
/// but the state's). Part of [`StoreError::Corrupt`] messages, so the log
/// line says it.
pub const RECOVERY_HINT: &str =
    "the node refuses to serve it: wipe this node's data directory and \
     let it rejoin from its peers (or restore it from a backup)";

/// The command that rebuilds a damaged state from the node's own log and
/// snapshot ([`crate::rebuild::rebuild_state`]).
pub const REBUILD_COMMAND: &str = "keel rebuild-state --data-dir";

/// What an operator should do about corrupt data in `file`: a damaged
/// state (`state.redb`, or the current snapshot file it names) is rebuilt
/// in place; anything else (the log, a snapshot being received) gets
/// [`RECOVERY_HINT`].
pub fn recovery_hint(file: &Path) -> String {
    let in_snapshots = file
        .parent()
        .is_some_and(|d| d.file_name().is_some_and(|n| n == SNAPSHOT_DIR));
    let current_snapshot = file.extension().is_some_and(|x| x == "snap");
    let data_dir = if in_snapshots && current_snapshot {
        file.parent().and_then(Path::parent)
    } else if file.file_name().is_some_and(|n| n == STATE_FILE) {
        file.parent()
    } else {
        None
    };
    match data_dir {
        Some(dir) => format!(
            "the node refuses to serve it: stop the node, run `{REBUILD_COMMAND} {}` \
             (it keeps the damaged file aside and rebuilds the state from this node's \
             own log and snapshot; the peers send what is missing) and start it again",
            dir.display()
        ),
        None => RECOVERY_HINT.to_owned(),
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// redb reported an error that is not corruption (a full disk shows up
    /// as [`StoreError::Io`], damaged pages as [`StoreError::Corrupt`]).
    #[error("database {path}: {detail}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        detail: String,
    },
    /// Another process holds the database open.
    #[error(
        "database {path} is already open in another process \
         (is another keel node using this data directory?)"
    )]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// Stored data failed its checksum, does not decode, or breaks a
    /// structural rule (a gap in the log, an unordered snapshot).
    #[error(
        "corrupt data in {file} at {location}: {detail}; {}",
        recovery_hint(file)
    )]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Where in it: a log index, a table and key, a snapshot section.
        location: String,
        /// What is wrong.
        detail: String,
    },
    /// The caller refused what it was loading before it was committed (its
    /// source failed a check of its own); nothing was changed.
    #[error("{source_name}: refused before commit: {detail}")]
    Refused {
        /// Where the data came from.
        source_name: PathBuf,
        /// Why it was refused.
        detail: String,
    },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: &Path,
        location: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        StoreError::Corrupt {
            file: file.to_path_buf(),
            location: location.into(),
            detail: detail.into(),
        }
    }

    /// Classifies any redb error on `path`: redb's own corruption reports
    /// stay corruption, I/O stays I/O, a held lock is [`StoreError::InUse`].
    pub(crate) fn db(path: &Path, e: impl Into<redb::Error>) -> Self {
        match e.into() {
            redb::Error::Corrupted(detail) => {
                Self::corrupt(path, "database pages", format!("redb: {detail}"))
            }
            redb::Error::Io(source) => Self::io(path, source),
            redb::Error::DatabaseAlreadyOpen => StoreError::InUse {
                path: path.to_path_buf(),
            },
            other => StoreError::Db {
                path: path.to_path_buf(),
                detail: other.to_string(),
            },
        }
    }

    /// A failure that is not redb's, on `path` (a lost worker thread).
    pub(crate) fn other(path: &Path, detail: impl std::fmt::Display) -> Self {
        StoreError::Db {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        }
    }

    /// True when the data on disk is damaged (as opposed to the disk or
    /// the process failing): the node must not serve it.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }

    fn any(&self) -> AnyError {
        AnyError::new(self)
    }

    pub(crate) fn read_logs(&self) -> StorageError<NodeId> {
        StorageIOError::read_logs(self.any()).into()
    }

    pub(crate) fn read_log_at(&self, index: u64) -> StorageError<NodeId> {
        StorageIOError::read_log_at_index(index, self.any()).into()
    }

    pub(crate) fn write_logs(&self) -> StorageError<NodeId> {
        StorageIOError::write_logs(self.any()).into()
    }

    pub(crate) fn write_vote(&self) -> StorageError<NodeId> {
        StorageIOError::write_vote(self.any()).into()
    }

    pub(crate) fn read_vote(&self) -> StorageError<NodeId> {
        StorageIOError::read_vote(self.any()).into()
    }

    pub(crate) fn apply(&self, log_id: Option<LogId<NodeId>>) -> StorageError<NodeId> {
        match log_id {
            Some(l) => StorageIOError::apply(l, self.any()).into(),
            None => StorageIOError::write_state_machine(self.any()).into(),
        }
    }

    pub(crate) fn read_state_machine(&self) -> StorageError<NodeId> {
        StorageIOError::read_state_machine(self.any()).into()
    }

    pub(crate) fn write_snapshot(&self) -> StorageError<NodeId> {
        StorageIOError::new(ErrorSubject::Snapshot(None), ErrorVerb::Write, self.any()).into()
    }

    pub(crate) fn read_snapshot(&self) -> StorageError<NodeId> {
        StorageIOError::new(ErrorSubject::Snapshot(None), ErrorVerb::Read, self.any()).into()
    }
}

/// Runs blocking storage work (redb commits, fsyncs, snapshot files) on
/// tokio's blocking pool, so an fsync never stalls the runtime's workers
/// that also serve heartbeats and the HTTP API.
pub(crate) async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::other(path, format!("storage worker thread failed: {e}")))?
}
