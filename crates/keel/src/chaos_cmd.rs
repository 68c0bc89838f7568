//! `keel chaos run`: a workload under injected faults, judged by the
//! checkers; prints a report table, writes the history and a JSON report,
//! and exits non-zero on any violation.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use keel_chaos::nemesis::Nemesis;
use keel_chaos::run::{NetMode, RunConfig};
use keel_chaos::soak::{soak, SeedOutcome};

/// Arguments of `keel chaos run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Nemeses, comma-separated, or `all`: kill-leader, kill-follower,
    /// kill-random, pause-leader, pause-follower, power-loss,
    /// rolling-restart, membership-churn; with FUSE lose-unsynced and
    /// power-loss-in-snapshot; with network namespaces isolate-leader,
    /// split-halves, bridge, one-way-leader, lossy-links, slow-links,
    /// drop-connections, kill-during-partition, partition-during-churn;
    /// clock-skew (with libfaketime).
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Least seconds under load (the run continues until every nemesis has
    /// struck once).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// Seed of the schedule and the workload: the same seed replays the
    /// same faults on the same targets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Voters in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    nodes: u64,
    /// Concurrent workload clients.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    clients: u64,
    /// Calm seconds before each fault.
    #[arg(long, default_value_t = 1.0)]
    quiet_s: f64,
    /// Seconds each fault stays in force.
    #[arg(long, default_value_t = 2.0)]
    hold_s: f64,
    /// Talk to the nodes directly instead of through the gateway.
    #[arg(long)]
    direct: bool,
    /// With --direct, send the workload to a follower (reads served there,
    /// writes forwarded) instead of the leader.
    #[arg(long, requires = "direct")]
    to_follower: bool,
    /// Where nodes talk: `netns` (one network namespace each, needs root;
    /// link faults possible), `loopback`, or `auto` (netns when possible).
    #[arg(long, default_value = "auto")]
    network: String,
    /// Run the cluster's links in plaintext instead of TLS (mutual TLS
    /// between the nodes, clients and the gateway over TLS), e.g. to tell
    /// a finding of the transport from one of the core.
    #[arg(long)]
    plaintext: bool,
    /// Where the cluster, the history and the report go (wiped at start).
    #[arg(long, default_value = "keel-data/chaos")]
    data_dir: PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Accept nemeses skipped for want of root, FUSE, libfaketime or
    /// iptables (else a skipped nemesis fails the run).
    #[arg(long)]
    allow_skip: bool,
    /// Customers opened for each client before the run; a client opens
    /// more itself once it has used them up.
    #[arg(long, default_value_t = keel_chaos::workload::CUSTOMERS_SEEDED_PER_CLIENT,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    customers_per_client: u64,
    /// Runs, with seeds --seed, --seed + 1, …; after them, unavailability
    /// per nemesis across all runs (p50, p99, max).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    runs: u64,
}

/// Subcommands of `keel chaos`.
#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Run a workload under faults and check the history.
    Run(RunArgs),
}

/// Runs `keel chaos`.
pub fn main(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Run(a) => run_cmd(a),
    }
}

fn seconds(s: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("{flag} must be a non-negative number"))
}

fn run_cmd(a: RunArgs) -> anyhow::Result<()> {
    let template = RunConfig {
        binary: std::env::current_exe().context("locating the keel binary")?,
        base_dir: a.data_dir.clone(),
        nodes: a.nodes,
        duration: Duration::from_secs(a.duration),
        seed: a.seed,
        nemeses: Nemesis::parse_list(&a.nemesis)?,
        clients: a.clients,
        quiet: seconds(a.quiet_s, "--quiet-s")?,
        hold: seconds(a.hold_s, "--hold-s")?,
        through_gateway: !a.direct,
        to_follower: a.to_follower,
        node_args: Vec::new(),
        network: NetMode::parse(&a.network)?,
        tls: !a.plaintext,
        customers_seeded_per_client: a.customers_per_client,
        allow_skip: a.allow_skip,
    };
    let show = |outcome: SeedOutcome<'_>| match outcome {
        // The report was already encoded once when its file was saved.
        SeedOutcome::Judged { report, .. } if a.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(report).unwrap_or_default()
            )
        }
        SeedOutcome::Judged { report, saved } => {
            print!("{}", keel_chaos::render::report_table(report));
            println!("{saved}");
        }
        SeedOutcome::Unfinished { seed, error } => {
            let e = anyhow::Error::from(error);
            eprintln!("run with seed {seed} could not finish: {e:#}");
            println!("seed {seed}: RUN FAILED: {e:#}");
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    let soaked = rt.block_on(soak(&template, &a.data_dir, a.runs, show))?;
    if a.runs > 1 {
        let figures = keel_chaos::across::across_runs(&soaked.reports);
        if a.json {
            println!("{}", serde_json::to_string_pretty(&figures)?);
        } else {
            print!("{}", keel_chaos::render::across_table(&figures, a.runs));
        }
    }
    if !soaked.failed.is_empty() {
        anyhow::bail!("violations found; replay with --seed {:?}", soaked.failed);
    }
    Ok(())
}
