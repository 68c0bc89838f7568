//! `keel node`: run one replica. Configuration comes from an optional TOML
//! file, then `KEEL_*` environment variables, then flags (each overriding
//! the one before).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use keel_node::config::{parse_members, NodeOverrides};
use keel_node::{launch, NodeConfig};

/// Arguments of `keel node`.
#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, env = "KEEL_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id (> 0, unique in the cluster).
    #[arg(long, env = "KEEL_ID")]
    id: Option<u64>,
    /// HTTP listen address (public API and internal RPC).
    #[arg(long, env = "KEEL_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address peers and clients use for this node (default: --listen).
    #[arg(long, env = "KEEL_ADVERTISE")]
    advertise: Option<String>,
    /// Data directory (log, state, snapshots).
    #[arg(long, env = "KEEL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// File holding the admin bearer token (or set KEEL_ADMIN_TOKEN).
    /// Never a flag: a command line is readable by every user of the host.
    #[arg(long, env = "KEEL_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// File holding the cluster's shared secret (or set
    /// KEEL_CLUSTER_SECRET).
    #[arg(long, env = "KEEL_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    #[command(flatten)]
    tls: crate::tls_args::TlsArgs,
    /// Initialise a new cluster with these members if this node's log is
    /// empty: `1=127.0.0.1:7101,2=127.0.0.1:7102,...`.
    #[arg(long, env = "KEEL_BOOTSTRAP")]
    bootstrap: Option<String>,
    /// Start this node from a restored seed (`keel restore --to DIR`) when
    /// its data directory is empty: the seed's state is copied in and joins
    /// the new cluster named by --bootstrap (required with this flag, on
    /// every node). Ignored once the node has data.
    #[arg(long, env = "KEEL_FROM_SEED", requires = "bootstrap")]
    from_seed: Option<PathBuf>,
    /// Heartbeat interval in ms.
    #[arg(long, env = "KEEL_HEARTBEAT_MS")]
    heartbeat_ms: Option<u64>,
    /// Lower bound of the randomised election timeout in ms (>= 3 x heartbeat).
    #[arg(long, env = "KEEL_ELECTION_MIN_MS")]
    election_min_ms: Option<u64>,
    /// Upper bound of the randomised election timeout in ms.
    #[arg(long, env = "KEEL_ELECTION_MAX_MS")]
    election_max_ms: Option<u64>,
    /// Build a snapshot after this many log entries.
    #[arg(long, env = "KEEL_SNAPSHOT_EVERY")]
    snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot.
    #[arg(long, env = "KEEL_SNAPSHOT_KEEP")]
    snapshot_keep: Option<u64>,
    /// Most bytes of a snapshot sent to a lagging node in one RPC.
    #[arg(long, env = "KEEL_SNAPSHOT_CHUNK_BYTES")]
    snapshot_chunk_bytes: Option<u64>,
    /// Batches (Raft entries) the leader replicates at once; fewer means
    /// larger batches and fewer commits per order.
    #[arg(long, env = "KEEL_BATCH_IN_FLIGHT_MAX")]
    batch_in_flight_max: Option<usize>,
    /// Longest a command waits for its batch to fill (µs); 0 proposes at
    /// once when the pipeline has room.
    #[arg(long, env = "KEEL_BATCH_DELAY_US")]
    batch_delay_us: Option<u64>,
    /// Largest offset (ms) of this node's wall clock from a majority of the
    /// voters' with which it may stand for election and lead (default 500).
    #[arg(long, env = "KEEL_CLOCK_OFFSET_MAX_MS")]
    clock_offset_max_ms: Option<u64>,
    /// Where to POST alerts as they open and close (http:// or https://).
    #[arg(long, env = "KEEL_ALERT_WEBHOOK")]
    alert_webhook: Option<String>,
    /// Deliberate bugs to switch on, for the tests that prove the chaos
    /// checkers catch them; refused unless built with the test-bugs feature.
    #[arg(long, hide = true)]
    test_bugs: Option<String>,
}

/// The flags and environment variables that override the file.
fn overrides(a: &Args) -> anyhow::Result<NodeOverrides> {
    let secret = |file: &Option<PathBuf>, var: &str| {
        keel_secrets::read(file.as_deref(), var).with_context(|| format!("reading {var}"))
    };
    Ok(NodeOverrides {
        admin_token: secret(&a.admin_token_file, "KEEL_ADMIN_TOKEN")?,
        cluster_secret: secret(&a.cluster_secret_file, "KEEL_CLUSTER_SECRET")?,
        tls: a.tls.files(),
        insecure_plaintext: a.tls.insecure_plaintext,
        id: a.id,
        listen: a.listen,
        advertise: a.advertise.clone(),
        data_dir: a.data_dir.clone(),
        heartbeat_ms: a.heartbeat_ms,
        election_min_ms: a.election_min_ms,
        election_max_ms: a.election_max_ms,
        snapshot_every: a.snapshot_every,
        snapshot_keep: a.snapshot_keep,
        snapshot_chunk_bytes: a.snapshot_chunk_bytes,
        batch_in_flight_max: a.batch_in_flight_max,
        batch_delay_us: a.batch_delay_us,
        clock_offset_max_ms: a.clock_offset_max_ms,
        alert_webhook: a.alert_webhook.clone(),
    })
}

/// Runs the node until SIGTERM or Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = NodeConfig::load(args.config.as_deref(), overrides(&args)?)?;
    if let Some(list) = &args.test_bugs {
        let names = launch::enable_test_bugs(list)?;
        eprintln!("node {}: DELIBERATE BUGS ON: {names}", config.id);
    }
    let bootstrap = args.bootstrap.as_deref().map(parse_members).transpose()?;
    if let (Some(seed), Some(members)) = (&args.from_seed, &bootstrap) {
        if let Some(line) = launch::start_from_seed(&config, seed, members)? {
            eprintln!("{line}");
        }
    }
    Ok(launch::run_until_signal(config, bootstrap)?)
}
