//! `keel gateway`: run the load-balancing gateway. Configuration comes from
//! an optional TOML file, then `KEEL_GATEWAY_*` environment variables, then
//! flags (each overriding the one before).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use keel_gateway::config::{NodeEntry, Target};
use keel_gateway::{Gateway, GatewayConfig};

use crate::backup_cmd::ConfiguredBackups;

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
}

/// Builds the configuration from file, environment and flags.
pub fn config(args: &Args) -> anyhow::Result<GatewayConfig> {
    let mut c = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            GatewayConfig::from_toml(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => GatewayConfig::default(),
    };
    if let Some(l) = args.listen {
        c.listen = l;
    }
    if let Some(w) = args.workers {
        c.workers = w;
    }
    if let Some(n) = &args.nodes {
        c.nodes = n
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(NodeEntry::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("--nodes {n:?}"))?;
    }
    if let Some(t) = crate::secrets::read(args.admin_token_file.as_deref(), "KEEL_ADMIN_TOKEN")
        .context("reading the admin token")?
    {
        c.admin_token = Some(t);
    }
    if let Some(f) = args.tls.files() {
        c.tls = Some(f);
    }
    if args.tls.insecure_plaintext {
        c.insecure_plaintext = true;
    }
    for (flag, value, slot) in [
        ("--writes", &args.writes, &mut c.routing.writes),
        (
            "--linearizable-reads",
            &args.linearizable_reads,
            &mut c.routing.linearizable_reads,
        ),
        (
            "--local-reads",
            &args.local_reads,
            &mut c.routing.local_reads,
        ),
    ] {
        if let Some(v) = value {
            *slot = Target::parse(v).with_context(|| format!("{flag} {v:?}"))?;
        }
    }
    if let Some(v) = args.health_interval_ms {
        c.health.interval_ms = v;
    }
    if let Some(v) = args.phi_threshold {
        c.health.phi_threshold = v;
    }
    if let Some(v) = args.rate_per_s {
        c.rate_limit.rate_per_s = v;
    }
    if let Some(v) = args.rate_burst {
        c.rate_limit.burst = v;
    }
    if let Some(v) = args.body_bytes_max {
        c.limits.body_bytes_max = v;
    }
    if let Some(v) = args.request_timeout_ms {
        c.retry.request_timeout_ms = v;
    }
    if args.no_idempotency_key {
        c.retry.add_idempotency_key = false;
    }
    if args.no_discovery {
        c.discovery.enabled = false;
    }
    c.validate().context("gateway configuration")?;
    Ok(c)
}

/// Runs the gateway until Ctrl-C or SIGTERM.
/// Longest the backup schedule gets to stop after the gateway does. A
/// backup cut short leaves nothing visible (its manifest is written last),
/// so stopping it is safe, only wasteful; and the gateway's own stop must
/// stay short for whoever supervises it.
const BACKUP_STOP_GRACE: Duration = Duration::from_secs(5);

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = config(&args)?;
    let backups = match &config.backup {
        Some(b) => {
            if config.admin_token.is_none() {
                anyhow::bail!(
                    "[backup] needs admin_token: backups read the nodes' admin endpoints"
                );
            }
            Some(ConfiguredBackups::open(b)?)
        }
        None => None,
    };
    let nodes: Vec<String> = config.nodes.iter().map(|n| n.addr.clone()).collect();
    let token = config.admin_token.clone().unwrap_or_default();
    // Clients are served by the gateway's own worker threads; this runtime
    // only runs the probes, discovery and the backup schedule's child.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let gw = Gateway::start(config).await?;
        println!("keel gateway listening on http://{}", gw.local_addr());
        let schedule = match &backups {
            Some(b) => {
                let child = b
                    .command(&nodes, &token)?
                    .spawn()
                    .context("starting keel backup schedule")?;
                println!(
                    "keel gateway runs the [backup] schedule (pid {})",
                    child.id().unwrap_or(0)
                );
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
        if let Some(child) = schedule {
            stop_schedule(child).await;
        }
        Ok(())
    })
}

/// SIGTERM, so the schedule ends the backup in hand, then SIGKILL after
/// [`BACKUP_STOP_GRACE`].
async fn stop_schedule(mut child: tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(BACKUP_STOP_GRACE, child.wait()).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => eprintln!("backup schedule ended: {status}"),
        Ok(Err(e)) => eprintln!("backup schedule: {e}"),
        Err(_) => {
            let _ = child.kill().await;
            eprintln!("backup schedule killed after {BACKUP_STOP_GRACE:?}");
        }
    }
}
