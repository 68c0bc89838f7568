//! The local Keel cluster a benchmark measures: three nodes of the `keel`
//! binary on 127.0.0.1, fsync on, started from an empty data directory.

use std::path::{Path, PathBuf};

use keel_harness::{clear_dir, local_spec, LocalCluster};

use crate::compare::{ADMIN_TOKEN, KEEL_READY_TIMEOUT};
use crate::BenchError;

/// Nodes of every benchmark cluster: the smallest that survives a kill.
pub const NODES: u64 = 3;

/// Starts [`NODES`] nodes of `keel_bin` with node 1 on `base_port` and data
/// under `data_dir` (wiped first), and waits until they have a leader.
pub async fn start_cluster(
    keel_bin: &Path,
    data_dir: PathBuf,
    base_port: u16,
) -> Result<LocalCluster, BenchError> {
    start_cluster_with(keel_bin, data_dir, base_port, false).await
}

/// [`start_cluster`], over TLS on every link when `tls` (a CA made in the
/// data directory, as `keel certs` makes one).
pub async fn start_cluster_with(
    keel_bin: &Path,
    data_dir: PathBuf,
    base_port: u16,
    tls: bool,
) -> Result<LocalCluster, BenchError> {
    clear_dir(&data_dir)?;
    let mut spec = local_spec(keel_bin, NODES, base_port, data_dir, ADMIN_TOKEN);
    spec.tls = tls;
    let cluster = LocalCluster::start(spec)?;
    cluster
        .wait_ready(KEEL_READY_TIMEOUT)
        .await
        .map_err(|e| BenchError::setup("cluster did not become ready", e))?;
    Ok(cluster)
}
