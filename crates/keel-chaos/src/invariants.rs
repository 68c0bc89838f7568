//! End-of-run checks that are not about ordering: what the cluster holds
//! after the run, read back through the public API by the harness, compared
//! with what clients were told during it. Plain data in, [`Finding`]s out.
//!
//! # What the workload must guarantee
//! - Keel orders do not keep their idempotency key, so a place's
//!   **signature** `(customer, sku, qty)` is how an order read back is traced
//!   to the request that made it. Where no other place of the run uses it
//!   (the chaos workload draws qty without repetition per customer and SKU),
//!   each place is judged alone. Places that share one (a load that buys the
//!   same thing again, as `keel demo`'s shoppers do) are judged together, by
//!   count ([`check_places_applied_once`]): that still catches an order made
//!   twice, unless an unknown place of the same signature did not apply.
//! - `orders` lists **every** order in the cluster after the run (every
//!   customer's order list), and the run neither refunds, ships nor changes
//!   stock except by the restocks counted in [`FinalState::supplied`].

use std::collections::{BTreeMap, BTreeSet};

use keel_domain::{AccountId, AccountKind, Currency, Minor, OrderId, OrderStatus, Sku};
use serde::{Deserialize, Serialize};

use crate::finding::{first_few, Finding};
use crate::history::{History, Op, OpKind, OpResult, Outcome};

/// One line of an order read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalLine {
    /// The product.
    pub sku: Sku,
    /// Units.
    pub qty: u64,
}

/// An order read back after the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalOrder {
    /// Its id.
    pub id: OrderId,
    /// The buying customer.
    pub customer: AccountId,
    /// Its lines (the chaos workload places one line per order).
    pub lines: Vec<FinalLine>,
    /// Its status at the end.
    pub status: OrderStatus,
}

/// One SKU's stock read back after the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalStock {
    /// The product.
    pub sku: Sku,
    /// Units held.
    pub on_hand: u64,
    /// Units held for reserved orders.
    pub reserved: u64,
    /// Units that left with paid orders (the ledger's `sold`).
    pub sold: u64,
}

/// An account read back after the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalAccount {
    /// Its id.
    pub id: AccountId,
    /// Customer, merchant or external.
    pub kind: AccountKind,
    /// The currency of its balance.
    pub currency: Currency,
    /// Its balance.
    pub balance: Minor,
}

/// One replica's state digest, read at its applied index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDigest {
    /// The node, for the report.
    pub node: String,
    /// The log index its state was at when the digest was taken.
    pub applied_index: u64,
    /// The digest, as the node reports it.
    pub digest: String,
}

/// Everything the end-of-run checks need besides the history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalState {
    /// Every order in the cluster.
    pub orders: Vec<FinalOrder>,
    /// Stock of every SKU the run used.
    pub stock: Vec<FinalStock>,
    /// Every account.
    pub accounts: Vec<FinalAccount>,
    /// Each replica's digest, taken once all had applied the same index.
    pub replicas: Vec<ReplicaDigest>,
    /// Units the harness put on hand per SKU (setup stock plus restocks):
    /// the most that can ever be sold or reserved.
    pub supplied: BTreeMap<Sku, u64>,
    /// Products and accounts the run set up (acknowledged before the first
    /// fault) that the cluster no longer has.
    pub missing: Vec<String>,
}

/// Every end-of-run check, in a fixed order.
pub fn check_invariants(history: &History, state: &FinalState) -> Vec<Finding> {
    vec![
        check_setup_durable(&state.missing),
        check_acknowledged_durable(history, &state.orders),
        check_places_applied_once(history, &state.orders),
        check_no_oversell(&state.stock, &state.supplied),
        check_stock_matches_orders(&state.stock, &state.orders, &state.supplied),
        check_money_conserved(&state.accounts),
        check_replicas_agree(&state.replicas),
        check_no_early_expiry(history, &state.orders),
    ]
}

/// No reservation expired: every order of a chaos run is placed with a
/// lifetime longer than the run (its length plus an hour), so an order seen
/// expired, by a read during the run or in the final state, expired early.
/// That is what a state clock moved forward by a leader whose wall clock is
/// far ahead does (the clock-skew nemesis skews by more than any lifetime
/// and than the idempotency retention).
pub fn check_no_early_expiry(history: &History, orders: &[FinalOrder]) -> Finding {
    let mut problems: Vec<String> = orders
        .iter()
        .filter(|o| o.status == OrderStatus::Expired)
        .map(|o| format!("order {} is expired at the end of the run", o.id.0))
        .collect();
    for op in history.ops() {
        let seen = match (&op.kind, &op.outcome) {
            (OpKind::ReadOrder { order }, Outcome::Ok(OpResult::Order { status: Some(s) })) => {
                Some((*order, *s))
            }
            (
                OpKind::Pay { order, .. } | OpKind::Cancel { order, .. },
                Outcome::Ok(OpResult::Status { status }),
            ) => Some((*order, *status)),
            _ => None,
        };
        if let Some((order, OrderStatus::Expired)) = seen {
            problems.push(format!(
                "order {} read expired at {:.3} s",
                order.0,
                op.complete_ns as f64 / 1e9
            ));
        }
    }
    Finding::from_problems(
        "no reservation expired early",
        "no order expired: every lifetime outlasts the run".to_string(),
        &problems,
    )
}

/// Everything the run set up before the first fault (products, accounts)
/// is still there.
pub fn check_setup_durable(missing: &[String]) -> Finding {
    Finding::from_problems(
        "setup writes durable",
        "every product and account set up is there".to_string(),
        &missing
            .iter()
            .map(|m| format!("{m} is gone"))
            .collect::<Vec<_>>(),
    )
}

/// Every acknowledged write is still there: an acknowledged place's order
/// exists with the customer, SKU and quantity asked for (and answered); an
/// acknowledged pay left the order sold (paid or later); an acknowledged
/// cancel left it cancelled.
pub fn check_acknowledged_durable(history: &History, orders: &[FinalOrder]) -> Finding {
    let by_id: BTreeMap<OrderId, &FinalOrder> = orders.iter().map(|o| (o.id, o)).collect();
    let mut problems = Vec::new();
    let mut acknowledged = 0;
    for (i, op) in history.ops().iter().enumerate() {
        let Outcome::Ok(result) = &op.outcome else {
            continue;
        };
        let problem = match (&op.kind, result) {
            (
                OpKind::PlaceOrder {
                    customer, sku, qty, ..
                },
                OpResult::Placed { order, qty: got },
            ) => {
                acknowledged += 1;
                let want = [FinalLine {
                    sku: sku.clone(),
                    qty: *qty,
                }];
                match by_id.get(order) {
                    None => Some(format!("order {order} is gone")),
                    Some(_) if got != qty => Some(format!("order {order} answered qty {got}")),
                    Some(o) if o.customer != *customer || o.lines != want => {
                        Some(format!("order {order} holds {} {:?}", o.customer, o.lines))
                    }
                    Some(_) => None,
                }
            }
            (OpKind::Pay { order, .. }, OpResult::Status { .. }) => {
                acknowledged += 1;
                final_status_problem(&by_id, *order, "paid", OrderStatus::is_sold)
            }
            (OpKind::Cancel { order, .. }, OpResult::Status { .. }) => {
                acknowledged += 1;
                final_status_problem(&by_id, *order, "cancelled", |s| s == OrderStatus::Cancelled)
            }
            _ => None,
        };
        if let Some(p) = problem {
            problems.push(format!("#{i} {op}: {p}"));
        }
    }
    Finding::from_problems(
        "acknowledged writes durable",
        format!("{acknowledged} acknowledged writes found in the final state"),
        &problems,
    )
}

fn final_status_problem(
    by_id: &BTreeMap<OrderId, &FinalOrder>,
    order: OrderId,
    want: &str,
    holds: impl Fn(OrderStatus) -> bool,
) -> Option<String> {
    match by_id.get(&order) {
        None => Some(format!("order {order} is gone")),
        Some(o) if !holds(o.status) => Some(format!(
            "order {order} is {} at the end, not {want}",
            o.status.as_str()
        )),
        Some(_) => None,
    }
}

/// What traces an order back to the place that made it (see the module
/// docs).
type Signature = (AccountId, Sku, u64);

fn signature_of(order: &FinalOrder) -> Option<Signature> {
    match order.lines.as_slice() {
        [line] => Some((order.customer.clone(), line.sku.clone(), line.qty)),
        _ => None,
    }
}

/// Each place took effect as often as its outcome allows: an acknowledged
/// one exactly once, an unknown one at most once, a failed one never; and
/// no order exists that no place asked for. Places that share a signature
/// are judged together: their orders number at least the acknowledged ones
/// and at most those plus the unknown ones.
pub fn check_places_applied_once(history: &History, orders: &[FinalOrder]) -> Finding {
    let mut places: BTreeMap<Signature, Vec<(usize, &Op)>> = BTreeMap::new();
    for (i, op) in history.ops().iter().enumerate() {
        if let OpKind::PlaceOrder {
            customer, sku, qty, ..
        } = &op.kind
        {
            places
                .entry((customer.clone(), sku.clone(), *qty))
                .or_default()
                .push((i, op));
        }
    }
    let mut made: BTreeMap<Signature, Vec<OrderId>> = BTreeMap::new();
    let mut problems = Vec::new();
    for o in orders {
        match signature_of(o) {
            Some(sig) => made.entry(sig).or_default().push(o.id),
            None => problems.push(format!(
                "order {} has {} lines; the workload places one",
                o.id,
                o.lines.len()
            )),
        }
    }
    for (sig, ids) in &made {
        match places.get(sig) {
            None => problems.push(format!(
                "orders {} ({} {} x{}) match no place request",
                list(ids),
                sig.0,
                sig.1,
                sig.2
            )),
            Some(ops) => problems.extend(too_many_orders(sig, ops, ids)),
        }
    }
    for (sig, ops) in &places {
        let ids = made.get(sig).map_or(&[][..], Vec::as_slice);
        problems.extend(too_few_orders(sig, ops, ids));
    }
    let count = |outcome: fn(&Outcome) -> bool| {
        places
            .values()
            .flatten()
            .filter(|(_, op)| outcome(&op.outcome))
            .count()
    };
    let all = count(|_| true);
    let unknown = count(|o| matches!(o, Outcome::Unknown(_)));
    Finding::from_problems(
        "places applied at most once",
        format!(
            "{all} places ({unknown} unknown) account for all {} orders",
            orders.len()
        ),
        &problems,
    )
}

/// Acknowledged and unknown places among `ops`.
fn acknowledged_and_unknown(ops: &[(usize, &Op)]) -> (usize, usize) {
    let is = |f: fn(&Outcome) -> bool| ops.iter().filter(|(_, op)| f(&op.outcome)).count();
    (
        is(|o| matches!(o, Outcome::Ok(_))),
        is(|o| matches!(o, Outcome::Unknown(_))),
    )
}

/// The places `ops` of signature `sig` made more orders (`ids`) than they
/// may have: one each for the acknowledged and unknown ones.
fn too_many_orders(sig: &Signature, ops: &[(usize, &Op)], ids: &[OrderId]) -> Option<String> {
    let (acknowledged, unknown) = acknowledged_and_unknown(ops);
    if ids.len() <= acknowledged + unknown {
        return None;
    }
    Some(match ops {
        [(i, op)] => format!("#{i} {op} made orders {}", list(ids)),
        _ => format!(
            "{} places of {} {} x{} ({acknowledged} acknowledged, {unknown} unknown) made {} \
             orders: {}",
            ops.len(),
            sig.0,
            sig.1,
            sig.2,
            ids.len(),
            list(ids)
        ),
    })
}

/// The places `ops` of signature `sig` made fewer orders (`ids`) than
/// were acknowledged.
fn too_few_orders(sig: &Signature, ops: &[(usize, &Op)], ids: &[OrderId]) -> Option<String> {
    let (acknowledged, _) = acknowledged_and_unknown(ops);
    if ids.len() >= acknowledged {
        return None;
    }
    Some(match ops {
        [(i, op)] => format!("#{i} {op} made no order"),
        _ => format!(
            "{acknowledged} acknowledged places of {} {} x{}, but only {} such orders",
            sig.0,
            sig.1,
            sig.2,
            ids.len()
        ),
    })
}

/// The ids, at most [`DETAIL_EXAMPLES_MAX`](crate::DETAIL_EXAMPLES_MAX)
/// of them.
fn list(ids: &[OrderId]) -> String {
    first_few(ids, ", ")
}

/// No SKU sold or holds more than was supplied: `reserved <= on_hand` and
/// `sold + reserved <= supplied`, and every supplied SKU is still there.
pub fn check_no_oversell(stock: &[FinalStock], supplied: &BTreeMap<Sku, u64>) -> Finding {
    let mut problems = Vec::new();
    let present: BTreeSet<&Sku> = stock.iter().map(|s| &s.sku).collect();
    for sku in supplied.keys().filter(|s| !present.contains(s)) {
        problems.push(format!("{sku}: supplied but not read back"));
    }
    for s in stock {
        if s.reserved > s.on_hand {
            problems.push(format!(
                "{}: reserved {} > on_hand {}",
                s.sku, s.reserved, s.on_hand
            ));
        }
        let committed = u128::from(s.sold) + u128::from(s.reserved);
        match supplied.get(&s.sku) {
            None => problems.push(format!("{}: no supplied figure to check against", s.sku)),
            Some(n) if committed > u128::from(*n) => problems.push(format!(
                "{}: sold {} + reserved {} > supplied {n}",
                s.sku, s.sold, s.reserved
            )),
            Some(_) => {}
        }
    }
    Finding::from_problems(
        "no oversell",
        format!("{} SKUs within their supply", stock.len()),
        &problems,
    )
}

/// Units are conserved and agree with the orders: per SKU `on_hand + sold
/// == supplied`, `reserved` is the sum over reserved orders and `sold` the
/// sum over sold ones (paid and after).
pub fn check_stock_matches_orders(
    stock: &[FinalStock],
    orders: &[FinalOrder],
    supplied: &BTreeMap<Sku, u64>,
) -> Finding {
    let mut reserved: BTreeMap<&Sku, u128> = BTreeMap::new();
    let mut sold: BTreeMap<&Sku, u128> = BTreeMap::new();
    for o in orders {
        let sum = if o.status == OrderStatus::Reserved {
            &mut reserved
        } else if o.status.is_sold() {
            &mut sold
        } else {
            continue;
        };
        for l in &o.lines {
            *sum.entry(&l.sku).or_insert(0) += u128::from(l.qty);
        }
    }
    let mut problems = Vec::new();
    for s in stock {
        let total = u128::from(s.on_hand) + u128::from(s.sold);
        if let Some(n) = supplied.get(&s.sku) {
            if total != u128::from(*n) {
                problems.push(format!(
                    "{}: on_hand {} + sold {} != supplied {n}",
                    s.sku, s.on_hand, s.sold
                ));
            }
        }
        let want_reserved = reserved.get(&s.sku).copied().unwrap_or(0);
        if u128::from(s.reserved) != want_reserved {
            problems.push(format!(
                "{}: reserved {} but reserved orders hold {want_reserved}",
                s.sku, s.reserved
            ));
        }
        let want_sold = sold.get(&s.sku).copied().unwrap_or(0);
        if u128::from(s.sold) != want_sold {
            problems.push(format!(
                "{}: sold {} but sold orders hold {want_sold}",
                s.sku, s.sold
            ));
        }
    }
    let known: BTreeSet<&Sku> = stock.iter().map(|s| &s.sku).collect();
    for sku in reserved.keys().chain(sold.keys()) {
        if !known.contains(sku) {
            problems.push(format!("{sku}: ordered but its stock was not read back"));
        }
    }
    Finding::from_problems(
        "stock matches orders",
        format!("{} SKUs agree with {} orders", stock.len(), orders.len()),
        &problems,
    )
}

/// Money is conserved: per currency the balances sum to exactly zero
/// (deposits come from the external account, which runs negative), and no
/// customer is below zero.
pub fn check_money_conserved(accounts: &[FinalAccount]) -> Finding {
    let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
    let mut problems = Vec::new();
    for a in accounts {
        *sums.entry(a.currency).or_insert(0) += i128::from(a.balance.0);
        if a.kind == AccountKind::Customer && a.balance.0 < 0 {
            problems.push(format!("customer {} has balance {}", a.id, a.balance.0));
        }
    }
    for (currency, sum) in &sums {
        if *sum != 0 {
            problems.push(format!("{currency}: balances sum to {sum}, not 0"));
        }
    }
    Finding::from_problems(
        "money conserved",
        format!(
            "{} accounts in {} currencies sum to zero",
            accounts.len(),
            sums.len()
        ),
        &problems,
    )
}

/// Every replica reports the same digest at the same applied index.
/// Skipped when no digest was collected, so a harness that forgot cannot
/// pass it.
pub fn check_replicas_agree(replicas: &[ReplicaDigest]) -> Finding {
    let name = "replicas agree";
    let Some(first) = replicas.first() else {
        return Finding::skip(name, "no replica digests collected");
    };
    let problems: Vec<String> = replicas
        .iter()
        .filter(|r| r.applied_index != first.applied_index || r.digest != first.digest)
        .map(|r| {
            format!(
                "{} has {} at index {}, {} has {} at index {}",
                r.node, r.digest, r.applied_index, first.node, first.digest, first.applied_index
            )
        })
        .collect();
    Finding::from_problems(
        name,
        format!(
            "{} replicas at index {} with digest {}",
            replicas.len(),
            first.applied_index,
            first.digest
        ),
        &problems,
    )
}

#[cfg(test)]
#[path = "invariants_tests.rs"]
mod tests;
