//! `keel bench gateway`: the arguments of the gateway benchmark; the
//! benchmark itself is `keel_bench::gateway`.

use std::path::PathBuf;

use anyhow::Context;
use keel_bench::gateway::{gateway, gateway_json, gateway_text, GatewayBenchConfig};

/// Arguments of `keel bench gateway`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent clients of the throughput workloads (closed loop).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    clients: u64,
    /// Seconds of load per workload and target (run in two halves: direct,
    /// gateway, nginx, then back), and of the failover round; each run
    /// after a warm-up of a tenth of it.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=3600))]
    duration_s: u64,
    /// Times each workload's sequence of targets runs, `duration_s` per
    /// target each time. Each round's gateway-to-nginx ratio is printed
    /// beside the ratio of the totals, so a comparison shows its
    /// run-to-run spread on a noisy machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Sequential local reads per target in the one-client latency probe.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    probe_requests: u64,
    /// SKUs read and ordered.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    skus: u64,
    /// nginx worker processes (default: as many as the gateway's worker
    /// threads, i.e. the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    nginx_workers: Option<u32>,
    /// Port of node 1 of the benchmark cluster.
    #[arg(long, default_value_t = 7401)]
    base_port: u16,
    /// Where the cluster, the gateway's log and nginx's files go (wiped at
    /// start).
    #[arg(long, default_value = "keel-data/bench-gateway")]
    data_dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = GatewayBenchConfig {
        keel_bin: std::env::current_exe().context("locating the keel binary")?,
        clients: args.clients,
        duration_s: args.duration_s,
        rounds: args.rounds,
        probe_requests: args.probe_requests,
        skus: args.skus,
        nginx_workers: args.nginx_workers,
        base_port: args.base_port,
        data_dir: args.data_dir,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let figures = rt.block_on(gateway(&cfg)).context("keel bench gateway")?;
    if args.json {
        println!("{}", gateway_json(&cfg, &figures));
    } else {
        print!("{}", gateway_text(&cfg, &figures));
    }
    Ok(())
}
