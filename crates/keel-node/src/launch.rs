//! What `keel node` does around [`crate::run`]: deliberate bugs switched
//! on, a data directory started from a restored seed, and a runtime that
//! runs the node until SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{NodeConfig, NodeError};

/// Why a node could not be started or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The `--test-bugs` list is unknown, or this build has no bugs.
    #[error("{0}")]
    TestBugs(String),
    /// The restored seed could not be copied in or adopted.
    #[error("starting from the seed in {}", seed.display())]
    Seed {
        /// The seed directory.
        seed: PathBuf,
        /// What went wrong.
        #[source]
        source: keel_store::StoreError,
    },
    /// The async runtime could not be built.
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The node itself failed.
    #[error("node stopped with an error")]
    Node(#[source] NodeError),
}

/// Switches on the deliberate bugs in `list` (for the tests that prove the
/// chaos checkers catch them) and returns their names, comma-separated.
pub fn enable_test_bugs(list: &str) -> Result<String, LaunchError> {
    use keel_domain::test_bugs::{enable, TestBug};
    let bugs = TestBug::parse_list(list).map_err(LaunchError::TestBugs)?;
    enable(&bugs).map_err(LaunchError::TestBugs)?;
    Ok(bugs.iter().map(|b| b.name()).collect::<Vec<_>>().join(", "))
}

/// Starts the node's empty data directory from the restored `seed`, as a
/// member of the new cluster `members`; returns the line to tell the
/// operator, or `None` when the directory already held data.
pub fn start_from_seed(
    config: &NodeConfig,
    seed: &Path,
    members: &BTreeMap<u64, String>,
) -> Result<Option<String>, LaunchError> {
    let at = keel_store::seed::start_from_seed(seed, &config.data_dir, config.id, members)
        .map_err(|source| LaunchError::Seed {
            seed: seed.to_owned(),
            source,
        })?;
    Ok(at.map(|at| {
        format!(
            "node {}: data directory {} starts from the seed {} at log index {}",
            config.id,
            config.data_dir.display(),
            seed.display(),
            at.index
        )
    }))
}

/// Runs the node on a new multi-threaded runtime until SIGTERM or Ctrl-C.
pub fn run_until_signal(
    config: NodeConfig,
    bootstrap: Option<BTreeMap<u64, String>>,
) -> Result<(), LaunchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(LaunchError::Runtime)?;
    rt.block_on(async move {
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        crate::run(config, bootstrap, shutdown)
            .await
            .map_err(LaunchError::Node)
    })
}
