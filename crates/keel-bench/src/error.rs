//! The one error type of the library; the binary adds context with anyhow.

/// Why a benchmark could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bad argument (unknown workload, zero clients, rate 0, ...).
    #[error("invalid argument: {0}")]
    Arg(String),
    /// Starting, faulting or stopping the local Keel cluster failed.
    #[error("keel cluster: {0}")]
    Harness(#[from] keel_harness::HarnessError),
    /// A Keel API call during setup failed.
    #[error("keel: {0}")]
    Client(#[from] keel_client::ClientError),
    /// Installing, starting or preparing a system failed.
    #[error("{what}: {detail}")]
    Setup {
        /// What was being set up.
        what: String,
        /// Why it failed.
        detail: String,
    },
    /// A backup, a restore or the backup repository failed
    /// (`keel bench backup`).
    #[error("backup: {0}")]
    Backup(#[from] keel_backup::JobError),
    /// The backup repository alone failed (`keel bench backup`'s codec
    /// and erasure figures).
    #[error("backup repository: {0}")]
    Repository(#[from] keel_backup::BackupError),
    /// A file or process operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A host tool (a package, a port) could not be had.
    #[error("host: {0}")]
    Host(#[from] keel_harness::host::HostError),
    /// The latency histogram refused an operation.
    #[error("histogram: {0}")]
    Histogram(String),
    /// The state machine, its tables or a replica's store refused an
    /// operation (`keel bench apply` drives them directly).
    #[error("state machine: {0}")]
    Domain(String),
    /// A benchmark's check of its own run failed (a command refused, units
    /// missing, an invariant broken, a digest that differs): its figures
    /// would not mean what they say.
    #[error("check failed: {0}")]
    Check(String),
    /// A load task panicked or was cancelled.
    #[error("load task: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A load task's shared state was left poisoned by a panic.
    #[error("load task: {0}")]
    Task(String),
}

impl BenchError {
    /// A setup failure of `what`.
    pub fn setup(what: impl Into<String>, detail: impl ToString) -> Self {
        BenchError::Setup {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}
