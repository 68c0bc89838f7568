//! The demo's cluster: three nodes started from an empty data directory,
//! and the way in for the shoppers, through the gateway or straight to the
//! nodes.

use keel_chaos::workload::Route;
use keel_client::Client;
use keel_harness::{clear_dir, local_spec, LocalCluster, READY_TIMEOUT};

use crate::{DemoConfig, DemoError, ADMIN_TOKEN, NODES};

/// Starts the cluster in a wiped `config.data_dir` and waits for a leader;
/// returns the cluster and its first leader.
pub async fn start(config: &DemoConfig) -> Result<(LocalCluster, u64), DemoError> {
    clear_dir(&config.data_dir)?;
    let mut spec = local_spec(
        &config.keel_bin,
        NODES,
        config.base_port,
        &config.data_dir,
        ADMIN_TOKEN,
    );
    spec.tls = config.tls;
    let cluster = LocalCluster::start(spec)?;
    println!(
        "Starting a {NODES}-node Keel cluster on {} (data in {})",
        cluster.endpoints().join(", "),
        config.data_dir.display()
    );
    match cluster.tls() {
        Some(t) => println!(
            "TLS on every link: a CA in {}, mutual TLS between the nodes",
            t.dir().display()
        ),
        None => println!("TLS off: every link is plaintext on loopback"),
    }
    let leader = cluster.wait_ready(READY_TIMEOUT).await?;
    println!("Leader elected: node {leader}");
    Ok((cluster, leader))
}

/// The client and route the shoppers use: the gateway, started here, with
/// one attempt per request; or, with `config.direct`, every node with the
/// client's own failover.
pub async fn connect(
    cluster: &mut LocalCluster,
    config: &DemoConfig,
) -> Result<(Client, Route), DemoError> {
    if config.direct {
        return Ok((cluster.admin_client(), Route::Failover));
    }
    let gateway = cluster.start_gateway_ready(config.gateway_port).await?;
    let scheme = if cluster.tls().is_some() {
        "https"
    } else {
        "http"
    };
    println!("Gateway up on {scheme}://{gateway}: shoppers go through it, one attempt per request");
    println!(
        "Dashboard: {scheme}://{gateway}/dashboard (sign in with the admin token; the demo runs \
         on the development one)"
    );
    let client = cluster.client(vec![gateway.clone()], Some(ADMIN_TOKEN.to_owned()));
    Ok((client, Route::Once(gateway)))
}
