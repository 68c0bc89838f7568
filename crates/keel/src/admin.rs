//! `keel admin`: operator commands against a running cluster.

use anyhow::{anyhow, bail, Context};
use keel_client::{AttemptError, Client};

/// Arguments of `keel admin`.
#[derive(clap::Args)]
pub struct Args {
    /// A node to ask.
    #[arg(long, env = "KEEL_ENDPOINT", default_value = "127.0.0.1:7101")]
    endpoint: String,
    #[command(flatten)]
    token: crate::admin_token::AdminToken,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// The cluster as a table: id, address, role, term, applied index, lag, health.
    Status,
}

/// Runs an admin command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = Client::new(vec![args.endpoint.clone()], Some(args.token.admin_token()?));
        match args.cmd {
            Cmd::Status => match client.status_table_at(&args.endpoint).await {
                Ok(table) => print!("{table}"),
                Err(AttemptError::Problem(p)) => bail!("{p}"),
                Err(e) => {
                    return Err(anyhow!("{e:?}")).context(format!("asking {}", args.endpoint))
                }
            },
        }
        Ok(())
    })
}
