//! `keel bench tls`: the arguments of the TLS benchmark; the benchmark
//! itself is `keel_bench::tls`.

use std::path::PathBuf;

use anyhow::Context;
use keel_bench::tls::{summary, table, tls, TlsBenchConfig};

/// Arguments of `keel bench tls`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent clients (closed loop).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    clients: u64,
    /// Seconds of load per phase (after a warm-up of a tenth of it).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_s: u64,
    /// Rounds, each measuring TLS off and on once (in alternating order).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
    /// SKUs orders are spread over.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    skus: u64,
    /// Port of node 1 of the benchmark clusters.
    #[arg(long, default_value_t = 7401)]
    base_port: u16,
    /// Where the benchmark clusters keep their data (wiped at start).
    #[arg(long, default_value = "keel-data/bench-tls")]
    data_dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = TlsBenchConfig {
        keel_bin: std::env::current_exe().context("locating the keel binary")?,
        clients: args.clients,
        duration_s: args.duration_s,
        rounds: args.rounds,
        skus: args.skus,
        base_port: args.base_port,
        data_dir: args.data_dir,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let runs = rt.block_on(tls(&cfg)).context("keel bench tls")?;
    let s = summary(&cfg, &runs);
    if args.json {
        println!("{s}");
    } else {
        print!("{}", table(&s));
    }
    Ok(())
}
