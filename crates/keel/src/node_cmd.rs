//! `keel node`: run one replica. Configuration comes from an optional TOML
//! file, then `KEEL_*` environment variables, then flags (each overriding
//! the one before).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use keel_node::NodeConfig;

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
    /// Deliberate bugs to switch on, for the tests that prove the chaos
    /// checkers catch them; refused unless built with the test-bugs feature.
    #[arg(long, hide = true)]
    test_bugs: Option<String>,
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_members(s: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .with_context(|| format!("member {part:?} is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("bad node id in {part:?}"))?;
        let addr = addr.trim();
        if addr.parse::<SocketAddr>().is_err() {
            bail!("bad address in {part:?}: expected host:port like 127.0.0.1:7101");
        }
        if out.insert(id, addr.to_owned()).is_some() {
            bail!("node id {id} appears twice");
        }
    }
    if out.is_empty() {
        bail!("--bootstrap names no members");
    }
    Ok(out)
}

fn build_config(a: &Args) -> anyhow::Result<NodeConfig> {
    let mut c = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            NodeConfig::from_toml(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => NodeConfig::default(),
    };
    if let Some(v) = a.id {
        c.id = v;
        if a.data_dir.is_none() && a.config.is_none() {
            c.data_dir = PathBuf::from(format!("keel-data/node-{v}"));
        }
    }
    if let Some(v) = a.listen {
        c.listen = v;
    }
    if let Some(v) = &a.advertise {
        c.advertise = Some(v.clone());
    }
    if let Some(v) = &a.data_dir {
        c.data_dir = v.clone();
    }
    let secret = |file: &Option<PathBuf>, var: &str| {
        crate::secrets::read(file.as_deref(), var).with_context(|| format!("reading {var}"))
    };
    if let Some(v) = secret(&a.admin_token_file, "KEEL_ADMIN_TOKEN")? {
        c.admin_token = v;
    }
    if let Some(v) = secret(&a.cluster_secret_file, "KEEL_CLUSTER_SECRET")? {
        c.cluster_secret = v;
    }
    if let Some(f) = a.tls.files() {
        c.tls = Some(f);
    }
    if a.tls.insecure_plaintext {
        c.insecure_plaintext = true;
    }
    if let Some(v) = a.heartbeat_ms {
        c.raft.heartbeat_ms = v;
    }
    if let Some(v) = a.clock_offset_max_ms {
        c.clock_offset_max_ms = v;
    }
    if let Some(v) = a.election_min_ms {
        c.raft.election_min_ms = v;
    }
    if let Some(v) = a.election_max_ms {
        c.raft.election_max_ms = v;
    }
    if let Some(v) = a.snapshot_every {
        c.raft.snapshot_every_entries = v;
    }
    if let Some(v) = a.snapshot_keep {
        c.raft.keep_entries_behind_snapshot = v;
    }
    if let Some(v) = a.snapshot_chunk_bytes {
        c.raft.snapshot_chunk_bytes = v;
    }
    if let Some(v) = a.batch_in_flight_max {
        c.batch.in_flight_max = v;
    }
    if let Some(v) = a.batch_delay_us {
        c.batch.delay_us = v;
    }
    c.validate()?;
    Ok(c)
}

/// Runs the node until SIGTERM or Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = build_config(&args)?;
    if let Some(list) = &args.test_bugs {
        use keel_domain::test_bugs::{enable, TestBug};
        let bugs = TestBug::parse_list(list).map_err(anyhow::Error::msg)?;
        enable(&bugs).map_err(anyhow::Error::msg)?;
        eprintln!(
            "node {}: DELIBERATE BUGS ON: {}",
            config.id,
            bugs.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
        );
    }
    let bootstrap = args.bootstrap.as_deref().map(parse_members).transpose()?;
    if let (Some(seed), Some(members)) = (&args.from_seed, &bootstrap) {
        if let Some(at) =
            keel_store::seed::start_from_seed(seed, &config.data_dir, config.id, members)
                .with_context(|| format!("starting from the seed in {}", seed.display()))?
        {
            eprintln!(
                "node {}: data directory {} starts from the seed {} at log index {}",
                config.id,
                config.data_dir.display(),
                seed.display(),
                at.index
            );
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        keel_node::run(config, bootstrap, shutdown)
            .await
            .context("node stopped with an error")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_and_bad_ones_are_refused() {
        let m = parse_members("1=127.0.0.1:7101,2=127.0.0.1:7102").unwrap();
        assert_eq!(m.len(), 2);
        assert!(parse_members("1=nope").is_err());
        assert!(parse_members("x=127.0.0.1:1").is_err());
        assert!(parse_members("1=127.0.0.1:1,1=127.0.0.1:2").is_err());
        assert!(parse_members("").is_err());
    }
}
