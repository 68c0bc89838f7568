//! `keel`: the one binary. Each subcommand parses its arguments and hands
//! over to a library crate; no business logic lives here.

use clap::{Parser, Subcommand};

mod bench_apply;

/// Keel: a replicated, fault-tolerant order and inventory core.
#[derive(Parser)]
#[command(name = "keel", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the version and build information.
    Version,
    /// Benchmarks (figures, not tests).
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Apply throughput of the pure state machine on in-memory tables: the
    /// ceiling the replicated path is measured against.
    Apply(bench_apply::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Version => {
            println!("keel {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Cmd::Bench(BenchCmd::Apply(args)) => bench_apply::run(args),
    }
}
