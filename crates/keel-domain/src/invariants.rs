//! The one invariant checker (docs/DOMAIN.md, "Invariants"). It recomputes
//! everything from the records with full scans, so it is for tests, debug
//! builds and operators, not for the hot path. The chaos suite checks the same
//! properties from outside through the summary.

use std::collections::{BTreeMap, BTreeSet};

use crate::apply::{load_summary, IdempotencyRecord, Outcome};
use keel_protocol::hex;

use crate::codec::decode;
use crate::error::TableError;
use crate::ids::{Currency, OrderId};
use crate::keys;
use crate::model::{Account, AccountKind, Order, OrderStatus, Product, Summary};
use crate::query::walk;
use crate::tables::{ReadTables, Table};

/// One broken invariant, with the number of the invariant in docs/DOMAIN.md
/// (0 for the summary and index consistency that back them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Invariant number (1–5), or 0 for derived data.
    pub invariant: u8,
    /// What is wrong, for a human.
    pub detail: String,
}

impl Violation {
    fn new(invariant: u8, detail: String) -> Self {
        Self { invariant, detail }
    }
}

/// Units per SKU held by orders, by what the orders did with them.
#[derive(Default)]
struct UnitsBySku<'a> {
    reserved: BTreeMap<&'a str, u64>,
    sold: BTreeMap<&'a str, u64>,
    returned: BTreeMap<&'a str, u64>,
}

/// Checks all invariants; an empty list means they hold.
pub fn check_invariants<T: ReadTables>(t: &T) -> Result<Vec<Violation>, TableError> {
    let mut v = Vec::new();
    let products = load_products(t)?;
    let orders = load_orders(t)?;
    let accounts = load_accounts(t)?;

    let mut expected = crate::apply::initial_summary();
    let units = sum_orders(&orders, &mut expected);
    for o in orders.values() {
        check_order(t, o, &mut v)?;
    }
    let stored = load_summary(t)?;
    check_order_ids_dense(&orders, &stored, &mut v);
    check_expiry_index_rows(t, &expected, &mut v)?;

    check_stock(&products, &units, &mut v);
    sum_stock(&products, &mut expected);
    check_money(&accounts, &mut expected, &mut v);
    check_idempotency(t, &mut v)?;
    check_summary(&stored, expected, &mut v);
    Ok(v)
}

fn load_products<T: ReadTables>(t: &T) -> Result<BTreeMap<String, Product>, TableError> {
    let mut products = BTreeMap::new();
    walk(t, Table::Products, |k, val| {
        let p: Product = decode(Table::Products, k, val)?;
        products.insert(p.sku.as_str().to_owned(), p);
        Ok(())
    })?;
    Ok(products)
}

fn load_orders<T: ReadTables>(t: &T) -> Result<BTreeMap<OrderId, Order>, TableError> {
    let mut orders = BTreeMap::new();
    walk(t, Table::Orders, |k, val| {
        let o: Order = decode(Table::Orders, k, val)?;
        orders.insert(o.id, o);
        Ok(())
    })?;
    Ok(orders)
}

fn load_accounts<T: ReadTables>(t: &T) -> Result<Vec<Account>, TableError> {
    let mut accounts = Vec::new();
    walk(t, Table::Accounts, |k, val| {
        accounts.push(decode(Table::Accounts, k, val)?);
        Ok(())
    })?;
    Ok(accounts)
}

/// Per-SKU sums over orders, and the order counts and sales of the summary.
fn sum_orders<'a>(orders: &'a BTreeMap<OrderId, Order>, expected: &mut Summary) -> UnitsBySku<'a> {
    let mut units = UnitsBySku::default();
    for o in orders.values() {
        *expected.orders_by_status.entry(o.status).or_insert(0) += 1;
        for l in &o.lines {
            let s = l.sku.as_str();
            if o.status == OrderStatus::Reserved {
                *units.reserved.entry(s).or_insert(0) += l.qty;
            }
            if o.status.is_sold() {
                *units.sold.entry(s).or_insert(0) += l.qty;
            }
            if o.status == OrderStatus::Refunded && o.restocked {
                *units.returned.entry(s).or_insert(0) += l.qty;
            }
        }
        if o.status.is_sold() {
            *expected.sales_by_currency.entry(o.currency).or_insert(0) += i128::from(o.total.0);
        }
    }
    units
}

/// Invariant 4 (totals and lifecycle) for one order, and its index entries.
fn check_order<T: ReadTables>(t: &T, o: &Order, v: &mut Vec<Violation>) -> Result<(), TableError> {
    let sum = o.lines.iter().try_fold(0i64, |acc, l| {
        l.unit_price
            .0
            .checked_mul(i64::try_from(l.qty).ok()?)
            .and_then(|x| acc.checked_add(x))
    });
    if sum != Some(o.total.0) {
        v.push(Violation::new(
            4,
            format!("order {}: total {} != sum of lines {sum:?}", o.id, o.total),
        ));
    }
    let hist_ok = o.history.first().map(|h| h.status) == Some(OrderStatus::Reserved)
        && o.history
            .windows(2)
            .all(|w| w[0].status.can_become(w[1].status) && w[0].at_ms <= w[1].at_ms)
        && o.history.last().map(|h| h.status) == Some(o.status);
    if !hist_ok {
        v.push(Violation::new(
            4,
            format!(
                "order {}: history {:?} is not a lifecycle path to {:?}",
                o.id, o.history, o.status
            ),
        ));
    }
    let in_expiry = t
        .get(Table::Expiry, &keys::expiry(o.expires_at_ms, o.id))?
        .is_some();
    if in_expiry != (o.status == OrderStatus::Reserved) {
        v.push(Violation::new(
            0,
            format!(
                "order {}: expiry index entry {in_expiry}, status {:?}",
                o.id, o.status
            ),
        ));
    }
    if t.get(
        Table::CustomerOrders,
        &keys::customer_order(&o.customer, o.id),
    )?
    .is_none()
    {
        v.push(Violation::new(
            0,
            format!("order {} missing from its customer's index", o.id),
        ));
    }
    Ok(())
}

/// Invariant 5, in part: order ids are dense from 1.
fn check_order_ids_dense(
    orders: &BTreeMap<OrderId, Order>,
    stored: &Summary,
    v: &mut Vec<Violation>,
) {
    if let Some((first, last)) = orders.keys().next().zip(orders.keys().next_back()) {
        if first.0 != 1 || last.0 != orders.len() as u64 || stored.next_order_id != last.0 + 1 {
            v.push(Violation::new(
                5,
                format!(
                    "order ids not dense: {} orders from {first} to {last}, next {}",
                    orders.len(),
                    stored.next_order_id
                ),
            ));
        }
    }
}

/// The expiry index holds one row per reserved order.
fn check_expiry_index_rows<T: ReadTables>(
    t: &T,
    expected: &Summary,
    v: &mut Vec<Violation>,
) -> Result<(), TableError> {
    let mut index_rows = 0u64;
    walk(t, Table::Expiry, |_, _| {
        index_rows += 1;
        Ok(())
    })?;
    let reserved_orders = expected
        .orders_by_status
        .get(&OrderStatus::Reserved)
        .copied()
        .unwrap_or(0);
    if index_rows != reserved_orders {
        v.push(Violation::new(
            0,
            format!("expiry index has {index_rows} rows for {reserved_orders} reserved orders"),
        ));
    }
    Ok(())
}

/// Invariants 1 and 2: stock agrees with itself, its ledger and the orders.
fn check_stock(products: &BTreeMap<String, Product>, units: &UnitsBySku, v: &mut Vec<Violation>) {
    for (sku, p) in products {
        check_product_stock(sku, p, units, v);
    }
    for sku in units.reserved.keys().chain(units.sold.keys()) {
        if !products.contains_key(*sku) {
            v.push(Violation::new(
                1,
                format!("orders reference unknown product {sku}"),
            ));
        }
    }
}

fn check_product_stock(sku: &str, p: &Product, units: &UnitsBySku, v: &mut Vec<Violation>) {
    let s = &p.stock;
    if s.reserved > s.on_hand {
        v.push(Violation::new(
            1,
            format!("{sku}: reserved {} > on_hand {}", s.reserved, s.on_hand),
        ));
    }
    let want_reserved = units.reserved.get(sku).copied().unwrap_or(0);
    if s.reserved != want_reserved {
        v.push(Violation::new(
            1,
            format!(
                "{sku}: reserved {} but reserved orders hold {want_reserved}",
                s.reserved
            ),
        ));
    }
    let l = &s.ledger;
    let from_ledger = (i128::from(l.restocked) + i128::from(l.returned) + i128::from(l.set_added))
        - i128::from(l.sold)
        - i128::from(l.set_removed);
    if from_ledger != i128::from(s.on_hand) {
        v.push(Violation::new(
            2,
            format!(
                "{sku}: on_hand {} but ledger gives {from_ledger}",
                s.on_hand
            ),
        ));
    }
    let sold = units.sold.get(sku).copied().unwrap_or(0);
    if l.sold != sold {
        v.push(Violation::new(
            2,
            format!("{sku}: ledger sold {} but sold orders hold {sold}", l.sold),
        ));
    }
    let returned = units.returned.get(sku).copied().unwrap_or(0);
    if l.returned != returned {
        v.push(Violation::new(
            2,
            format!(
                "{sku}: ledger returned {} but restocked refunds hold {returned}",
                l.returned
            ),
        ));
    }
}

/// The product and unit counts of the summary.
fn sum_stock(products: &BTreeMap<String, Product>, expected: &mut Summary) {
    for p in products.values() {
        let s = &p.stock;
        let l = &s.ledger;
        expected.products += 1;
        expected.units_on_hand += s.on_hand;
        expected.units_reserved += s.reserved;
        expected.units_restocked += l.restocked;
        expected.units_sold += l.sold;
        expected.units_returned += l.returned;
    }
}

/// Invariant 3: money. Also fills in the account counts and sums of the summary.
fn check_money(accounts: &[Account], expected: &mut Summary, v: &mut Vec<Violation>) {
    let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
    for a in accounts {
        *sums.entry(a.currency).or_insert(0) += i128::from(a.balance.0);
        if a.kind == AccountKind::External {
            *expected.deposits_by_currency.entry(a.currency).or_insert(0) -=
                i128::from(a.balance.0);
        }
        if a.kind == AccountKind::Customer && a.balance.0 < 0 {
            v.push(Violation::new(
                3,
                format!("customer {} has negative balance {}", a.id, a.balance),
            ));
        }
    }
    for (c, s) in &sums {
        if *s != 0 {
            v.push(Violation::new(
                3,
                format!("balances in {c} sum to {s}, not 0"),
            ));
        }
    }
    expected.accounts = accounts.len() as u64;
    expected.balance_sum_by_currency = sums;
}

/// Invariant 5: each key's stored effect is unique, and both idempotency
/// tables agree (a record without its time entry would never be pruned).
fn check_idempotency<T: ReadTables>(t: &T, v: &mut Vec<Violation>) -> Result<(), TableError> {
    let mut placed: BTreeSet<OrderId> = BTreeSet::new();
    let mut records = 0u64;
    walk(t, Table::Idempotency, |k, val| {
        records += 1;
        let rec: IdempotencyRecord = decode(Table::Idempotency, k, val)?;
        let key = std::str::from_utf8(k).unwrap_or("");
        if t.get(
            Table::IdempotencyByTime,
            &keys::idempotency_by_time(rec.at_ms, key),
        )?
        .is_none()
        {
            v.push(Violation::new(
                5,
                format!("key {} has no time index entry", hex::encode(k)),
            ));
        }
        if let Ok(Outcome::Order(o)) = &rec.result {
            if o.history.len() == 1 && !placed.insert(o.id) {
                v.push(Violation::new(
                    5,
                    format!("order {} placed by two keys", o.id),
                ));
            }
        }
        Ok(())
    })?;
    let mut by_time = 0u64;
    walk(t, Table::IdempotencyByTime, |_, _| {
        by_time += 1;
        Ok(())
    })?;
    if by_time != records {
        v.push(Violation::new(
            5,
            format!("{records} idempotency records but {by_time} time entries"),
        ));
    }
    Ok(())
}

/// The stored summary must equal the recomputed one. The clock and the
/// next order id are not derivable from records (`check_order_ids_dense` checks density).
fn check_summary(stored: &Summary, mut expected: Summary, v: &mut Vec<Violation>) {
    expected.clock_ms = stored.clock_ms;
    expected.next_order_id = stored.next_order_id;
    if *stored != expected {
        v.push(Violation::new(
            0,
            format!("stored summary {stored:?} != recomputed {expected:?}"),
        ));
    }
}
