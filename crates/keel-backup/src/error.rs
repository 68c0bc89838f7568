//! The one error type of the cluster side. Like the repository's, each
//! message says what went wrong and what an operator can do about it.

use keel_backup_repo::BackupError;

use crate::source::SourceError;

/// Everything that can go wrong taking, scheduling or restoring a backup.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The repository refused or failed; its message says which target and
    /// what to do.
    #[error(transparent)]
    Repository(#[from] BackupError),

    /// A running node's backup endpoints failed or answered nonsense.
    #[error("reading the cluster failed: {0}")]
    Source(#[from] SourceError),

    /// The cluster cannot give what was asked (a data directory that is not
    /// a node's, a node that has applied nothing, a log that does not
    /// continue the last backup).
    #[error("reading the cluster failed: {0}")]
    Cluster(String),

    /// A data directory, a stopped node's or the one a restore builds,
    /// could not be read or written.
    #[error("{context}: {source}")]
    Store {
        /// What was being done, and where.
        context: String,
        /// What the store said.
        #[source]
        source: keel_store::StoreError,
    },

    /// A restore could not complete; nothing was left at its destination.
    #[error("restore failed, nothing written: {0}")]
    Restore(String),

    /// A local file (work space, restore destination) failed.
    #[error("{path}: {source}; check the disk has space and the path is writable")]
    Io {
        /// The file or directory.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },

    /// A schedule's configuration cannot run.
    #[error("invalid backup configuration: {reason}")]
    Config {
        /// Why.
        reason: String,
    },

    /// A blocking task (reading a data directory, replaying a log)
    /// panicked or was cancelled; a bug, not an operational problem.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
