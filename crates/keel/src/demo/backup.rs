//! The end of `keel demo`: back the cluster up (hot, erasure-coded 2+1 over
//! three target directories), destroy its data, restore into a new cluster
//! and show the same digest and every acknowledged order.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use keel_backup::{job, restore, Key, Layout, NodeSource, Repository, RestorePoint, Target};
use keel_client::Client;
use keel_harness::LocalCluster;

use super::Check;
use keel_harness::{local_spec, READY_TIMEOUT};

/// Concurrent reads when checking orders in the restored cluster.
const VERIFY_CONCURRENCY: usize = 32;
/// Backup target directories (one shard each for 2+1).
const TARGETS: usize = 3;

/// A fresh demo key: 32 bytes from the OS, kept beside the backups (a real
/// deployment keeps its key elsewhere: losing the key loses the backups).
fn demo_key(dir: &Path) -> anyhow::Result<Key> {
    let mut bytes = [0u8; 32];
    let mut f = std::fs::File::open("/dev/urandom").context("reading /dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut bytes).context("reading /dev/urandom")?;
    let path = dir.join("backup.key");
    std::fs::write(&path, keel_protocol::hex::encode(&bytes))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Key::from_file(&path)?)
}

/// Backs up `cluster` (converged at `index` with `digest`), destroys it,
/// restores into a new cluster on the same ports and checks it.
pub async fn backup_destroy_restore(
    mut cluster: LocalCluster,
    base_port: u16,
    data_dir: &Path,
    index: u64,
    digest: &str,
    acked: &[u64],
) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();
    let root = data_dir.join("backups");
    std::fs::create_dir_all(&root)?;
    let mut targets = Vec::new();
    for i in 0..TARGETS {
        let d = root.join(format!("target-{i}"));
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        targets.push(Target::parse(&format!("dir:{}", d.display()))?);
    }
    let repo = Repository::open(
        targets,
        Layout::Erasure { data: 2, parity: 1 },
        demo_key(&root)?,
    )?;
    println!();
    println!("Backing up (hot, from a follower; zstd + ChaCha20-Poly1305, erasure-coded 2+1 over {TARGETS} directories)...");
    let nodes: Vec<String> = cluster
        .ids()
        .into_iter()
        .filter_map(|id| cluster.addr(id).ok())
        .collect();
    let source = NodeSource::pick(&nodes, "keel-admin-dev").await?;
    let t = Instant::now();
    let full = job::take_full(&repo, &source, keel_protocol::wall_ms()).await?;
    println!(
        "  full backup {} at index {}: {} bytes in {} ms",
        full.id.as_str(),
        full.last_index,
        full.content_bytes,
        t.elapsed().as_millis()
    );

    println!("Destroying the cluster and its data...");
    cluster.stop_all();
    for id in cluster.ids() {
        let d = cluster.data_dir(id);
        std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
    }
    drop(cluster);
    // One target lost too: 2+1 restores from any two.
    std::fs::remove_dir_all(root.join("target-0"))?;
    println!("  removed every node's data directory and backup target-0");

    let seed = data_dir.join("restored-seed");
    if seed.exists() {
        std::fs::remove_dir_all(&seed)?;
    }
    let t = Instant::now();
    let r = restore::restore(&repo, RestorePoint::Latest, &seed).await?;
    println!(
        "  restored index {} (digest {}…) from 2 of 3 targets in {} ms",
        r.index,
        &r.digest[..16],
        t.elapsed().as_millis()
    );
    checks.push(Check {
        name: "restored state equals the backed-up cluster".into(),
        ok: r.index == index && r.digest == digest,
        detail: format!(
            "index {} vs {index}, digest {}… vs {}…",
            r.index,
            &r.digest[..16],
            &digest[..16.min(digest.len())]
        ),
    });

    let exe = std::env::current_exe().context("locating the keel binary")?;
    let mut spec = local_spec(
        exe,
        3,
        base_port,
        data_dir.join("restored"),
        "keel-admin-dev",
    );
    if spec.base_dir.exists() {
        std::fs::remove_dir_all(&spec.base_dir)?;
    }
    spec.seed = Some(seed);
    let restored = LocalCluster::start(spec)?;
    restored
        .wait_ready(READY_TIMEOUT)
        .await
        .context("the restored cluster did not become ready")?;
    let ids = restored.ids();
    let converged = restored.wait_converged(&ids, Duration::from_secs(30)).await;
    let admin = Arc::new(restored.admin_client());
    let mut missing = 0usize;
    for chunk in acked.chunks(VERIFY_CONCURRENCY) {
        let futs = chunk.iter().map(|id| {
            let admin: Arc<Client> = admin.clone();
            async move { admin.order(*id).await.is_ok() }
        });
        missing += futures::future::join_all(futs)
            .await
            .into_iter()
            .filter(|ok| !ok)
            .count();
    }
    checks.push(Check {
        name: "acknowledged orders in the restored cluster".into(),
        ok: missing == 0,
        detail: format!("{} of {}", acked.len() - missing, acked.len()),
    });
    checks.push(Check {
        name: "restored replicas identical".into(),
        ok: converged.is_ok(),
        detail: match &converged {
            Ok((idx, d)) => format!(
                "{} nodes at index {idx}, digest {}…{}",
                ids.len(),
                &d[..16.min(d.len())],
                if d == digest {
                    " (the backed-up digest)"
                } else {
                    ""
                }
            ),
            Err(e) => e.to_string(),
        },
    });
    let mut restored = restored;
    restored.stop_all();
    Ok(checks)
}
