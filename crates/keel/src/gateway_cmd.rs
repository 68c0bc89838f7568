//! `keel gateway`: run the load-balancing gateway. Configuration comes from
//! an optional TOML file, then `KEEL_GATEWAY_*` environment variables, then
//! flags (each overriding the one before).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use keel_backup::schedule::child::stop_child;
use keel_gateway::config::GatewayOverrides;
use keel_gateway::{Gateway, GatewayConfig};

use crate::backup_cmd::child_schedule;

/// Arguments of `keel gateway`.
#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, env = "KEEL_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Address clients connect to.
    #[arg(long, env = "KEEL_GATEWAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Threads serving clients (0: one per CPU core).
    #[arg(long, env = "KEEL_GATEWAY_WORKERS")]
    workers: Option<usize>,
    /// Nodes to start from: `host:port[*weight],...`.
    #[arg(long, env = "KEEL_GATEWAY_NODES")]
    nodes: Option<String>,
    /// File holding the admin token (or set KEEL_ADMIN_TOKEN): guards
    /// `/gateway/...` and reads `/v1/cluster` for discovery. Never a flag:
    /// a command line is readable by every user of the host.
    #[arg(long, env = "KEEL_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    #[command(flatten)]
    tls: crate::tls_args::TlsArgs,
    /// Where writes go: leader, or a policy (round_robin,
    /// weighted_round_robin, least_outstanding, p2c_ewma, consistent_hash).
    #[arg(long, env = "KEEL_GATEWAY_WRITES")]
    writes: Option<String>,
    /// Where linearizable reads go: leader, or a policy.
    #[arg(long, env = "KEEL_GATEWAY_LINEARIZABLE_READS")]
    linearizable_reads: Option<String>,
    /// Where `consistency=local` reads go: a policy (or leader).
    #[arg(long, env = "KEEL_GATEWAY_LOCAL_READS")]
    local_reads: Option<String>,
    /// Health probe interval (ms).
    #[arg(long, env = "KEEL_GATEWAY_HEALTH_INTERVAL_MS")]
    health_interval_ms: Option<u64>,
    /// Phi-accrual threshold.
    #[arg(long, env = "KEEL_GATEWAY_PHI_THRESHOLD")]
    phi_threshold: Option<f64>,
    /// Per-client requests per second (0: no limit).
    #[arg(long, env = "KEEL_GATEWAY_RATE_PER_S")]
    rate_per_s: Option<u32>,
    /// Per-client burst.
    #[arg(long, env = "KEEL_GATEWAY_RATE_BURST")]
    rate_burst: Option<u32>,
    /// Largest request body in bytes.
    #[arg(long, env = "KEEL_GATEWAY_BODY_BYTES_MAX")]
    body_bytes_max: Option<usize>,
    /// Overall deadline of one request, retries included (ms).
    #[arg(long, env = "KEEL_GATEWAY_REQUEST_TIMEOUT_MS")]
    request_timeout_ms: Option<u64>,
    /// Do not give keyless writes an Idempotency-Key (they are then never
    /// retried once sent).
    #[arg(long)]
    no_idempotency_key: bool,
    /// Use only the given nodes; do not learn others from the cluster.
    #[arg(long)]
    no_discovery: bool,
    /// A local backup repository (a directory `keel backup` writes to):
    /// the dashboard shows its last full and incremental backups and the
    /// recovery point.
    #[arg(long, env = "KEEL_GATEWAY_BACKUP_REPO")]
    backup_repo: Option<PathBuf>,
    /// That repository's key file (or set KEEL_BACKUP_KEY).
    #[arg(long, env = "KEEL_GATEWAY_BACKUP_KEY_FILE")]
    backup_key_file: Option<PathBuf>,
}

/// Builds the configuration from file, environment and flags.
pub fn config(a: Args) -> anyhow::Result<GatewayConfig> {
    let token = keel_secrets::read(a.admin_token_file.as_deref(), "KEEL_ADMIN_TOKEN")
        .context("reading the admin token")?;
    let overrides = GatewayOverrides {
        listen: a.listen,
        workers: a.workers,
        nodes: a.nodes,
        admin_token: token,
        tls: a.tls.files(),
        insecure_plaintext: a.tls.insecure_plaintext,
        writes: a.writes,
        linearizable_reads: a.linearizable_reads,
        local_reads: a.local_reads,
        health_interval_ms: a.health_interval_ms,
        phi_threshold: a.phi_threshold,
        rate_per_s: a.rate_per_s,
        rate_burst: a.rate_burst,
        body_bytes_max: a.body_bytes_max,
        request_timeout_ms: a.request_timeout_ms,
        no_idempotency_key: a.no_idempotency_key,
        no_discovery: a.no_discovery,
        backup_repo: a.backup_repo,
        backup_key_file: a.backup_key_file,
    };
    Ok(GatewayConfig::load(a.config.as_deref(), overrides)?)
}

/// Runs the gateway until Ctrl-C or SIGTERM, and its `[backup]` schedule
/// as a child process beside it.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = config(args)?;
    let backups = config.backup.as_ref().map(child_schedule).transpose()?;
    let nodes: Vec<String> = config.nodes.iter().map(|n| n.addr.clone()).collect();
    let token = config.admin_token.clone().unwrap_or_default();
    let ca = config.tls.as_ref().map(|t| t.ca.clone());
    // Clients are served by the gateway's own worker threads; this runtime
    // only runs the probes, discovery and the backup schedule's child.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let gw = Gateway::start(config).await?;
        let scheme = if gw.is_tls() { "https" } else { "http" };
        println!("keel gateway listening on {scheme}://{}", gw.local_addr());
        let schedule = match &backups {
            Some(b) => {
                let exe = std::env::current_exe().context("locating the keel binary")?;
                let child = b.command(exe, &nodes, &token, ca.as_deref()).spawn();
                let child = child.context("starting keel backup schedule")?;
                let pid = child.id().unwrap_or(0);
                println!("keel gateway runs the [backup] schedule (pid {pid})");
                Some(child)
            }
            None => None,
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        gw.run_until(async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await;
        if let Some(note) = schedule.map(stop_child) {
            if let Some(note) = note.await {
                eprintln!("{note}");
            }
        }
        Ok(())
    })
}
