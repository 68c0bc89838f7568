//! `keel`: the one binary. Each subcommand parses its arguments and hands
//! over to a library crate; no business logic lives here.

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a node allocates and frees
/// many small buffers per request and per redb page, and glibc's malloc
/// spent a fifth of a node's CPU on it under load (`keel bench cluster`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod admin_token;
mod backup_cmd;
mod bench_apply;
mod bench_backup;
mod bench_cluster;
mod bench_cmd;
mod bench_gateway;
mod bench_tls;
mod certs_cmd;
mod chaos_cmd;
mod demo;
mod gateway_cmd;
mod node_cmd;
mod operate_cmd;
mod rebuild_cmd;
mod tls_args;
mod up;

/// Keel: a replicated, fault-tolerant order and inventory core.
#[derive(Parser)]
#[command(name = "keel", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the version.
    Version,
    /// Run one node of a cluster.
    Node(Box<node_cmd::Args>),
    /// Rebuild a stopped node's damaged state (state.redb) from its own
    /// log and snapshot; the damaged file is kept aside.
    RebuildState(rebuild_cmd::Args),
    /// Run the load-balancing gateway in front of a cluster.
    Gateway(Box<gateway_cmd::Args>),
    /// Run a local cluster (3 nodes on 127.0.0.1, data in ./keel-data) until Ctrl-C.
    Up(up::Args),
    /// Start a cluster, shop on it through a leader kill, and check nothing was lost.
    Demo(demo::Args),
    /// Fault injection: a workload under faults, judged by checkers.
    #[command(subcommand)]
    Chaos(chaos_cmd::Cmd),
    /// Operator commands against a running cluster.
    Admin(admin::Args),
    /// The cluster's certificate authority: create it, issue node, gateway
    /// and client certificates, roll it over.
    #[command(subcommand)]
    Certs(certs_cmd::Cmd),
    /// Backups: create (full, incremental, differential, cold), list,
    /// verify, repair, prune, schedule.
    #[command(subcommand)]
    Backup(backup_cmd::Cmd),
    /// Restore backups into a new data directory, to the latest point, a
    /// log index or a time; start a cluster from it with `keel up --from`.
    Restore(backup_cmd::RestoreArgs),
    /// Benchmarks (figures, not tests).
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Apply throughput of the pure state machine on in-memory tables: the
    /// ceiling the replicated path is measured against.
    Apply(bench_apply::Args),
    /// Orders/s and latency of a local 3-node cluster (fsync on) under N
    /// concurrent HTTP clients, uniform and hot-SKU.
    Cluster(bench_cluster::Args),
    /// The gateway side by side with nginx in front of a local 3-node
    /// cluster: added latency, throughput, failover gap and detection time.
    Gateway(bench_gateway::Args),
    /// Backup and restore of a store of 1M orders against the disk's own
    /// write speed, erasure-code throughput, and the order throughput kept
    /// while hot backups run.
    Backup(bench_backup::Args),
    /// A load generator against a running Keel endpoint: uniform,
    /// flash-sale, checkout, mixed or batch; closed or open loop.
    Run(bench_cmd::RunArgs),
    /// Keel side by side with etcd (3 members) and PostgreSQL (synchronous
    /// standby) on loopback: orders, flash sale, failover; one table.
    Compare(bench_cmd::CompareArgs),
    /// Throughput and node memory as the store grows (10k to 1M orders).
    Growth(bench_cmd::GrowthArgs),
    /// TLS on every link against none, in alternating rounds: orders/s,
    /// p99 and gateway reads/s with pooled connections.
    Tls(bench_tls::Args),
}

fn main() -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "warn,keel=info,keel_node=info,keel_gateway=info,keel_chaos=info,keel_backup=warn,keel_backup_repo=warn",
                )
            }),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour only on a terminal: a node's or gateway's log file
                // must not carry escape codes.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        // Counts warnings and errors and notices kinds never seen before,
        // for the alerts of a node or gateway this process runs.
        .with(keel_alert::LogWatch::process().clone())
        .init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Version => {
            println!("keel {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Cmd::Node(a) => node_cmd::run(*a),
        Cmd::RebuildState(a) => rebuild_cmd::run(a),
        Cmd::Gateway(a) => gateway_cmd::run(*a),
        Cmd::Up(a) => up::run(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Admin(a) => admin::run(a),
        Cmd::Certs(c) => certs_cmd::run(c),
        Cmd::Backup(c) => backup_cmd::run(c),
        Cmd::Restore(a) => backup_cmd::run_restore(a),
        Cmd::Chaos(c) => chaos_cmd::main(c),
        Cmd::Bench(BenchCmd::Apply(args)) => bench_apply::run(args),
        Cmd::Bench(BenchCmd::Cluster(args)) => bench_cluster::run(args),
        Cmd::Bench(BenchCmd::Gateway(args)) => bench_gateway::run(args),
        Cmd::Bench(BenchCmd::Backup(args)) => bench_backup::run(args),
        Cmd::Bench(BenchCmd::Run(args)) => bench_cmd::run_cmd(args),
        Cmd::Bench(BenchCmd::Compare(args)) => bench_cmd::compare_cmd(args),
        Cmd::Bench(BenchCmd::Growth(args)) => bench_cmd::growth_cmd(args),
        Cmd::Bench(BenchCmd::Tls(args)) => bench_tls::run(args),
    }
}
