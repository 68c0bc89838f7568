//! `keel bench backup`: the arguments of the backup benchmark; the
//! benchmark itself is `keel_bench::backup`.

use std::path::PathBuf;

use anyhow::Context;
use keel_bench::backup::{backup, backup_json, backup_table, BackupConfig};

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
    let cfg = BackupConfig {
        keel_bin: std::env::current_exe().context("locating the keel binary")?,
        orders: args.orders,
        clients: args.clients,
        duration_s: args.duration_s,
        layout: args.layout.parse()?,
        layout_name: args.layout,
        base_port: args.base_port,
        data_dir: args.data_dir,
        rounds: args.rounds,
        rate_mib_s: args.rate_mib_s,
    };
    let json = args.json;
    let say = |s: String| {
        if !json {
            println!("{s}");
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    let figures = rt
        .block_on(backup(&cfg, say))
        .context("keel bench backup")?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&backup_json(&cfg, &figures))?
        );
    } else {
        print!("{}", backup_table(&cfg, &figures));
    }
    Ok(())
}
