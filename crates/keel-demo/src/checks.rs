//! The verdict on the run, by keel-chaos's checkers, so the demo proves
//! what a chaos run proves and by the same code: the replicas converge; in
//! the state read back every acknowledged write is durable, every place
//! applied at most once, nothing oversold, stock agrees with the orders,
//! money is conserved and the replicas agree ([`check_invariants`]); and
//! the flash sale's stock is linearizable over the recorded history
//! ([`check_stock`]).
//!
//! The flash sale is the one SKU checked for linearizability, not every SKU
//! and order as `keel_chaos::check_all` does. On a default 20 s demo
//! (95,829 places and pays, release build) `check_all` took 12.7 s, where
//! all else after the shopping (converging, reading the state back, the
//! backup and the restore) took about 3 s, the flash sale's check 0.5 s and
//! `check_invariants` 40 ms. Most of it goes to the ordinary SKUs, whose
//! stock never runs out, so that every order of theirs linearizes whatever
//! the cluster did; likewise an order's status, which only its own shopper
//! touches, by paying it. The flash sale, where buyers race for the last
//! units and the refusals say the stock was gone, is where a violation
//! would show.

use keel_chaos::run::converged_finding;
use keel_chaos::{check_invariants, check_stock, read_final_state, FinalState, Finding, History};
use keel_harness::LocalCluster;

use crate::seed::Catalogue;
use crate::shoppers::Shop;
use crate::DemoError;

/// Whether every replica, the restarted one included, reaches the same
/// applied index and digest.
pub async fn converged(cluster: &LocalCluster) -> Finding {
    converged_finding(cluster, &cluster.ids(), true).await
}

/// Reads back what the checks judge: the stock of every SKU, every account
/// with every customer's orders, and each replica's digest.
pub async fn read_state(cluster: &LocalCluster, shop: &Shop) -> Result<FinalState, DemoError> {
    let query = shop.catalogue.state_query()?;
    Ok(read_final_state(cluster, &shop.client, &query).await?)
}

/// Judges `history` against `state` read back after it, and the flash
/// sale of `catalogue` for linearizability.
pub fn judge(history: &History, state: &FinalState, catalogue: &Catalogue) -> Vec<Finding> {
    let mut findings = check_invariants(history, state);
    let flash = &catalogue.flash;
    findings.push(
        check_stock(history, flash, catalogue.flash_stock)
            .into_finding(format!("linearizable stock {flash}")),
    );
    findings
}
