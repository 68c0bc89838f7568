//! `keel bench apply`: in-memory apply throughput.

/// Arguments of `keel bench apply`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the benchmark and prints its figures.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
