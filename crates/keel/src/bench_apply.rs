//! `keel bench apply`: the arguments of the apply benchmark; the benchmark
//! itself is `keel_bench::apply`.

use std::path::PathBuf;

use anyhow::Context;
use keel_bench::apply::{apply, apply_json, apply_table, ApplyConfig, Tables};
use keel_domain::command::BATCH_COMMANDS_MAX;

/// Arguments of `keel bench apply`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Orders placed and paid per scenario and run.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    orders: u64,
    /// Commands per batch (one Raft entry): half placements, half payments.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(2..=BATCH_COMMANDS_MAX as u64))]
    batch: u64,
    /// SKUs of the uniform scenario.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    skus: u64,
    /// Customers placing the orders, round robin.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    customers: u64,
    /// Timed runs per scenario; the median run is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Where the state machine keeps its tables.
    #[arg(long, value_enum, default_value_t = TablesKind::Memory)]
    tables: TablesKind,
    /// With `--tables redb`: the directory of the scratch database (wiped
    /// before each run and removed after).
    #[arg(long, default_value = "keel-data/bench-apply")]
    data_dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Where the state machine keeps its tables.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TablesKind {
    /// `keel_domain::MemTables`: no disk.
    Memory,
    /// A replica's state-machine store on redb.
    Redb,
}

impl From<TablesKind> for Tables {
    fn from(t: TablesKind) -> Self {
        match t {
            TablesKind::Memory => Tables::Memory,
            TablesKind::Redb => Tables::Redb,
        }
    }
}

/// Runs the benchmark and prints its figures.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = ApplyConfig {
        orders: args.orders,
        batch: args.batch,
        skus: args.skus,
        customers: args.customers,
        runs: args.runs,
        tables: args.tables.into(),
        data_dir: args.data_dir,
    };
    let results = apply(&cfg).context("keel bench apply")?;
    if args.json {
        println!("{}", apply_json(&cfg, &results));
    } else {
        print!("{}", apply_table(&cfg, &results));
    }
    Ok(())
}
