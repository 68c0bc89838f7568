//! Reading a cluster's state back after a run, as the end-of-run checks
//! ([`crate::invariants`]) take it: the stock of every SKU the run supplied,
//! every account it set up with every order of each customer, and each
//! replica's digest at one applied index. Only the public API is read.
//!
//! A chaos run and `keel demo` both read their final state here, each
//! saying what it set up in a [`StateQuery`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_client::{Client, ClientError};
use keel_domain::{Account, AccountId, AccountKind, Order, Product, Sku};
use keel_harness::LocalCluster;

use crate::invariants::{
    FinalAccount, FinalLine, FinalOrder, FinalState, FinalStock, ReplicaDigest,
};
use crate::ChaosError;

/// Longest the replicas get to converge after the last heal, or to be read
/// at one applied index.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest reading the final state back may take (hundreds of reads).
pub const FINAL_STATE_TIMEOUT: Duration = Duration::from_secs(180);

/// Orders per page when listing a customer's orders.
const ORDERS_PAGE: usize = 100;

/// What a run set up, which its final state is read for.
///
/// Orders are not named one by one: every order of each customer account
/// read is listed, because the checks want every order in the cluster, not
/// only those a client heard of (an order made by a place whose answer was
/// lost, or made twice, is what they look for).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateQuery {
    /// Every SKU the run used, with the units it put on hand (setup stock
    /// plus restocks). A SKU that is gone is reported missing.
    pub supplied: BTreeMap<Sku, u64>,
    /// Accounts the run set up and saw acknowledged: each must still be
    /// there, else it is reported missing.
    pub accounts: Vec<AccountId>,
    /// Accounts whose opening was sent but never acknowledged: read if they
    /// exist, not missed if they do not.
    pub accounts_in_doubt: Vec<AccountId>,
}

/// Reads the final state of `cluster` through `admin` for `query`, within
/// [`FINAL_STATE_TIMEOUT`]. A product or account that is gone is a finding
/// ([`FinalState::missing`]), not an error; an error is a read that failed.
pub async fn read_final_state(
    cluster: &LocalCluster,
    admin: &Client,
    query: &StateQuery,
) -> Result<FinalState, ChaosError> {
    match tokio::time::timeout(FINAL_STATE_TIMEOUT, read(cluster, admin, query)).await {
        Ok(r) => r,
        Err(_) => Err(ChaosError::Setup(format!(
            "reading final state: not done in {FINAL_STATE_TIMEOUT:?}"
        ))),
    }
}

async fn read(
    cluster: &LocalCluster,
    admin: &Client,
    query: &StateQuery,
) -> Result<FinalState, ChaosError> {
    let mut state = FinalState {
        supplied: query.supplied.clone(),
        ..FinalState::default()
    };
    for sku in query.supplied.keys() {
        match get::<Product>(admin, &format!("/v1/products/{sku}")).await? {
            Some(p) => state.stock.push(FinalStock {
                sku: p.sku,
                on_hand: p.stock.on_hand,
                reserved: p.stock.reserved,
                sold: p.stock.ledger.sold,
            }),
            // Set up and acknowledged, so gone means lost: a finding, not a
            // failed read.
            None => state.missing.push(format!("product {sku}")),
        }
    }
    let accounts = query.accounts.iter().map(|a| (a, true));
    let in_doubt = query.accounts_in_doubt.iter().map(|a| (a, false));
    for (id, must_exist) in accounts.chain(in_doubt) {
        let Some(a) = get::<Account>(admin, &format!("/v1/accounts/{id}")).await? else {
            if must_exist {
                state.missing.push(format!("account {id}"));
            }
            continue;
        };
        if a.kind == AccountKind::Customer {
            state.orders.extend(customer_orders(admin, &a.id).await?);
        }
        state.accounts.push(FinalAccount {
            id: a.id,
            kind: a.kind,
            currency: a.currency,
            balance: a.balance,
        });
    }
    state.replicas = digests_at_one_index(cluster).await;
    Ok(state)
}

/// The entity at `path`, `None` when the cluster answers `not_found`.
async fn get<T: serde::de::DeserializeOwned>(
    admin: &Client,
    path: &str,
) -> Result<Option<T>, ChaosError> {
    match admin.get(path).await.and_then(|r| r.json()) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == Some("not_found") => Ok(None),
        Err(e) => Err(read_error(e)),
    }
}

fn read_error(e: ClientError) -> ChaosError {
    ChaosError::Setup(format!("reading final state: {e}"))
}

/// Every replica's digest, read at one applied index. An idle leader still
/// proposes clock ticks (`keel_node::server::CLOCK_TICK_LAG_MS`), so a
/// round of reads can straddle one and see replicas at different indexes,
/// where different digests prove nothing: read rounds again (for at most
/// [`CONVERGE_TIMEOUT`]) until one finds every replica at the same index,
/// and judge that round. Replicas that differ at one index are a violation
/// found at once; the last round is kept when none agrees on an index.
async fn digests_at_one_index(cluster: &LocalCluster) -> Vec<ReplicaDigest> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let mut round = Vec::new();
        for id in cluster.ids() {
            if let Some((applied_index, digest)) = cluster.digest(id).await {
                round.push(ReplicaDigest {
                    node: format!("node {id}"),
                    applied_index,
                    digest,
                });
            }
        }
        let one_index = round
            .windows(2)
            .all(|w| w[0].applied_index == w[1].applied_index);
        if one_index || Instant::now() >= deadline {
            return round;
        }
        tokio::time::sleep(keel_harness::POLL_INTERVAL).await;
    }
}

/// Every order of customer `id`, page by page.
async fn customer_orders(admin: &Client, id: &AccountId) -> Result<Vec<FinalOrder>, ChaosError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/accounts/{id}/orders?limit={ORDERS_PAGE}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = admin
            .get(&path)
            .await
            .map_err(|e| ChaosError::Setup(format!("orders of {id}: {e}")))?
            .body;
        let items: Vec<Order> = serde_json::from_value(page["items"].clone())
            .map_err(|e| ChaosError::Setup(format!("orders of {id}: {e}")))?;
        out.extend(items.into_iter().map(final_order));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(out),
        }
    }
}

fn final_order(o: Order) -> FinalOrder {
    FinalOrder {
        id: o.id,
        customer: o.customer,
        lines: o
            .lines
            .into_iter()
            .map(|l| FinalLine {
                sku: l.sku,
                qty: l.qty,
            })
            .collect(),
        status: o.status,
    }
}
