//! `keel bench run`, `keel bench compare` and `keel bench growth`: thin
//! argument structs over the `keel-bench` library. Each runs until done or
//! Ctrl-C; on Ctrl-C the benchmark future is dropped, which stops every
//! process and task it started.

use std::path::PathBuf;

use anyhow::Context;
use keel_bench::compare::{compare, CompareConfig};
use keel_bench::compare_table::format_report;
use keel_bench::growth::{growth, growth_text, GrowthConfig};
use keel_bench::report::run_text;
use keel_bench::run::{run, RunConfig};
use keel_bench::workload::{parse_counts, LoadSpec, Workload};

/// Arguments of `keel bench run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Keel endpoints (`host:port`, comma-separated): nodes or a gateway.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
    )]
    endpoint: Vec<String>,
    /// uniform, flash-sale, checkout, mixed or batch.
    #[arg(long, default_value = "uniform")]
    workload: String,
    /// Concurrent clients (open loop: connections sharing the rate).
    #[arg(long, default_value_t = 64)]
    clients: u64,
    /// Measured seconds, after a warm-up of a tenth of it.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Open loop at this many requests per second (latency from the
    /// intended send time); closed loop when absent.
    #[arg(long)]
    rate: Option<u64>,
    /// SKUs of the uniform, checkout, mixed and batch workloads.
    #[arg(long, default_value_t = 1_000)]
    skus: u64,
    /// Units of the flash-sale SKU.
    #[arg(long, default_value_t = 10_000)]
    flash_stock: u64,
    /// Orders per `/v1/batch` request (batch workload).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    batch_size: u64,
    /// Do not seed the catalogue (it must exist).
    #[arg(long)]
    no_seed: bool,
    #[command(flatten)]
    token: crate::admin_token::AdminToken,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `keel bench compare`.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// Client counts of the order workload (comma-separated).
    #[arg(long, default_value = "1,16,64")]
    clients: String,
    /// Measured seconds per point, after a warm-up of a tenth of it.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// SKUs orders spread over.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    skus: u64,
    /// Units of the flash-sale SKU.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    flash_stock: u64,
    /// Clients of the flash sale.
    #[arg(long, default_value_t = 64)]
    flash_clients: u64,
    /// Clients of the failover round.
    #[arg(long, default_value_t = 32)]
    failover_clients: u64,
    /// Port of Keel node 1 (nodes 2 and 3 follow).
    #[arg(long, default_value_t = 7501)]
    keel_port: u16,
    /// Client port of etcd member 0 (others follow; peers 10 above).
    #[arg(long, default_value_t = 7521)]
    etcd_port: u16,
    /// Port of the PostgreSQL primary (the standby uses the next).
    #[arg(long, default_value_t = 7541)]
    pg_port: u16,
    /// Leave etcd out.
    #[arg(long)]
    no_etcd: bool,
    /// Leave PostgreSQL out.
    #[arg(long)]
    no_postgres: bool,
    /// Where every system keeps its data (wiped per system).
    #[arg(long, default_value = "keel-data/bench-compare")]
    data_dir: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// Arguments of `keel bench growth`.
#[derive(clap::Args)]
pub struct GrowthArgs {
    /// Orders in the store at each measurement (comma-separated, ascending).
    #[arg(long, default_value = "10000,100000,1000000")]
    sizes: String,
    /// Concurrent clients of each measurement.
    #[arg(long, default_value_t = 64)]
    clients: u64,
    /// Measured seconds at each size.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// SKUs orders spread over.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    skus: u64,
    /// Port of node 1 (nodes 2 and 3 follow).
    #[arg(long, default_value_t = 7561)]
    keel_port: u16,
    /// The cluster's data directory (wiped at start).
    #[arg(long, default_value = "keel-data/bench-growth")]
    data_dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `fut` on a new runtime until it ends or Ctrl-C drops it.
fn block_on<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        tokio::select! {
            r = fut => r,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; everything started was stopped"),
        }
    })
}

fn progress(json: bool) -> bool {
    use std::io::IsTerminal;
    !json && std::io::stderr().is_terminal()
}

/// `keel bench run`.
pub fn run_cmd(a: RunArgs) -> anyhow::Result<()> {
    let workload: Workload = a.workload.parse()?;
    let spec = LoadSpec::new(a.clients, a.duration_s, a.rate)?;
    let cfg = RunConfig {
        endpoints: a.endpoint,
        token: Some(a.token.admin_token()?),
        workload,
        spec,
        skus: a.skus,
        flash_stock: a.flash_stock,
        batch_size: a.batch_size,
        seed: !a.no_seed,
        progress: progress(a.json),
        tag: keel_bench::compare::run_tag(),
    };
    let r = block_on(async { run(&cfg).await.context("keel bench run") })?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    print!("{}", run_text(&r));
    Ok(())
}

/// `keel bench compare`.
pub fn compare_cmd(a: CompareArgs) -> anyhow::Result<()> {
    let cfg = CompareConfig {
        keel_bin: std::env::current_exe().context("locating the keel binary")?,
        data_dir: a.data_dir,
        clients: parse_counts(&a.clients)?,
        duration_s: a.duration_s,
        skus: a.skus,
        flash_stock: a.flash_stock,
        flash_clients: a.flash_clients,
        failover_clients: a.failover_clients,
        keel_port: a.keel_port,
        etcd_port: a.etcd_port,
        pg_port: a.pg_port,
        etcd: !a.no_etcd,
        postgres: !a.no_postgres,
        progress: progress(a.json),
    };
    let r = block_on(async { compare(&cfg).await.context("keel bench compare") })?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", format_report(&r, cfg.failover_clients));
    }
    Ok(())
}

/// `keel bench growth`.
pub fn growth_cmd(a: GrowthArgs) -> anyhow::Result<()> {
    let cfg = GrowthConfig {
        keel_bin: std::env::current_exe().context("locating the keel binary")?,
        data_dir: a.data_dir,
        sizes: parse_counts(&a.sizes)?,
        spec: LoadSpec::new(a.clients, a.duration_s, None)?,
        skus: a.skus,
        keel_port: a.keel_port,
        progress: progress(a.json),
    };
    let rows = block_on(async { growth(&cfg).await.context("keel bench growth") })?;
    if a.json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        print!("{}", growth_text(&cfg, &rows));
    }
    Ok(())
}
