//! `keel demo`: a local three-node cluster, a shop, and shoppers buying
//! through a leader kill, judged by the same checkers as a chaos run, then
//! backed up, destroyed, restored and judged again.
//!
//! The main types:
//!
//! - [`DemoConfig`] says how big a demo to run and where; [`run`] runs it,
//!   printing as it goes, and fails with [`DemoError::ChecksFailed`] when a
//!   check does not hold.
//! - [`seed::Catalogue`] names the shop: ordinary products, a flash sale with
//!   fewer units than buyers, funded customers.
//! - [`shoppers::Shoppers`] is the load, each place and pay recorded as a
//!   `keel_chaos::Op`; [`script::play`] kills the leader at 40% of the time
//!   and restarts it at 70%.
//! - [`checks`] judges the recorded `keel_chaos::History` and the state read
//!   back with keel-chaos's checkers (the invariants, and the flash sale's
//!   stock for linearizability); [`backup`] backs up, destroys,
//!   restores and judges the restored cluster the same way.
//! - [`figures::Figures`] are the numbers the [`report`] prints.
#![deny(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel_chaos::workload::Route;
use keel_chaos::Finding;
use keel_harness::LocalCluster;

pub mod backup;
pub mod checks;
pub mod cluster;
mod error;
pub mod figures;
pub mod operations;
pub mod report;
pub mod script;
pub mod seed;
pub mod shoppers;

pub use error::DemoError;

use crate::figures::Figures;
use crate::seed::Catalogue;
use crate::shoppers::{Shop, Shopped, Shoppers};

/// Nodes of the demo cluster: the smallest that survives a kill.
pub const NODES: u64 = 3;
/// The admin token of the demo's nodes (a development token: the demo
/// cluster lives on loopback and is wiped on the next run).
pub const ADMIN_TOKEN: &str = "keel-admin-dev";
/// Longest shopping time. A demo records every request: at the 6,500 or so
/// a second a quiet two-core machine's cluster takes, 120 s is about
/// 780,000 ops, within what one history holds
/// (`keel_chaos::HISTORY_OPS_MAX`, a million). Should a faster machine fill
/// it, the shoppers stop early and the demo says so; a longer run is a
/// chaos soak's job.
pub const DURATION_S_MAX: u64 = 120;
/// Most shoppers and flash-sale buyers together.
pub const SHOPPERS_MAX: u64 = 1_024;
/// How much longer than the shopping a reservation lives: past the checks
/// and the backup and restore, so none expires (the checkers' models have
/// no expiry).
const RESERVATION_MARGIN_S: u64 = 3_600;

/// What demo to run, and where.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// The `keel` binary the nodes and the gateway run.
    pub keel_bin: PathBuf,
    /// Seconds of shopping, 1 to [`DURATION_S_MAX`].
    pub duration_s: u64,
    /// Concurrent shoppers over the whole catalogue.
    pub shoppers: u64,
    /// Concurrent buyers in the flash sale.
    pub flash_buyers: u64,
    /// Units of the flash-sale SKU (fewer than its buyers will want).
    pub flash_stock: u64,
    /// Port of node 1; node N on `base_port + N - 1`. 0 picks free ports.
    pub base_port: u16,
    /// Port of the gateway; 0 picks a free one.
    pub gateway_port: u16,
    /// Where the cluster keeps its data and logs (wiped at start).
    pub data_dir: PathBuf,
    /// Shoppers go to the nodes directly, with the client's own failover,
    /// instead of through the gateway.
    pub direct: bool,
    /// TLS on every link (the default): a CA made under `data_dir`, mutual
    /// TLS between the nodes, the gateway and the shoppers over TLS.
    pub tls: bool,
}

impl DemoConfig {
    /// Says which setting is out of its range, if one is.
    pub fn check(&self) -> Result<(), DemoError> {
        if !(1..=DURATION_S_MAX).contains(&self.duration_s) {
            return Err(DemoError::Config(format!(
                "the shopping lasts 1 to {DURATION_S_MAX} s, not {}",
                self.duration_s
            )));
        }
        let all = self.shoppers.saturating_add(self.flash_buyers);
        if !(1..=SHOPPERS_MAX).contains(&all) {
            return Err(DemoError::Config(format!(
                "1 to {SHOPPERS_MAX} shoppers and flash buyers in all, not {all}"
            )));
        }
        Ok(())
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_s)
    }

    fn ttl_seconds(&self) -> u32 {
        u32::try_from(self.duration_s + RESERVATION_MARGIN_S).unwrap_or(u32::MAX)
    }
}

/// Runs the demo: start, seed, shop through the leader kill, judge, back
/// up, destroy, restore, judge again. `Err(DemoError::ChecksFailed)` names
/// the checks that did not hold.
pub async fn run(config: DemoConfig) -> Result<(), DemoError> {
    config.check()?;
    let (mut cluster, first_leader) = cluster::start(&config).await?;
    let shop = Arc::new(open_shop(&mut cluster, &config).await?);
    let since_ms = keel_protocol::wall_ms();
    let shoppers = Shoppers::start(shop.clone(), config.shoppers, config.flash_buyers);
    let kill = script::play(&mut cluster, first_leader, config.duration(), &shoppers).await?;
    let shopped = shoppers.finish().await?;
    print_shopping_done(&cluster, &shopped).await;
    let mut findings = judge_run(&cluster, &shop, &shopped, kill).await?;
    let gateway = match &shop.route {
        Route::Once(g) => Some(g.as_str()),
        Route::Failover => None,
    };
    let observed = operations::observe(&cluster, &shop.client, gateway, since_ms).await;
    for line in operations::lines(&observed, since_ms) {
        println!("{line}");
    }
    findings.extend(backup_and_restore(cluster, &config, &shop, &shopped).await?);
    println!();
    print!("{}", report::findings(&findings));
    report::verdict_of(&findings, &config.data_dir)?;
    println!("\nAll checks passed.");
    Ok(())
}

/// Connects the shop to `cluster` and seeds its catalogue.
async fn open_shop(cluster: &mut LocalCluster, config: &DemoConfig) -> Result<Shop, DemoError> {
    let (client, route) = cluster::connect(cluster, config).await?;
    let catalogue = Catalogue::new(config.flash_stock)?;
    seed::seed(&client, &catalogue).await?;
    println!(
        "Seeded {} products x {} units, flash sale {} x {} units, {} customers",
        catalogue.products.len(),
        seed::PRODUCT_STOCK,
        catalogue.flash,
        catalogue.flash_stock,
        catalogue.customers.len()
    );
    Ok(Shop {
        client,
        route,
        catalogue,
        ttl_seconds: config.ttl_seconds(),
    })
}

async fn print_shopping_done(cluster: &LocalCluster, shopped: &Shopped) {
    if shopped.ended_early {
        println!("The history is full: shopping ended early.");
    }
    let leader = cluster.leader().await;
    println!(
        "Shopping done in {:.1}s; new leader after the kill: {}",
        shopped.elapsed.as_secs_f64(),
        leader.map_or("none".into(), |l| format!("node {l}"))
    );
    println!("Waiting for every replica (including the restarted one) to converge...");
}

/// Converges, reads the state back, judges it, and prints the figures.
async fn judge_run(
    cluster: &LocalCluster,
    shop: &Shop,
    shopped: &Shopped,
    kill: Option<script::Kill>,
) -> Result<Vec<Finding>, DemoError> {
    let mut findings = vec![checks::converged(cluster).await];
    let state = checks::read_state(cluster, shop).await?;
    let catalogue = &shop.catalogue;
    findings.extend(checks::judge(&shopped.history, &state, catalogue));
    let figures = Figures::of(
        &shopped.history,
        shopped.elapsed,
        kill,
        Some(&state),
        (&catalogue.flash, catalogue.flash_stock),
    );
    let through_gateway = matches!(shop.route, Route::Once(_));
    print!(
        "{}",
        report::figures(&figures, through_gateway, shop.gateway_retries().await)
    );
    Ok(findings)
}

/// Backs `cluster` up, destroys it, restores it and judges the restored
/// cluster against the same history.
async fn backup_and_restore(
    cluster: LocalCluster,
    config: &DemoConfig,
    shop: &Shop,
    shopped: &Shopped,
) -> Result<Vec<Finding>, DemoError> {
    let query = shop.catalogue.state_query()?;
    let to = backup::Restore {
        keel_bin: &config.keel_bin,
        base_port: config.base_port,
        data_dir: &config.data_dir,
        admin_token: ADMIN_TOKEN,
        query: &query,
        tls: config.tls,
    };
    Ok(backup::backup_destroy_restore(cluster, &to, &shopped.history).await)
}
