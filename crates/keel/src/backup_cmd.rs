//! `keel backup …` and `keel restore`: arguments in, calls into
//! `keel-backup`, a report out.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use keel_backup::listing::{Listing, ManifestLine};
use keel_backup::{job, restore, schedule, RepoSpec, Repository, RestorePoint, Retention};
use keel_protocol::parse_duration;

/// Where backups live and how they are sealed (shared by every command).
#[derive(clap::Args, Clone, Debug)]
pub struct RepoArgs {
    /// Backup targets: directories (`dir:/path` or a path) or S3 buckets
    /// (`s3://bucket/prefix?endpoint=…&region=…`), comma-separated or
    /// repeated. Use separate disks or mounts for real redundancy.
    #[arg(
        long = "target",
        env = "KEEL_BACKUP_TARGETS",
        value_delimiter = ',',
        required = true
    )]
    targets: Vec<String>,
    /// Redundancy: `mirror` (every target has everything) or `K+M`
    /// (Reed-Solomon: K data and M parity shards on K+M targets; any K
    /// restore).
    #[arg(long, env = "KEEL_BACKUP_LAYOUT", default_value = "mirror")]
    layout: String,
    /// File holding the 32-byte encryption key (raw or 64 hex digits).
    #[arg(long, env = "KEEL_BACKUP_KEY_FILE")]
    key_file: Option<PathBuf>,
}

impl RepoArgs {
    /// Opens the repository the arguments describe.
    pub fn open(&self) -> anyhow::Result<Repository> {
        Ok(RepoSpec {
            targets: self.targets.clone(),
            layout: self.layout.clone(),
            key_file: self.key_file.clone(),
        }
        .open()?)
    }
}

/// Which cluster to read.
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Nodes to ask (any member; a healthy follower is read).
    #[arg(
        long,
        env = "KEEL_NODES",
        value_delimiter = ',',
        default_value = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
    )]
    nodes: Vec<String>,
    #[command(flatten)]
    token: crate::admin_token::AdminToken,
    /// CA bundle the nodes' certificates chain to, when they serve TLS
    /// (`keel certs` makes it).
    #[arg(long, env = "KEEL_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Pace of a full (hot) backup in MiB/s, so it leaves the shop its
    /// CPU and disk; 0 for no limit.
    #[arg(long, env = "KEEL_BACKUP_RATE_MIB_S", default_value_t = keel_backup::pace::DEFAULT_FULL_RATE_MIB_S)]
    rate_mib_s: u64,
}

impl ClusterArgs {
    /// The pace in bytes per second (0 for no limit, as [`keel_backup::Pace`] reads it).
    fn rate_bytes_per_s(&self) -> Option<u64> {
        Some(self.rate_mib_s.saturating_mul(1 << 20))
    }
}

/// `keel backup …`.
#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Take a backup: full (hot snapshot), incremental, differential, or
    /// cold (a stopped node's data directory).
    Create(CreateArgs),
    /// List backups, oldest first.
    List(ListArgs),
    /// Scrub every shard and copy against its checksum; non-zero exit on
    /// any damage.
    Verify(RepoOnly),
    /// Rebuild missing or damaged shards and copies from the survivors.
    Repair(RepoOnly),
    /// Delete old backups, keeping the newest N fulls and their chains.
    Prune(PruneArgs),
    /// Run backups on a schedule (and/or a continuous archive) until Ctrl-C.
    Schedule(ScheduleArgs),
}

/// `keel backup create`.
#[derive(clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// full, incremental, differential or cold.
    #[arg(long, default_value = "full")]
    kind: String,
    /// For --kind cold: the stopped node's data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Local scratch space for pieces in transit.
    #[arg(long, default_value = "keel-backup-work")]
    work_dir: PathBuf,
    /// Print the manifests as JSON.
    #[arg(long)]
    json: bool,
}

/// `keel backup list`.
#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Commands that need only the repository.
#[derive(clap::Args)]
pub struct RepoOnly {
    #[command(flatten)]
    repo: RepoArgs,
}

/// `keel backup prune`.
#[derive(clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// Full (or cold) backups to keep, newest first.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    keep_full: u64,
}

/// `keel backup schedule`.
#[derive(clap::Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// A full backup this often (e.g. 24h, 30m); the first runs at once.
    #[arg(long, value_parser = parse_duration)]
    full_every: Option<Duration>,
    /// An incremental this often.
    #[arg(long, value_parser = parse_duration)]
    incremental_every: Option<Duration>,
    /// An incremental after this many committed entries.
    #[arg(long)]
    after_entries: Option<u64>,
    /// Follow the log continuously: close an archive segment at this age
    /// (e.g. 5s); the recovery point after losing every node.
    #[arg(long, value_parser = parse_duration)]
    archive_every: Option<Duration>,
    /// ... or at this many bytes.
    #[arg(long, default_value_t = 16 << 20)]
    archive_bytes: u64,
    /// Keep this many fulls (and their chains) after each backup.
    #[arg(long)]
    keep_full: Option<u64>,
    /// Local scratch space.
    #[arg(long, default_value = "keel-backup-work")]
    work_dir: PathBuf,
    /// Stop (as on SIGTERM) when the process that started this one dies:
    /// set by `keel gateway`, whose `[backup]` schedule this then is.
    #[arg(long, hide = true)]
    with_parent: bool,
}

/// `keel restore`.
#[derive(clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// New directory to restore into (a seed for `keel up --from`).
    #[arg(long)]
    to: PathBuf,
    /// Restore up to and including this log index.
    #[arg(long, conflicts_with = "time_ms")]
    index: Option<u64>,
    /// Restore everything the leader stamped at or before this time (ms
    /// since the epoch).
    #[arg(long)]
    time_ms: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Nice value `keel backup` runs at: backups take the CPU a shop's nodes
/// leave (on a machine they share), not compete with them.
pub const BACKUP_NICE: i32 = 19;

/// Lowers this process's priority before any thread starts, so every
/// thread it creates inherits it. Best effort (needs `renice`).
fn lower_priority() {
    // CPU, and disk: the idle I/O class, so the nodes' fsyncs go first.
    let ok = keel_node::export::lower_priority(&std::process::id().to_string(), BACKUP_NICE);
    if !ok {
        eprintln!("note: could not lower keel backup's priority (renice, ionice)");
    }
}

/// Runs `keel backup …`.
pub fn run(cmd: Cmd) -> anyhow::Result<()> {
    lower_priority();
    runtime()?.block_on(async move {
        match cmd {
            Cmd::Create(a) => create(a).await,
            Cmd::List(a) => {
                let repo = a.repo.open()?;
                let list = repo.list().await?;
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    println!("{}", Listing(&list));
                }
                Ok(())
            }
            Cmd::Verify(a) => {
                let repo = a.repo.open()?;
                let r = repo.verify().await?;
                println!("{r}");
                if !r.is_clean() {
                    bail!("the repository is damaged: run `keel backup repair`");
                }
                Ok(())
            }
            Cmd::Repair(a) => {
                let repo = a.repo.open()?;
                let r = repo.repair().await?;
                println!("{r}");
                if !r.is_complete() {
                    bail!("some damage could not be repaired (see above)");
                }
                Ok(())
            }
            Cmd::Prune(a) => {
                let repo = a.repo.open()?;
                let r = repo
                    .prune(Retention {
                        keep_full: a.keep_full as usize,
                    })
                    .await?;
                println!("{r}");
                Ok(())
            }
            Cmd::Schedule(a) => run_schedule(a).await,
        }
    })
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let choice: job::Choice = a.kind.parse()?;
    let from = job::Origin {
        nodes: &a.cluster.nodes,
        token: &a.cluster.token.admin_token()?,
        ca: a.cluster.tls_ca.as_deref(),
        rate_bytes_per_s: a.cluster.rate_bytes_per_s(),
        data_dir: a.data_dir.as_deref(),
    };
    let now = keel_protocol::wall_ms();
    let taken = job::take(&repo, choice, from, &a.work_dir, now).await?;
    let _ = std::fs::remove_dir(&a.work_dir);
    if let Some(n) = &taken.note {
        eprintln!("note: {n}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&taken.manifests)?);
    } else {
        for m in &taken.manifests {
            println!("{}", ManifestLine(m));
        }
    }
    Ok(())
}

/// A `[backup]` section of a gateway's configuration, checked: `keel
/// gateway` runs it as a child `keel backup schedule` process, which lowers
/// its own priority (as every `keel backup` does) so compressing and
/// sealing a backup never competes with the proxy it runs beside. The
/// repository is opened once, so a bad section fails when the gateway
/// starts rather than at the first backup.
pub fn child_schedule(
    b: &keel_gateway::config::BackupSection,
) -> anyhow::Result<schedule::ChildCommand> {
    let child = schedule::ChildSchedule {
        repo: RepoSpec {
            targets: b.targets.clone(),
            layout: b.layout.clone(),
            key_file: b.key_file.clone(),
        },
        work_dir: b.work_dir.clone(),
        full_every_s: b.full_every_s,
        incremental_every_s: b.incremental_every_s,
        after_entries: b.after_entries,
        archive_every_ms: b.archive_every_ms,
        archive_bytes: b.archive_bytes,
        keep_full: b.keep_full,
        rate_mib_s: b.rate_mib_s,
    };
    schedule::ChildCommand::open(&child).context("[backup] section")
}

async fn run_schedule(a: ScheduleArgs) -> anyhow::Result<()> {
    let repo = a.repo.open()?;
    let policy = schedule::ScheduleFlags {
        full_every: a.full_every,
        incremental_every: a.incremental_every,
        after_entries: a.after_entries,
        archive_every: a.archive_every,
        archive_bytes: a.archive_bytes,
        keep_full: a.keep_full,
        full_rate_bytes_per_s: a.cluster.rate_bytes_per_s(),
    }
    .policy()?;
    let stop_rx = schedule::stop_on_signal();
    if a.with_parent {
        schedule::stop_with_parent()?;
    }
    let job = schedule::Scheduled {
        repo: &repo,
        nodes: &a.cluster.nodes,
        token: &a.cluster.token.admin_token()?,
        ca: a.cluster.tls_ca.as_deref(),
        work: a.work_dir.clone(),
        policy,
        clock: keel_protocol::wall_ms,
    };
    schedule::run(job, stop_rx, |e| println!("{e}")).await?;
    Ok(())
}

/// Runs `keel restore`.
pub fn run_restore(a: RestoreArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let repo = a.repo.open()?;
        let point = match (a.index, a.time_ms) {
            (Some(i), _) => RestorePoint::Index(i),
            (None, Some(t)) => RestorePoint::TimeMs(t),
            (None, None) => RestorePoint::Latest,
        };
        let r = restore::restore(&repo, point, &a.to).await?;
        if a.json {
            println!("{}", r.json());
        } else {
            println!("{r}");
        }
        Ok(())
    })
}
