//! The one error type of the library; the binary adds context with anyhow.

use std::path::PathBuf;

/// Why the demo could not run, or what it found wrong.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A setting out of its range.
    #[error("invalid setting: {0}")]
    Config(String),
    /// Starting, faulting or stopping the local cluster failed.
    #[error("cluster: {0}")]
    Harness(#[from] keel_harness::HarnessError),
    /// A call the demo needs (seeding) was refused or went unanswered.
    #[error("{what}: {source}")]
    Client {
        /// What was being done.
        what: String,
        /// What the client said.
        #[source]
        source: keel_client::ClientError,
    },
    /// A name the demo builds (a SKU, an account, a key) is not a valid
    /// one: a bug in the demo.
    #[error("invalid name: {0}")]
    Name(#[from] keel_domain::FieldError),
    /// The shoppers' record could not be made a history.
    #[error("history: {0}")]
    History(#[from] keel_chaos::HistoryError),
    /// The state could not be read back after the run.
    #[error("{0}")]
    Chaos(#[from] keel_chaos::ChaosError),
    /// Taking the backup or restoring it failed.
    #[error("backup: {0}")]
    Backup(#[from] keel_backup::JobError),
    /// The backup repository could not be opened.
    #[error("backup repository: {0}")]
    Repository(#[from] keel_backup::BackupError),
    /// No node would serve as the backup's source.
    #[error("backup source: {0}")]
    BackupSource(#[from] keel_backup::SourceError),
    /// The backup key could not be drawn.
    #[error("backup key: {0}")]
    Host(#[from] keel_harness::host::HostError),
    /// A file or directory could not be read, written or removed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A shopper's task panicked or was cancelled.
    #[error("shopper: {0}")]
    Shopper(String),
    /// The run went through and some checks failed.
    #[error(
        "{} check(s) failed: {}; node logs are in {}",
        failed.len(),
        failed.join(", "),
        logs.display()
    )]
    ChecksFailed {
        /// The names of the failed checks.
        failed: Vec<String>,
        /// Where the nodes' logs are.
        logs: PathBuf,
    },
}

impl DemoError {
    /// A failed call, saying what it was for.
    pub fn client(what: impl Into<String>, source: keel_client::ClientError) -> Self {
        DemoError::Client {
            what: what.into(),
            source,
        }
    }

    /// A failed file operation, saying what it was.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        DemoError::Io {
            what: what.into(),
            source,
        }
    }
}
