//! `keel rebuild-state`: replace a stopped node's damaged state by one
//! derived from its own log and snapshot (`keel_store::rebuild`).

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `keel rebuild-state`.
#[derive(clap::Args)]
pub struct Args {
    /// The stopped node's data directory.
    #[arg(long, env = "KEEL_DATA_DIR")]
    data_dir: PathBuf,
}

/// Rebuilds and says what was done and what the next start does.
pub fn run(args: Args) -> anyhow::Result<()> {
    let r = keel_store::rebuild::rebuild_state(&args.data_dir)
        .with_context(|| format!("rebuilding the state in {}", args.data_dir.display()))?;
    println!("{r}");
    Ok(())
}
