//! `keel bench cluster`: the arguments of the cluster benchmark; the
//! benchmark itself is `keel_bench::cluster`.

use std::path::PathBuf;

use anyhow::Context;
use keel_bench::cluster::{cluster, cluster_json, cluster_table, ClusterConfig};

/// Arguments of `keel bench cluster`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent clients (closed loop: each waits for its answer).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    clients: u64,
    /// Seconds of load per scenario (after a warm-up of a tenth of it).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_s: u64,
    /// SKUs of the uniform scenario.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    skus: u64,
    /// Port of node 1 of the benchmark cluster.
    #[arg(long, default_value_t = 7301)]
    base_port: u16,
    /// Where the benchmark cluster keeps its data (wiped at start).
    #[arg(long, default_value = "keel-data/bench")]
    data_dir: PathBuf,
    /// Send every request to the leader (as a leader-aware balancer does)
    /// instead of spreading them over all nodes (followers forward).
    #[arg(long)]
    leader_only: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = ClusterConfig {
        keel_bin: std::env::current_exe().context("locating the keel binary")?,
        clients: args.clients,
        duration_s: args.duration_s,
        skus: args.skus,
        base_port: args.base_port,
        data_dir: args.data_dir,
        leader_only: args.leader_only,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let rows = rt.block_on(cluster(&cfg)).context("keel bench cluster")?;
    if args.json {
        println!("{}", cluster_json(&cfg, &rows));
    } else {
        print!("{}", cluster_table(&cfg, &rows));
    }
    Ok(())
}
