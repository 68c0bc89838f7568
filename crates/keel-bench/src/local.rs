//! The local Keel cluster a benchmark measures: three nodes of the `keel`
//! binary on 127.0.0.1, fsync on, started from an empty data directory.

use std::path::{Path, PathBuf};

use keel_harness::{ClusterSpec, LocalCluster};

use crate::compare::{ADMIN_TOKEN, KEEL_READY_TIMEOUT};
use crate::BenchError;

/// Nodes of every benchmark cluster: the smallest that survives a kill.
pub const NODES: u64 = 3;

/// Removes `dir` and everything under it, if it exists: the scratch data
/// directory a benchmark starts from (and leaves behind).
pub fn clear_dir(dir: &Path) -> Result<(), BenchError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| BenchError::setup(format!("clearing {}", dir.display()), e))?;
    }
    Ok(())
}

/// Starts [`NODES`] nodes of `keel_bin` with node 1 on `base_port` and data
/// under `data_dir` (wiped first), and waits until they have a leader.
pub async fn start_cluster(
    keel_bin: &Path,
    data_dir: PathBuf,
    base_port: u16,
) -> Result<LocalCluster, BenchError> {
    clear_dir(&data_dir)?;
    let mut spec = ClusterSpec::new(keel_bin, data_dir, NODES);
    spec.base_port = base_port;
    spec.admin_token = ADMIN_TOKEN.to_owned();
    let cluster = LocalCluster::start(spec)?;
    cluster
        .wait_ready(KEEL_READY_TIMEOUT)
        .await
        .map_err(|e| BenchError::setup("cluster did not become ready", e))?;
    Ok(cluster)
}
