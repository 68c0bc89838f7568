//! `keel admin`: operator commands against a running cluster.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use keel_client::{AttemptError, Client};
use keel_domain::Role;

use crate::operate_cmd::{DrainArgs, LeaderCmd, MembersCmd, RecoverArgs, WeightsCmd};

/// Arguments of `keel admin`.
#[derive(clap::Args)]
pub struct Args {
    /// A node (or gateway) to ask.
    #[arg(long, env = "KEEL_ENDPOINT", default_value = "127.0.0.1:7101")]
    endpoint: String,
    /// The credential: the admin token or an API key's token, from
    /// `--admin-token-file` or `KEEL_ADMIN_TOKEN`.
    #[command(flatten)]
    token: crate::admin_token::AdminToken,
    /// The cluster's CA bundle (PEM): speak TLS to the endpoint. `keel up`
    /// prints where its bundle is.
    #[arg(long, env = "KEEL_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) to present, from `keel certs client
    /// --name <key id>`: it stands for that key, with no token needed.
    #[arg(long, env = "KEEL_TLS_CERT", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "KEEL_TLS_KEY", requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// The cluster as a table: id, address, role, term, applied index, lag, health.
    Status,
    /// API keys: create (the token is shown once), list, revoke.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Customer tokens: issue one, or revoke every token of an account.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// The audit trail, newest first: who did what, when, from where.
    Audit {
        /// Most records to print.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=500))]
        limit: u16,
    },
    /// Who the credential stands for.
    Whoami,
    /// Every member's alerts: those open now, then the latest that ended.
    Alerts {
        /// Most ended alerts to print per node.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(0..=500))]
        history: u16,
    },
    /// Membership: list, add (as a learner, then optionally promote),
    /// promote, remove.
    #[command(subcommand)]
    Members(MembersCmd),
    /// Leadership: hand it to another voter for maintenance.
    #[command(subcommand)]
    Leader(LeaderCmd),
    /// A gateway's weights per node.
    #[command(subcommand)]
    Weights(WeightsCmd),
    /// Take a node out of service: gateways stop sending it requests and
    /// leadership moves away from it.
    Drain(DrainArgs),
    /// After losing a quorum for good: make a stopped survivor the only
    /// member of a new cluster, keeping its data. Offline, on its data
    /// directory.
    Recover(RecoverArgs),
}

#[derive(clap::Subcommand)]
enum KeysCmd {
    /// Create a key; prints its id, then its token (shown once).
    Create {
        /// What the key is for (1 to 100 bytes).
        #[arg(long)]
        name: String,
        /// admin, operator (membership, backups), support (reads
        /// everything), merchant (catalogue and stock) or customer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// For a customer key: its account.
        #[arg(long)]
        account: Option<String>,
        /// Lifetime in seconds; never expires without.
        #[arg(long)]
        ttl_seconds: Option<u64>,
    },
    /// The keys (no secrets).
    List,
    /// Revoke a key: refused by every node from the revocation on.
    Revoke {
        /// The key's id (`k-…`).
        id: String,
    },
}

#[derive(clap::Subcommand)]
enum TokensCmd {
    /// Issue a customer token; prints it.
    Issue {
        /// The customer's account.
        account: String,
        /// Lifetime in seconds (default 30 days, at most 365 days).
        #[arg(long)]
        ttl_seconds: Option<u32>,
    },
    /// Revoke every token issued to the account so far.
    Revoke {
        /// The customer's account.
        account: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("one of {}", names.join(", "))
    })
}

/// An idempotency key for one command run: a retry inside the client
/// replays, a second run is a new request.
fn run_key(what: &str) -> String {
    format!(
        "admin-{what}-{}-{}",
        std::process::id(),
        keel_protocol::wall_ms()
    )
}

fn client(args: &Args) -> anyhow::Result<Client> {
    let endpoints = vec![args.endpoint.clone()];
    let tls = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        (Some(ca), Some(cert), Some(key)) => {
            Some(keel_tls::ClientTls::with_identity(keel_tls::TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })?)
        }
        (Some(ca), _, _) => Some(keel_tls::ClientTls::anonymous(ca.clone())?),
        _ => None,
    };
    // A client certificate stands for its key: no token is sent with it.
    let token = match args.tls_cert {
        Some(_) => None,
        None => Some(args.token.admin_token()?),
    };
    Ok(match tls {
        Some(t) => Client::with_tls(endpoints, token, std::sync::Arc::new(t)),
        None => Client::new(endpoints, token),
    })
}

/// Runs an admin command.
pub fn run(mut args: Args) -> anyhow::Result<()> {
    // Recovery is offline: no runtime, no credential, no endpoint.
    let cmd = std::mem::replace(&mut args.cmd, Cmd::Whoami);
    if let Cmd::Recover(r) = cmd {
        return crate::operate_cmd::recover(r);
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = client(&args)?;
        match cmd {
            Cmd::Status => match client.status_table_at(&args.endpoint).await {
                Ok(table) => print!("{table}"),
                Err(AttemptError::Problem(p)) => bail!("{p}"),
                Err(e) => {
                    return Err(anyhow!("{e:?}")).context(format!("asking {}", args.endpoint))
                }
            },
            Cmd::Keys(k) => keys(&client, k).await?,
            Cmd::Tokens(t) => tokens(&client, t).await?,
            Cmd::Audit { limit } => {
                let page = client.audit(None, Some(usize::from(limit))).await?;
                print!("{}", keel_client::audit_table(&page.items));
            }
            Cmd::Whoami => println!("{}", client.whoami().await?),
            Cmd::Alerts { history } => {
                let nodes = client.cluster_alerts(&args.endpoint).await?;
                print!(
                    "{}",
                    keel_client::alerts_table(&nodes, usize::from(history))
                );
            }
            Cmd::Members(m) => crate::operate_cmd::members(&client, &args.endpoint, m).await?,
            Cmd::Leader(l) => crate::operate_cmd::leader(&client, &args.endpoint, l).await?,
            Cmd::Weights(w) => crate::operate_cmd::weights(&client, w).await?,
            Cmd::Drain(d) => crate::operate_cmd::drain(&client, &args.endpoint, d).await?,
            Cmd::Recover(r) => crate::operate_cmd::recover(r)?,
        }
        Ok(())
    })
}

async fn keys(client: &Client, cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Create {
            name,
            role,
            account,
            ttl_seconds,
        } => {
            let created = client
                .create_key(
                    &name,
                    role,
                    account.as_deref(),
                    ttl_seconds,
                    &run_key("key"),
                )
                .await?;
            eprintln!(
                "created key {} ({}); its token follows and is not shown again:",
                created.key.id,
                created.key.role.as_str()
            );
            println!("{}", created.token);
        }
        KeysCmd::List => {
            let mut all = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = client.keys(cursor.as_deref()).await?;
                all.extend(page.items);
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            print!("{}", keel_client::keys_table(&all));
        }
        KeysCmd::Revoke { id } => {
            let k = client.revoke_key(&id, &run_key("revoke")).await?;
            println!("revoked key {} ({})", k.id, k.role.as_str());
        }
    }
    Ok(())
}

async fn tokens(client: &Client, cmd: TokensCmd) -> anyhow::Result<()> {
    match cmd {
        TokensCmd::Issue {
            account,
            ttl_seconds,
        } => {
            let t = client
                .issue_token(&account, ttl_seconds, &run_key("token"))
                .await?;
            eprintln!(
                "token for {} until {} UTC:",
                t.account,
                keel_protocol::clock::utc_text(t.expires_at_ms)
            );
            println!("{}", t.token);
        }
        TokensCmd::Revoke { account } => {
            let generation = client
                .revoke_tokens(&account, &run_key("revoke-tokens"))
                .await?;
            println!("revoked every token of {account}; new tokens carry generation {generation}");
        }
    }
    Ok(())
}
