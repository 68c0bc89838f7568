//! `keel admin`: operator commands against a running cluster.

use anyhow::{bail, Context};
use keel_client::{method_get, Client};
use serde_json::Value;

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

/// Formats `/v1/cluster` as a table.
pub fn status_table(v: &Value) -> String {
    let mut out = format!(
        "leader: {}   term: {}\n{:<4} {:<22} {:<8} {:<10} {:>6} {:>10} {:>6} {:<7}\n",
        v["leader_id"]
            .as_u64()
            .map_or("none".into(), |l| l.to_string()),
        v["term"],
        "ID",
        "ADDRESS",
        "MEMBER",
        "ROLE",
        "TERM",
        "APPLIED",
        "LAG",
        "HEALTHY"
    );
    let opt = |x: &Value| x.as_u64().map_or("-".to_string(), |n| n.to_string());
    for m in v["members"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<4} {:<22} {:<8} {:<10} {:>6} {:>10} {:>6} {:<7}\n",
            opt(&m["id"]),
            m["addr"].as_str().unwrap_or("?"),
            m["membership"].as_str().unwrap_or("?"),
            m["role"].as_str().unwrap_or("?"),
            opt(&m["term"]),
            opt(&m["applied_index"]),
            opt(&m["lag"]),
            if m["healthy"].as_bool() == Some(true) {
                "yes"
            } else {
                "NO"
            },
        ));
    }
    out
}

/// Runs an admin command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = Client::new(
            vec![args.endpoint.clone()],
            Some(args.token.admin_token.clone()),
        );
        match args.cmd {
            Cmd::Status => {
                let r = client
                    .call_at(&args.endpoint, method_get(), "/v1/cluster", None, None)
                    .await;
                match r {
                    Ok(r) => print!("{}", status_table(&r.body)),
                    Err(keel_client::AttemptError::Problem(p)) => bail!("{p}"),
                    Err(e) => {
                        return Err(anyhow::anyhow!("{e:?}"))
                            .context(format!("asking {}", args.endpoint))
                    }
                }
            }
        }
        Ok(())
    })
}
