//! The one error type of a chaos run's machinery (not of its verdicts:
//! violations are findings, not errors).

use keel_harness::HarnessError;

use crate::HistoryError;

/// Why a chaos run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// Bad arguments.
    #[error("configuration: {0}")]
    Config(String),
    /// The cluster could not be set up or read back.
    #[error("setup: {0}")]
    Setup(String),
    /// A fault could not be injected or healed.
    #[error("fault: {0}")]
    Fault(String),
    /// The cluster harness failed (process, timeout).
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// The history could not be built or written.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// A run's file could not be written.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A report could not be encoded as JSON.
    #[error(transparent)]
    Encode(serde_json::Error),
}
