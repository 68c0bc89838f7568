//! `keel admin members|leader|weights|drain|recover`: the operator's
//! actions on membership, leadership and the gateways' balancing, and the
//! offline recovery of a survivor after quorum loss.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use keel_client::Client;

/// `keel admin members`.
#[derive(clap::Subcommand)]
pub enum MembersCmd {
    /// The members: id, address, voter or learner, role, lag, health.
    List,
    /// Add a node as a learner (it catches up first), optionally promoting
    /// it to voter.
    Add {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Its address as its peers reach it (host:port).
        #[arg(long)]
        addr: String,
        /// Promote it to voter once it has caught up.
        #[arg(long)]
        promote: bool,
    },
    /// Promote a learner to voter.
    Promote {
        /// The learner's id.
        id: u64,
    },
    /// Remove a member. Refused when the voters left could not survive one
    /// more failure, unless `--force`.
    Remove {
        /// The member's id.
        id: u64,
        /// Remove even though the cluster could not survive one more
        /// failure afterwards.
        #[arg(long)]
        force: bool,
    },
}

/// `keel admin leader`.
#[derive(clap::Subcommand)]
pub enum LeaderCmd {
    /// Hand leadership to another voter for maintenance: writes pause for
    /// the hand-over and are not refused.
    Transfer {
        /// The voter to hand over to (default: the one holding most of the
        /// log).
        #[arg(long)]
        to: Option<u64>,
    },
}

/// `keel admin weights`.
#[derive(clap::Subcommand)]
pub enum WeightsCmd {
    /// A gateway's nodes with their weights and health.
    List {
        /// The gateway (host:port).
        #[arg(long)]
        gateway: String,
    },
    /// Set the weight a gateway gives a node (0: no new requests).
    Set {
        /// The gateway (host:port).
        #[arg(long)]
        gateway: String,
        /// The node's address as the gateway knows it.
        #[arg(long)]
        node: String,
        /// Its weight.
        #[arg(long)]
        weight: u32,
    },
}

/// Arguments of `keel admin drain`.
#[derive(clap::Args)]
pub struct DrainArgs {
    /// The node to drain.
    id: u64,
    /// Gateways that should stop sending it requests (repeat the flag).
    #[arg(long = "gateway")]
    gateways: Vec<String>,
}

/// Arguments of `keel admin recover`.
#[derive(clap::Args)]
pub struct RecoverArgs {
    /// Make this stopped survivor the only voter of a new cluster, keeping
    /// its data (etcd's --force-new-cluster). The only recovery there is.
    #[arg(long, required = true)]
    force_new_cluster: bool,
    /// The stopped survivor's data directory.
    #[arg(long, env = "KEEL_DATA_DIR")]
    data_dir: PathBuf,
    /// The survivor's node id.
    #[arg(long)]
    id: u64,
    /// Confirm without being asked: the other members are dropped for
    /// good, and entries only they held are lost.
    #[arg(long)]
    yes: bool,
}

/// Runs `keel admin members`.
pub async fn members(client: &Client, endpoint: &str, cmd: MembersCmd) -> anyhow::Result<()> {
    let status = match cmd {
        MembersCmd::List => client.cluster_at(endpoint).await?,
        MembersCmd::Add { id, addr, promote } => {
            let s = client.add_learner(endpoint, id, &addr).await?;
            if promote {
                client.promote(endpoint, id).await?
            } else {
                s
            }
        }
        MembersCmd::Promote { id } => client.promote(endpoint, id).await?,
        MembersCmd::Remove { id, force } => client.remove_member(endpoint, id, force).await?,
    };
    print!("{}", keel_client::status_table(&status));
    Ok(())
}

/// Runs `keel admin leader`.
pub async fn leader(client: &Client, endpoint: &str, cmd: LeaderCmd) -> anyhow::Result<()> {
    match cmd {
        LeaderCmd::Transfer { to } => {
            let t = client.transfer_leader(endpoint, to).await?;
            println!(
                "node {} leads (term {}); node {} handed over; writes paused {} ms",
                t["to"], t["term"], t["from"], t["paused_ms"]
            );
        }
    }
    Ok(())
}

/// Runs `keel admin weights`.
pub async fn weights(client: &Client, cmd: WeightsCmd) -> anyhow::Result<()> {
    let status = match cmd {
        WeightsCmd::List { gateway } => client.gateway_status(&gateway).await?,
        WeightsCmd::Set {
            gateway,
            node,
            weight,
        } => client.set_weight(&gateway, &node, weight).await?,
    };
    println!("{}", serde_json::to_string_pretty(&status)?);
    Ok(())
}

/// Runs `keel admin drain`.
pub async fn drain(client: &Client, endpoint: &str, args: DrainArgs) -> anyhow::Result<()> {
    for line in client.drain(endpoint, args.id, &args.gateways).await? {
        println!("{line}");
    }
    Ok(())
}

/// Runs `keel admin recover`: asks for confirmation unless `--yes`, then
/// forces the new cluster and says what the node holds.
pub fn recover(args: RecoverArgs) -> anyhow::Result<()> {
    if !args.yes && !confirmed(args.id)? {
        bail!("not confirmed: nothing changed");
    }
    let r = keel_store::recover::force_new_cluster(&args.data_dir, args.id)
        .with_context(|| format!("recovering {}", args.data_dir.display()))?;
    println!("{r}");
    Ok(())
}

/// Asks the operator on a terminal to type the node id back.
fn confirmed(id: u64) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing without confirmation: run it on a terminal, or add --yes");
    }
    eprint!(
        "This makes node {id} the only member of a new cluster. The other members are dropped \
         for good and must never start again on their data; entries only they held are lost.\n\
         Type the node id ({id}) to go on: "
    );
    std::io::stderr().flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim() == id.to_string())
}
