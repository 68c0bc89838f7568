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
    match &r.kept_aside {
        Some(p) => println!("kept the old state aside as {}", p.display()),
        None => println!("there was no state file"),
    }
    match r.from_snapshot {
        Some(Some(l)) => println!("the state starts from this node's snapshot up to {l}"),
        Some(None) | None => println!("the state starts empty"),
    }
    println!(
        "log purged up to {}, committed up to {}: start the node as before; it re-applies its \
         log and catches up from the leader",
        r.purged.map_or("nothing".to_owned(), |p| p.to_string()),
        r.committed_index
            .map_or("nothing known".to_owned(), |i| i.to_string()),
    );
    Ok(())
}
