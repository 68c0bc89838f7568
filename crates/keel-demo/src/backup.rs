//! The end of the demo: back the cluster up (hot, from a follower,
//! erasure-coded 2+1 over three target directories), destroy its data and
//! one target, restore into a new cluster, and judge that cluster as the
//! first: the same state as backed up, and every check of
//! [`check_invariants`] over the same history.

use std::path::{Path, PathBuf};
use std::time::Instant;

use keel_backup::{
    job, restore, Key, Layout, Manifest, NodeSource, Repository, RestorePoint, Target,
};
use keel_chaos::run::CONVERGE_TIMEOUT;
use keel_chaos::{check_invariants, read_final_state, Finding, History, StateQuery};
use keel_harness::host::random_secret;
use keel_harness::{local_spec, LocalCluster, READY_TIMEOUT};

use crate::DemoError;

/// Backup target directories: one shard each for 2+1.
const TARGETS: usize = 3;
/// How a finding on the restored cluster is named.
const RESTORED: &str = "restored";

/// Where and how the restored cluster runs.
pub struct Restore<'a> {
    /// The `keel` binary its nodes run.
    pub keel_bin: &'a Path,
    /// Port of its node 1 (0 picks free ports).
    pub base_port: u16,
    /// The demo's data directory: backups, the seed and the restored
    /// cluster go under it.
    pub data_dir: &'a Path,
    /// The admin token of the nodes.
    pub admin_token: &'a str,
    /// What to read back from it.
    pub query: &'a StateQuery,
    /// Whether it runs TLS, as the backed-up cluster did.
    pub tls: bool,
}

/// Backs `cluster` up, destroys it, restores into a new cluster and judges
/// it against `history`. A step that fails is a failed finding, not an
/// error: the run's other verdicts still stand.
pub async fn backup_destroy_restore(
    cluster: LocalCluster,
    to: &Restore<'_>,
    history: &History,
) -> Vec<Finding> {
    match run(cluster, to, history).await {
        Ok(findings) => findings,
        Err(e) => vec![Finding::fail("backup, destroy, restore", e.to_string())],
    }
}

async fn run(
    mut cluster: LocalCluster,
    to: &Restore<'_>,
    history: &History,
) -> Result<Vec<Finding>, DemoError> {
    let root = to.data_dir.join("backups");
    let repo = open_repository(&root)?;
    let (index, digest) = cluster
        .wait_converged(&cluster.ids(), CONVERGE_TIMEOUT)
        .await?;
    println!();
    println!(
        "Backing up (hot, from a follower; zstd + ChaCha20-Poly1305, erasure-coded 2+1 over {TARGETS} directories)..."
    );
    back_up(&cluster, &repo, to.admin_token).await?;
    println!("Destroying the cluster and its data...");
    destroy(&mut cluster, &root)?;
    let seed = to.data_dir.join("restored-seed");
    let restored = restore_seed(&repo, &seed).await?;
    let mut findings = vec![same_state(&restored, index, &digest)];
    findings.extend(judge_restored(to, seed, history).await?);
    Ok(findings)
}

/// The repository over [`TARGETS`] directories under `root`, with a fresh
/// key.
fn open_repository(root: &Path) -> Result<Repository, DemoError> {
    let mut targets = Vec::new();
    for i in 0..TARGETS {
        let d = root.join(format!("target-{i}"));
        std::fs::create_dir_all(&d)
            .map_err(|e| DemoError::io(format!("creating {}", d.display()), e))?;
        targets.push(Target::parse(&format!("dir:{}", d.display()))?);
    }
    let layout = Layout::Erasure { data: 2, parity: 1 };
    Ok(Repository::open(targets, layout, demo_key(root)?)?)
}

/// A fresh key of 32 random bytes (two harness secrets of 16), kept
/// beside the backups (a real deployment keeps its key elsewhere: losing
/// the key loses the backups).
fn demo_key(dir: &Path) -> Result<Key, DemoError> {
    let hex = format!("{}{}", random_secret()?, random_secret()?);
    let path = dir.join("backup.key");
    std::fs::write(&path, hex)
        .map_err(|e| DemoError::io(format!("writing {}", path.display()), e))?;
    Ok(Key::from_file(&path)?)
}

/// A full backup of `cluster`, from a follower when one is healthy.
async fn back_up(
    cluster: &LocalCluster,
    repo: &Repository,
    admin_token: &str,
) -> Result<Manifest, DemoError> {
    let nodes: Vec<String> = cluster
        .ids()
        .into_iter()
        .filter_map(|id| cluster.addr(id).ok())
        .collect();
    let ca = cluster.tls().map(|t| t.bundle());
    let source = NodeSource::pick(&nodes, admin_token, ca.as_deref()).await?;
    let t = Instant::now();
    let full = job::take_full(repo, &source, keel_protocol::wall_ms()).await?;
    println!(
        "  full backup {} at index {}: {} bytes in {} ms",
        full.id.as_str(),
        full.last_index,
        full.content_bytes,
        t.elapsed().as_millis()
    );
    Ok(full)
}

/// Stops every node, removes their data and one backup target: 2+1
/// restores from any two.
fn destroy(cluster: &mut LocalCluster, backups: &Path) -> Result<(), DemoError> {
    cluster.stop_all();
    for id in cluster.ids() {
        remove(&cluster.data_dir(id))?;
    }
    remove(&backups.join("target-0"))?;
    println!("  removed every node's data directory and backup target-0");
    Ok(())
}

fn remove(dir: &Path) -> Result<(), DemoError> {
    std::fs::remove_dir_all(dir)
        .map_err(|e| DemoError::io(format!("removing {}", dir.display()), e))
}

/// Restores the latest backup into `seed`, from the targets left.
async fn restore_seed(repo: &Repository, seed: &Path) -> Result<restore::RestoreReport, DemoError> {
    keel_harness::clear_dir(seed)?;
    let t = Instant::now();
    let r = restore::restore(repo, RestorePoint::Latest, seed).await?;
    println!(
        "  restored index {} (digest {}) from 2 of 3 targets in {} ms",
        r.index,
        short(&r.digest),
        t.elapsed().as_millis()
    );
    Ok(r)
}

/// Whether the restore holds the state the cluster had when backed up.
fn same_state(r: &restore::RestoreReport, index: u64, digest: &str) -> Finding {
    let detail = format!(
        "index {} vs {index}, digest {} vs {}",
        r.index,
        short(&r.digest),
        short(digest)
    );
    if r.index == index && r.digest == digest {
        Finding::pass("restored state equals the backed-up cluster", detail)
    } else {
        Finding::fail("restored state equals the backed-up cluster", detail)
    }
}

/// Starts a new cluster from `seed`, reads its state back and judges it
/// against `history`, each finding named as the restored cluster's.
async fn judge_restored(
    to: &Restore<'_>,
    seed: PathBuf,
    history: &History,
) -> Result<Vec<Finding>, DemoError> {
    let dir = to.data_dir.join("restored");
    keel_harness::clear_dir(&dir)?;
    let mut spec = local_spec(to.keel_bin, 3, to.base_port, dir, to.admin_token);
    spec.seed = Some(seed);
    spec.tls = to.tls;
    let mut restored = LocalCluster::start(spec)?;
    restored.wait_ready(READY_TIMEOUT).await?;
    let state = read_final_state(&restored, &restored.admin_client(), to.query).await;
    restored.stop_all();
    let findings = check_invariants(history, &state?);
    Ok(findings
        .into_iter()
        .map(|f| Finding {
            name: format!("{RESTORED}: {}", f.name),
            ..f
        })
        .collect())
}

/// The first 16 characters of a digest, for a human.
fn short(digest: &str) -> String {
    format!("{}…", digest.get(..16).unwrap_or(digest))
}
