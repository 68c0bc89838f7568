//! `keel bench backup`: backup and restore of a store of N orders (1M by
//! default) on a local three-node cluster, beside the disk's own sequential
//! write speed (`dd … conv=fsync`) measured in the same run; the order
//! throughput lost while hot backups run; and erasure-code encode
//! throughput on one core. A benchmark, not a test.

//!
//! The cluster's order load is `keel bench cluster`'s ([`crate::cluster`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_backup::{job, restore, Key, Layout, NodeSource, Repository, RestorePoint, Target};
use keel_client::Client;
use keel_harness::clear_dir;
use serde_json::{json, Value};

use crate::cluster::{clients_per_node, load, row, seed_catalogue, uniform_sku};
use crate::compare::ADMIN_TOKEN;
use crate::local::start_cluster;
use crate::BenchError;

/// Place commands per `/v1/batch` request while preloading.
const PRELOAD_CHUNK: usize = 1_000;
/// Batch requests in flight while preloading.
const PRELOAD_IN_FLIGHT: usize = 4;
/// SKUs the preloaded and measured orders spread over.
const SKUS: u64 = 1_000;
/// Bytes `dd` writes to measure the disk.
const DD_BYTES: u64 = 1 << 30;
/// Bytes encoded to measure the erasure code.
const EC_BYTES: usize = 256 << 20;
/// Size of one erasure-coded chunk (the repository's chunk size).
const EC_CHUNK: usize = keel_backup::CHUNK_BYTES_MAX;

/// What `keel bench backup` runs.
#[derive(Clone, Debug)]
pub struct BackupConfig {
    /// The `keel` binary the nodes and the hot backups run.
    pub keel_bin: PathBuf,
    /// Orders in the store before anything is measured.
    pub orders: u64,
    /// Concurrent clients of the throughput phases.
    pub clients: u64,
    /// Seconds of each throughput phase.
    pub duration_s: u64,
    /// The repository's layout.
    pub layout: Layout,
    /// The layout as given (`mirror` or `K+M`): the label of the figures
    /// and the `--layout` of the hot backups.
    pub layout_name: String,
    /// Port of node 1.
    pub base_port: u16,
    /// Where the cluster, the targets and the restore go (wiped at start).
    pub data_dir: PathBuf,
    /// Rounds of the throughput comparison.
    pub rounds: u64,
    /// Pace of the hot backups, MiB/s (0: unpaced).
    pub rate_mib_s: u64,
}

/// Everything `keel bench backup` measured.
#[derive(Clone, Debug)]
pub struct BackupFigures {
    /// Sequential write speed of the disk (`dd`, fsync), MB/s.
    pub disk_write_mb_s: f64,
    /// Bytes of the snapshot the full backup holds.
    pub snapshot_bytes: u64,
    /// Bytes the repository stores for it (sealed, after zstd).
    pub sealed_bytes: u64,
    /// Time of the full backup on a quiet cluster.
    pub backup_time: Duration,
    /// Time of its restore.
    pub restore_time: Duration,
    /// Erasure-code encode throughput on one core, MB/s (none for a mirror).
    pub ec_encode_mb_s: Option<f64>,
    /// Each round's quiet and busy rows (JSON, as `keel bench cluster`'s).
    pub rounds: Vec<Value>,
    /// Orders/s without backups, over all rounds.
    pub orders_per_s_quiet: f64,
    /// Orders/s while hot backups ran, over all rounds.
    pub orders_per_s_during_hot_backups: f64,
    /// Hot backups that finished during the busy phases.
    pub hot_backups_finished: u64,
}

impl BackupFigures {
    /// The share of the quiet throughput kept while hot backups ran.
    pub fn throughput_kept_ratio(&self) -> f64 {
        self.orders_per_s_during_hot_backups / self.orders_per_s_quiet
    }
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Sequential write speed of the disk under `dir`: `dd` of [`DD_BYTES`]
/// with an fsync before it exits, timed from outside.
fn disk_write_mb_s(dir: &Path) -> Result<f64, BenchError> {
    let file = dir.join("dd.test");
    let t = Instant::now();
    let out = std::process::Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .arg("bs=4M")
        .arg(format!("count={}", DD_BYTES / (4 << 20)))
        .arg("conv=fsync")
        .output()
        .map_err(|e| BenchError::setup("running dd", e))?;
    let d = t.elapsed();
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        return Err(BenchError::setup(
            "dd",
            format!("failed: {}", String::from_utf8_lossy(&out.stderr)),
        ));
    }
    Ok(mb_s(DD_BYTES, d))
}

/// Reed-Solomon encode throughput on one core: data bytes in per second.
fn ec_encode_mb_s(layout: Layout) -> Result<Option<f64>, BenchError> {
    let Layout::Erasure { data, parity } = layout else {
        return Ok(None);
    };
    let per = (EC_CHUNK / data).next_multiple_of(2);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let shards: Vec<Vec<u8>> = (0..data)
        .map(|_| {
            (0..per)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect();
    let rounds = EC_BYTES / (per * data);
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(keel_backup::layout::parity_shards(data, parity, &shards)?);
    }
    Ok(Some(mb_s((rounds * per * data) as u64, t.elapsed())))
}

/// Places `n` orders through `/v1/batch`, [`PRELOAD_IN_FLIGHT`] requests
/// at a time; reservations live a week so none expires during the run.
async fn preload(admin: &Arc<Client>, n: u64, customers: u64) -> Result<Duration, BenchError> {
    let t = Instant::now();
    let chunks = n.div_ceil(PRELOAD_CHUNK as u64);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..PRELOAD_IN_FLIGHT {
        let (admin, next) = (admin.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= chunks {
                    return Ok::<(), BenchError>(());
                }
                let lo = c * PRELOAD_CHUNK as u64;
                let hi = (lo + PRELOAD_CHUNK as u64).min(n);
                let cmds: Vec<Value> = (lo..hi)
                    .map(|i| {
                        json!({"place_order": {
                            "customer": format!("c{}", i % customers),
                            "lines": [{"sku": format!("S{}", i % SKUS), "qty": 1}],
                            "ttl_seconds": keel_domain::command::ORDER_TTL_MAX_S,
                        }})
                    })
                    .collect();
                admin
                    .batch(&cmds, &format!("preload-{c}"))
                    .await
                    .map_err(|e| BenchError::setup("preload", format!("chunk {c}: {e}")))?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(t.elapsed())
}

/// The repository key of the benchmark (its backups are thrown away).
const BENCH_KEY: [u8; 32] = [7; 32];

/// `dir:` specs of the layout's target directories under `root`.
fn repo_targets(root: &Path, layout: Layout) -> Vec<String> {
    let n = match layout {
        Layout::Mirror => 2,
        Layout::Erasure { data, parity } => data + parity,
    };
    (0..n)
        .map(|i| format!("dir:{}", root.join(format!("target-{i}")).display()))
        .collect()
}

fn open_repo(root: &Path, layout: Layout) -> Result<Repository, BenchError> {
    let mut targets = Vec::new();
    for spec in repo_targets(root, layout) {
        let t = Target::parse(&spec)?;
        if let Target::Dir(d) = &t {
            std::fs::create_dir_all(d.root())?;
        }
        targets.push(t);
    }
    Ok(Repository::open(
        targets,
        layout,
        Key::from_bytes(BENCH_KEY),
    )?)
}

/// Runs the benchmark: the disk, the erasure code, a preload of
/// [`BackupConfig::orders`], a full backup and its restore on a quiet
/// cluster, then the rounds of order throughput without and during hot
/// backups. `say` gets a line of progress after each step.
pub async fn backup(cfg: &BackupConfig, say: impl Fn(String)) -> Result<BackupFigures, BenchError> {
    let layout = cfg.layout;
    clear_dir(&cfg.data_dir)?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let disk = disk_write_mb_s(&cfg.data_dir)?;
    say(format!("disk: dd 1 GiB conv=fsync: {disk:.0} MB/s"));
    let ec = ec_encode_mb_s(layout)?;

    let mut cluster =
        start_cluster(&cfg.keel_bin, cfg.data_dir.join("cluster"), cfg.base_port).await?;
    let admin = Arc::new(cluster.admin_client());
    seed_catalogue(&admin, SKUS, cfg.clients).await?;
    say(format!(
        "preloading {} orders through /v1/batch...",
        cfg.orders
    ));
    let pre = preload(&admin, cfg.orders, cfg.clients).await?;
    say(format!(
        "  {:.0} orders/s ({:.1} s)",
        cfg.orders as f64 / pre.as_secs_f64(),
        pre.as_secs_f64()
    ));
    let (index, digest) = cluster
        .wait_converged(&cluster.ids(), Duration::from_secs(300))
        .await?;

    let repo = open_repo(&cfg.data_dir.join("targets"), layout)?;
    let nodes = cluster.endpoints();
    let source = NodeSource::pick(&nodes, ADMIN_TOKEN, None)
        .await
        .map_err(|e| BenchError::setup("picking a node to back up", e))?;

    // Full backup on a quiet cluster.
    let t = Instant::now();
    let full = job::take_full(&repo, &source, keel_protocol::wall_ms()).await?;
    let backup_time = t.elapsed();
    let stored: u64 = full.chunks.iter().map(|c| c.sealed_bytes).sum::<u64>();
    say(format!(
        "full backup at index {}: {} MB of snapshot in {:.2} s = {:.0} MB/s ({} MB sealed after zstd)",
        full.last_index,
        full.content_bytes / 1_000_000,
        backup_time.as_secs_f64(),
        mb_s(full.content_bytes, backup_time),
        stored / 1_000_000
    ));

    // Restore it.
    let t = Instant::now();
    let restored =
        restore::restore(&repo, RestorePoint::Latest, &cfg.data_dir.join("restored")).await?;
    let restore_time = t.elapsed();
    // The cluster may have appended an entry that changes no state (a
    // leader's blank) after it converged, so the index can be later; the
    // state must be the same.
    if restored.index < index || restored.digest != digest {
        return Err(BenchError::Check(format!(
            "restored {} / {} but the cluster was at {index} / {digest}",
            restored.index, restored.digest
        )));
    }
    say(format!(
        "restore: {:.2} s = {:.0} MB/s of snapshot, digest equal to the cluster's",
        restore_time.as_secs_f64(),
        mb_s(full.content_bytes, restore_time)
    ));

    // Order throughput in alternating rounds: without backups, then while
    // hot backups run back to back. Alternating cancels the drift of a
    // shared machine, which moved the quiet figure by a fifth between runs.
    let clients = clients_per_node(&cluster.endpoints());
    let d = Duration::from_secs(cfg.duration_s);
    let sku = |t: u64, i: u64| uniform_sku(t, i, SKUS);
    let backups = BackupLoop {
        exe: cfg.keel_bin.clone(),
        targets: repo_targets(&cfg.data_dir.join("targets"), layout).join(","),
        nodes: nodes.join(","),
        layout: cfg.layout_name.clone(),
        work: cfg.data_dir.join("work-hot"),
        rate_mib_s: cfg.rate_mib_s,
    };
    let (mut quiet_ok, mut quiet_s, mut busy_ok, mut busy_s, mut taken) = (0u64, 0.0, 0u64, 0.0, 0);
    let mut rounds = Vec::new();
    for round in 0..cfg.rounds {
        let quiet = load(&clients, cfg.clients, d, sku, &format!("q{round}")).await?;
        let (busy, done) = backups
            .during(load(&clients, cfg.clients, d, sku, &format!("b{round}")))
            .await?;
        say(format!(
            "round {}: {:.0} orders/s without backups, {:.0}/s during them ({done} finished, paced at {})",
            round + 1,
            quiet.ok as f64 / quiet.seconds,
            busy.ok as f64 / busy.seconds,
            pace_label(cfg.rate_mib_s),
        ));
        rounds.push(json!({
            "quiet": row("quiet", &quiet),
            "during_hot_backups": row("during hot backups", &busy),
            "hot_backups_finished": done,
        }));
        (quiet_ok, quiet_s) = (quiet_ok + quiet.ok, quiet_s + quiet.seconds);
        (busy_ok, busy_s) = (busy_ok + busy.ok, busy_s + busy.seconds);
        taken += done;
    }
    let figures = BackupFigures {
        disk_write_mb_s: disk,
        snapshot_bytes: full.content_bytes,
        sealed_bytes: stored,
        backup_time,
        restore_time,
        ec_encode_mb_s: ec,
        rounds,
        orders_per_s_quiet: quiet_ok as f64 / quiet_s,
        orders_per_s_during_hot_backups: busy_ok as f64 / busy_s,
        hot_backups_finished: taken,
    };
    say(format!(
        "orders during hot backups over {} rounds ({taken} finished): {:.0}/s = {:.1}% of {:.0}/s without",
        cfg.rounds,
        figures.orders_per_s_during_hot_backups,
        figures.throughput_kept_ratio() * 100.0,
        figures.orders_per_s_quiet,
    ));
    cluster.stop_all();
    Ok(figures)
}

/// The `--json` object of `keel bench backup`.
pub fn backup_json(cfg: &BackupConfig, f: &BackupFigures) -> Value {
    json!({
        "orders_preloaded": cfg.orders,
        "layout": cfg.layout_name,
        "disk_write_mb_s": f.disk_write_mb_s,
        "snapshot_bytes": f.snapshot_bytes,
        "sealed_bytes": f.sealed_bytes,
        "backup_s": f.backup_time.as_secs_f64(),
        "backup_mb_s": mb_s(f.snapshot_bytes, f.backup_time),
        "restore_s": f.restore_time.as_secs_f64(),
        "restore_mb_s": mb_s(f.snapshot_bytes, f.restore_time),
        "ec_encode_mb_s_one_core": f.ec_encode_mb_s,
        "rounds": f.rounds,
        "orders_per_s_quiet": f.orders_per_s_quiet,
        "orders_per_s_during_hot_backups": f.orders_per_s_during_hot_backups,
        "hot_backups_finished": f.hot_backups_finished,
        "throughput_kept_ratio": f.throughput_kept_ratio(),
        "hot_backup_rate_mib_s": cfg.rate_mib_s,
    })
}

/// The summary table of `keel bench backup` (Markdown, after a blank line).
pub fn backup_table(cfg: &BackupConfig, f: &BackupFigures) -> String {
    let disk = f.disk_write_mb_s;
    let backup_mb_s = mb_s(f.snapshot_bytes, f.backup_time);
    let restore_mb_s = mb_s(f.snapshot_bytes, f.restore_time);
    let mut s = String::from("\n| figure | value |\n|---|---|\n");
    s.push_str(&format!(
        "| store | {} orders, snapshot {:.0} MB, sealed {:.0} MB ({}) |\n",
        cfg.orders,
        f.snapshot_bytes as f64 / 1e6,
        f.sealed_bytes as f64 / 1e6,
        cfg.layout_name
    ));
    s.push_str(&format!(
        "| disk sequential write (dd, fsync) | {disk:.0} MB/s |\n"
    ));
    s.push_str(&format!(
        "| full backup (hot, from a follower) | {:.0} MB/s, {:.2} s ({:.2}x the disk) |\n",
        backup_mb_s,
        f.backup_time.as_secs_f64(),
        backup_mb_s / disk
    ));
    s.push_str(&format!(
        "| restore (into a seed, digest checked) | {:.0} MB/s, {:.2} s ({:.2}x the disk) |\n",
        restore_mb_s,
        f.restore_time.as_secs_f64(),
        restore_mb_s / disk
    ));
    if let Some(ec) = f.ec_encode_mb_s {
        s.push_str(&format!(
            "| erasure encode {} on one core | {ec:.0} MB/s |\n",
            cfg.layout_name
        ));
    }
    s.push_str(&format!(
        "| orders/s without / during hot backups ({}) | {:.0} / {:.0} ({:.1}% kept) |\n",
        pace_label(cfg.rate_mib_s),
        f.orders_per_s_quiet,
        f.orders_per_s_during_hot_backups,
        f.throughput_kept_ratio() * 100.0
    ));
    s
}

/// `keel backup create --kind full` run back to back as an operator would
/// (each process lowers its own priority), against the bench's repository.
struct BackupLoop {
    exe: PathBuf,
    targets: String,
    nodes: String,
    layout: String,
    work: PathBuf,
    rate_mib_s: u64,
}

impl BackupLoop {
    /// Runs `phase` while backups run back to back; returns its outcome and
    /// the backups that finished. The one still running when the phase
    /// ends is killed (it leaves no manifest, so no backup), so the next
    /// quiet phase is quiet.
    async fn during<T>(
        &self,
        phase: impl std::future::Future<Output = Result<T, BenchError>>,
    ) -> Result<(T, u64), BenchError> {
        let done = Arc::new(AtomicU64::new(0));
        let finished = done.clone();
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(["backup", "create", "--kind", "full", "--nodes", &self.nodes])
            .args(["--target", &self.targets, "--layout", &self.layout])
            .args(["--rate-mib-s", &self.rate_mib_s.to_string()])
            .arg("--work-dir")
            .arg(&self.work)
            .env("KEEL_BACKUP_KEY", keel_protocol::hex::encode(&BENCH_KEY))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let looping = tokio::spawn(back_to_back(cmd, finished));
        let outcome = phase.await;
        if looping.is_finished() {
            // It only ends by failing.
            looping.await??;
        } else {
            looping.abort();
            let _ = looping.await;
        }
        Ok((outcome?, done.load(Ordering::Relaxed)))
    }
}

/// Runs `cmd` again and again, counting the runs that succeed; ends only
/// on a failure (or when its task is aborted).
async fn back_to_back(
    mut cmd: tokio::process::Command,
    finished: Arc<AtomicU64>,
) -> Result<(), BenchError> {
    loop {
        let out = cmd.output().await?;
        if !out.status.success() {
            return Err(BenchError::setup(
                "keel backup create",
                format!("failed: {}", String::from_utf8_lossy(&out.stderr)),
            ));
        }
        finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// How the hot backups of the throughput phase were paced.
fn pace_label(rate_mib_s: u64) -> String {
    if rate_mib_s == 0 {
        "unpaced".into()
    } else {
        format!("{rate_mib_s} MiB/s")
    }
}
