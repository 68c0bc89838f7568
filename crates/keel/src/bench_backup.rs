//! `keel bench backup`: backup and restore of a store of N orders (1M by
//! default) on a local three-node cluster, beside the disk's own sequential
//! write speed (`dd … conv=fsync`) measured in the same run; the order
//! throughput lost while hot backups run; and erasure-code encode
//! throughput on one core. A benchmark, not a test.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_backup::{job, restore, Key, Layout, NodeSource, Repository, RestorePoint, Target};
use keel_client::Client;
use keel_harness::LocalCluster;
use serde_json::{json, Value};

use crate::up::{local_spec, READY_TIMEOUT};
use keel_bench::cluster::{clients_per_node, load, row, seed_catalogue as seed};

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

/// Arguments of `keel bench backup`.
#[derive(clap::Args)]
pub struct Args {
    /// Orders in the store before anything is measured.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    orders: u64,
    /// Concurrent clients of the throughput phases.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    clients: u64,
    /// Seconds of each throughput phase (without, then with hot backups).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(2..=3600))]
    duration_s: u64,
    /// Repository layout: `mirror` or `K+M`, on K+M directories under
    /// --data-dir (one disk here: the figure is the software's cost).
    #[arg(long, default_value = "4+2")]
    layout: String,
    /// Port of node 1.
    #[arg(long, default_value_t = 7401)]
    base_port: u16,
    /// Where the cluster, the targets and the restore go (wiped at start).
    #[arg(long, default_value = "keel-data/bench-backup")]
    data_dir: PathBuf,
    /// Rounds of the throughput comparison, each one phase without and one
    /// with hot backups.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
    /// Pace of the hot backups taken while orders run, MiB/s (0: none);
    /// the backup command's default unless given.
    #[arg(long, default_value_t = keel_backup::pace::DEFAULT_FULL_RATE_MIB_S)]
    rate_mib_s: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(bench(args))
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Sequential write speed of the disk under `dir`: `dd` of [`DD_BYTES`]
/// with an fsync before it exits, timed from outside.
fn disk_write_mb_s(dir: &Path) -> anyhow::Result<f64> {
    let file = dir.join("dd.test");
    let t = Instant::now();
    let out = std::process::Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .arg("bs=4M")
        .arg(format!("count={}", DD_BYTES / (4 << 20)))
        .arg("conv=fsync")
        .output()
        .context("running dd")?;
    let d = t.elapsed();
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        bail!("dd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(mb_s(DD_BYTES, d))
}

/// Reed-Solomon encode throughput on one core: data bytes in per second.
fn ec_encode_mb_s(layout: Layout) -> anyhow::Result<Option<f64>> {
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
async fn preload(admin: &Arc<Client>, n: u64, customers: u64) -> anyhow::Result<Duration> {
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
                    return Ok::<(), anyhow::Error>(());
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
                    .map_err(|e| anyhow::anyhow!("preload chunk {c}: {e}"))?;
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

fn open_repo(root: &Path, layout: Layout) -> anyhow::Result<Repository> {
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

async fn bench(args: Args) -> anyhow::Result<()> {
    let layout = crate::backup_cmd::parse_layout(&args.layout)?;
    crate::clear_dir(&args.data_dir)?;
    std::fs::create_dir_all(&args.data_dir)?;
    let say = |s: String| {
        if !args.json {
            println!("{s}");
        }
    };
    let disk = disk_write_mb_s(&args.data_dir)?;
    say(format!("disk: dd 1 GiB conv=fsync: {disk:.0} MB/s"));
    let ec = ec_encode_mb_s(layout)?;

    let spec = local_spec(
        3,
        args.base_port,
        args.data_dir.join("cluster"),
        "keel-admin-dev",
    )?;
    let mut cluster = LocalCluster::start(spec)?;
    cluster
        .wait_ready(READY_TIMEOUT)
        .await
        .context("cluster did not become ready")?;
    let admin = Arc::new(cluster.admin_client());
    seed(&admin, SKUS, args.clients).await.context("seeding")?;
    say(format!(
        "preloading {} orders through /v1/batch...",
        args.orders
    ));
    let pre = preload(&admin, args.orders, args.clients).await?;
    say(format!(
        "  {:.0} orders/s ({:.1} s)",
        args.orders as f64 / pre.as_secs_f64(),
        pre.as_secs_f64()
    ));
    let (index, digest) = cluster
        .wait_converged(&cluster.ids(), Duration::from_secs(300))
        .await?;

    let repo = open_repo(&args.data_dir.join("targets"), layout)?;
    let nodes = cluster.endpoints();
    let source = NodeSource::pick(&nodes, "keel-admin-dev").await?;

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
        restore::restore(&repo, RestorePoint::Latest, &args.data_dir.join("restored")).await?;
    let restore_time = t.elapsed();
    // The cluster may have appended an entry that changes no state (a
    // leader's blank) after it converged, so the index can be later; the
    // state must be the same.
    anyhow::ensure!(
        restored.index >= index && restored.digest == digest,
        "restored {} / {} but the cluster was at {index} / {digest}",
        restored.index,
        restored.digest
    );
    say(format!(
        "restore: {:.2} s = {:.0} MB/s of snapshot, digest equal to the cluster's",
        restore_time.as_secs_f64(),
        mb_s(full.content_bytes, restore_time)
    ));

    // Order throughput in alternating rounds: without backups, then while
    // hot backups run back to back. Alternating cancels the drift of a
    // shared machine, which moved the quiet figure by a fifth between runs.
    let clients = clients_per_node(&cluster.endpoints());
    let d = Duration::from_secs(args.duration_s);
    let sku = |t: u64, i: u64| format!("S{}", (t * 7919 + i * 104_729) % SKUS);
    let backups = BackupLoop {
        exe: std::env::current_exe().context("locating the keel binary")?,
        targets: repo_targets(&args.data_dir.join("targets"), layout).join(","),
        nodes: nodes.join(","),
        layout: args.layout.clone(),
        work: args.data_dir.join("work-hot"),
        rate_mib_s: args.rate_mib_s,
    };
    let (mut quiet_ok, mut quiet_s, mut busy_ok, mut busy_s, mut taken) = (0u64, 0.0, 0u64, 0.0, 0);
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let quiet = load(&clients, args.clients, d, sku, &format!("q{round}")).await?;
        let (busy, done) = backups
            .during(async { Ok(load(&clients, args.clients, d, sku, &format!("b{round}")).await?) })
            .await?;
        say(format!(
            "round {}: {:.0} orders/s without backups, {:.0}/s during them ({done} finished, paced at {})",
            round + 1,
            quiet.ok as f64 / quiet.seconds,
            busy.ok as f64 / busy.seconds,
            pace_label(args.rate_mib_s),
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
    let (quiet_rate, busy_rate) = (quiet_ok as f64 / quiet_s, busy_ok as f64 / busy_s);
    let ratio = busy_rate / quiet_rate;
    say(format!(
        "orders during hot backups over {} rounds ({taken} finished): {busy_rate:.0}/s = {:.1}% of {quiet_rate:.0}/s without",
        args.rounds,
        ratio * 100.0
    ));
    cluster.stop_all();

    let report = json!({
        "orders_preloaded": args.orders,
        "layout": args.layout,
        "disk_write_mb_s": disk,
        "snapshot_bytes": full.content_bytes,
        "sealed_bytes": stored,
        "backup_s": backup_time.as_secs_f64(),
        "backup_mb_s": mb_s(full.content_bytes, backup_time),
        "restore_s": restore_time.as_secs_f64(),
        "restore_mb_s": mb_s(full.content_bytes, restore_time),
        "ec_encode_mb_s_one_core": ec,
        "rounds": rounds,
        "orders_per_s_quiet": quiet_rate,
        "orders_per_s_during_hot_backups": busy_rate,
        "hot_backups_finished": taken,
        "throughput_kept_ratio": ratio,
        "hot_backup_rate_mib_s": args.rate_mib_s,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| store | {} orders, snapshot {:.0} MB, sealed {:.0} MB ({}) |",
        args.orders,
        full.content_bytes as f64 / 1e6,
        stored as f64 / 1e6,
        args.layout
    );
    println!("| disk sequential write (dd, fsync) | {disk:.0} MB/s |");
    println!(
        "| full backup (hot, from a follower) | {:.0} MB/s, {:.2} s ({:.2}x the disk) |",
        mb_s(full.content_bytes, backup_time),
        backup_time.as_secs_f64(),
        mb_s(full.content_bytes, backup_time) / disk
    );
    println!(
        "| restore (into a seed, digest checked) | {:.0} MB/s, {:.2} s ({:.2}x the disk) |",
        mb_s(full.content_bytes, restore_time),
        restore_time.as_secs_f64(),
        mb_s(full.content_bytes, restore_time) / disk
    );
    if let Some(ec) = ec {
        println!(
            "| erasure encode {} on one core | {ec:.0} MB/s |",
            args.layout
        );
    }
    println!(
        "| orders/s without / during hot backups ({}) | {:.0} / {:.0} ({:.1}% kept) |",
        pace_label(args.rate_mib_s),
        quiet_rate,
        busy_rate,
        ratio * 100.0
    );
    Ok(())
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
        phase: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<(T, u64)> {
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
) -> anyhow::Result<()> {
    loop {
        let out = cmd.output().await?;
        anyhow::ensure!(
            out.status.success(),
            "keel backup create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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
