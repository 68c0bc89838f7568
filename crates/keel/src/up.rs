//! `keel up`: a local three-node cluster as child processes on 127.0.0.1,
//! data under `./keel-data`, TLS on every link with a CA made there;
//! restarts a child that exits on its own and stops them all cleanly on
//! Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use keel_harness::supervise::Supervisor;
use keel_harness::{local_spec, LocalCluster, READY_TIMEOUT};

/// Arguments of `keel up`.
#[derive(clap::Args)]
pub struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    nodes: u64,
    /// Port of node 1; node N listens on base_port + N - 1.
    #[arg(long, default_value_t = 7101)]
    base_port: u16,
    /// Port of the gateway in front of the nodes.
    #[arg(long, default_value_t = 7100)]
    gateway_port: u16,
    /// Start only the nodes, no gateway.
    #[arg(long)]
    no_gateway: bool,
    /// Data directory.
    #[arg(long, default_value = "keel-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    token: crate::admin_token::AdminToken,
    /// Start the nodes from a restored seed (`keel restore --to DIR`)
    /// instead of an empty cluster; needs a --data-dir without node data.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Run every link in plaintext (on loopback) instead of TLS.
    #[arg(long)]
    plaintext: bool,
}

/// How often `keel up` looks for a node or gateway that exited.
const SUPERVISE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// How to reach the cluster with curl: the CA to trust, and the token as a
/// variable unless it is the public development one.
fn reach_hint(cluster: &LocalCluster, entry: &str, token: &str) -> String {
    let dev = token == keel_node::config::DEV_ADMIN_TOKEN;
    let bearer = if dev { token } else { "$KEEL_ADMIN_TOKEN" };
    let mut s = String::new();
    if dev {
        s.push_str(&format!(
            "admin token: {token} (the public development token)\n"
        ));
    }
    match cluster.tls() {
        Some(t) => s.push_str(&format!(
            "TLS on: the cluster's CA is {} (`keel certs` manages it)\ntry: curl -s --cacert {} https://{entry}/v1/cluster -H \"Authorization: Bearer {bearer}\"\n\
             or:  keel admin --endpoint {entry} --tls-ca {} status   (keys, tokens, audit: keel admin --help)\n",
            t.dir().display(),
            t.bundle().display(),
            t.bundle().display()
        )),
        None => s.push_str(&format!(
            "try: curl -s http://{entry}/v1/cluster -H \"Authorization: Bearer {bearer}\"\n"
        )),
    }
    s
}

/// Runs the cluster until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<()> {
    let token = args.token.admin_token()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let exe = std::env::current_exe().context("locating the keel binary")?;
        let mut spec = local_spec(
            exe,
            args.nodes,
            args.base_port,
            args.data_dir.clone(),
            &token,
        );
        spec.tls = !args.plaintext;
        if let Some(seed) = &args.from {
            let has_data = (1..=args.nodes).any(|id| args.data_dir.join(format!("node-{id}")).exists());
            if has_data {
                anyhow::bail!(
                    "{} already holds node data: starting from {} would ignore it; use an empty --data-dir",
                    args.data_dir.display(),
                    seed.display()
                );
            }
            println!("starting from the restored seed in {}", seed.display());
            spec.seed = Some(seed.clone());
        }
        let mut cluster = LocalCluster::start(spec)?;
        let leader = cluster.wait_ready(READY_TIMEOUT).await.with_context(|| {
            format!("cluster not ready; see logs in {}", args.data_dir.display())
        })?;
        println!(
            "keel cluster of {} nodes is up (leader: node {leader})",
            args.nodes
        );
        let scheme = if cluster.tls().is_some() { "https" } else { "http" };
        let entry = if args.no_gateway {
            cluster.addr(leader)?
        } else {
            let gw = cluster.start_gateway_ready(args.gateway_port).await?;
            println!(
                "  gateway: {scheme}://{gw}  (status at /status, log {})",
                cluster.gateway_log_file().display()
            );
            println!(
                "  dashboard: {scheme}://{gw}/dashboard  (sign in with the admin token or an operator or support key)"
            );
            gw
        };
        for id in cluster.ids() {
            println!(
                "  node {id}: {scheme}://{}  (data {}, log {})",
                cluster.addr(id)?,
                cluster.data_dir(id).display(),
                cluster.log_file(id).display()
            );
        }
        print!("{}", reach_hint(&cluster, &entry, &token));
        println!(
            "Operate it with `keel admin --endpoint {}`: status, members, leader transfer, drain, alerts.",
            cluster.addr(leader)?
        );
        println!("Ctrl-C stops the cluster; a node or gateway that exits on its own is restarted.");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut supervisor = Supervisor::new();
        let mut look = tokio::time::interval(SUPERVISE_EVERY);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = look.tick() => {
                    for event in supervisor.tick(&mut cluster, std::time::Instant::now()) {
                        println!("{event}");
                    }
                }
            }
        }
        println!("stopping...");
        cluster.stop_all();
        println!("stopped");
        Ok(())
    })
}
