//! Read-only queries over the tables. Every list is bounded by a page limit
//! and continues with an opaque cursor (the hex of the last key returned).

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::apply::load_summary;
use keel_protocol::hex;

use crate::codec::decode;
use crate::error::{FieldError, TableError};
use crate::identity::{ApiKey, AuditRecord, KeyInfo};
use crate::ids::{AccountId, KeyId, OrderId, Sku};
use crate::keys;
use crate::model::{Account, Order, Product, Summary};
use crate::step::get;
use crate::tables::{prefix_end, Direction, ReadTables, Table};

/// Largest page a list query returns.
pub const PAGE_LIMIT_MAX: usize = 500;
/// Page size when the caller does not say.
pub const PAGE_LIMIT_DEFAULT: usize = 50;

/// One page of a list and the cursor of the next, if there is more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Pass back as `cursor` to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// A list query failed: bad arguments or storage.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// `limit` or `cursor` is malformed.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// The storage failed or is corrupt.
    #[error(transparent)]
    Table(#[from] TableError),
}

/// Checks a page limit: 1 to [`PAGE_LIMIT_MAX`], default [`PAGE_LIMIT_DEFAULT`].
pub fn page_limit(limit: Option<usize>) -> Result<usize, FieldError> {
    match limit {
        None => Ok(PAGE_LIMIT_DEFAULT),
        Some(n) if (1..=PAGE_LIMIT_MAX).contains(&n) => Ok(n),
        Some(n) => Err(FieldError::new(
            "limit",
            format!("must be 1 to {PAGE_LIMIT_MAX}, got {n}"),
        )),
    }
}

fn parse_cursor(cursor: Option<&str>) -> Result<Option<Vec<u8>>, FieldError> {
    let Some(c) = cursor else { return Ok(None) };
    let bad = || FieldError::new("cursor", "is not a cursor this API returned");
    if c.len() > 2 * 256 {
        return Err(bad());
    }
    hex::decode(c).map(Some).map_err(|_| bad())
}

/// The product with its stock, if it exists.
pub fn product<T: ReadTables>(t: &T, sku: &Sku) -> Result<Option<Product>, TableError> {
    get(t, Table::Products, sku.as_str().as_bytes())
}

/// Products in SKU order.
pub fn products<T: ReadTables>(
    t: &T,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<Product>, QueryError> {
    forward_page(t, Table::Products, cursor, limit, |k, v| {
        decode(Table::Products, k, v)
    })
}

/// One page of `table` in key order, from after `cursor`.
fn forward_page<T: ReadTables, V>(
    t: &T,
    table: Table,
    cursor: Option<&str>,
    limit: Option<usize>,
    item: impl FnMut(&[u8], &[u8]) -> Result<V, TableError>,
) -> Result<Page<V>, QueryError> {
    let limit = page_limit(limit)?;
    let after = parse_cursor(cursor)?;
    let start = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let rows = t.scan(
        table,
        start,
        Bound::Unbounded,
        Direction::Forward,
        limit + 1,
    )?;
    page(rows, limit, item)
}

fn page<V>(
    mut rows: Vec<(Vec<u8>, Vec<u8>)>,
    limit: usize,
    mut item: impl FnMut(&[u8], &[u8]) -> Result<V, TableError>,
) -> Result<Page<V>, QueryError> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|(k, _)| hex::encode(k))
    } else {
        None
    };
    let items = rows
        .iter()
        .map(|(k, v)| item(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page { items, next_cursor })
}

/// The order, if it exists.
pub fn order<T: ReadTables>(t: &T, id: OrderId) -> Result<Option<Order>, TableError> {
    get(t, Table::Orders, &keys::order(id))
}

/// A customer's orders, newest first.
pub fn customer_orders<T: ReadTables>(
    t: &T,
    customer: &AccountId,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<Order>, QueryError> {
    let limit = page_limit(limit)?;
    let prefix = keys::customer_prefix(customer);
    let after = parse_cursor(cursor)?;
    let end_key = prefix_end(&prefix);
    // A cursor is a position, as in `products`: one before this list starts
    // it from the beginning, one past it gives an empty last page. Either
    // way only this customer's orders are read, and the scan's start never
    // passes its end.
    let start = match &after {
        Some(a) if a.as_slice() >= prefix.as_slice() => Bound::Excluded(a.as_slice()),
        _ => Bound::Included(prefix.as_slice()),
    };
    if let (Some(a), Some(end)) = (&after, &end_key) {
        if a >= end {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
    }
    let end = end_key.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let rows = t.scan(
        Table::CustomerOrders,
        start,
        end,
        Direction::Forward,
        limit + 1,
    )?;
    page(rows, limit, |k, _| {
        let id = keys::order_of_customer_key(k).ok_or_else(|| TableError::Corrupt {
            table: Table::CustomerOrders.name(),
            key: hex::encode(k),
            reason: "key too short".into(),
        })?;
        order(t, id)?.ok_or_else(|| TableError::Corrupt {
            table: Table::CustomerOrders.name(),
            key: hex::encode(k),
            reason: format!("indexes missing order {id}"),
        })
    })
}

/// The account, if it exists.
pub fn account<T: ReadTables>(t: &T, id: &AccountId) -> Result<Option<Account>, TableError> {
    get(t, Table::Accounts, id.as_str().as_bytes())
}

/// The API key, hash included (for checking a secret), if it is held.
pub fn key<T: ReadTables>(t: &T, id: &KeyId) -> Result<Option<ApiKey>, TableError> {
    get(t, Table::ApiKeys, id.as_str().as_bytes())
}

/// The API keys held, in id order, without their hashes.
pub fn keys<T: ReadTables>(
    t: &T,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<KeyInfo>, QueryError> {
    forward_page(t, Table::ApiKeys, cursor, limit, |k, v| {
        decode::<ApiKey>(Table::ApiKeys, k, v).map(|key| key.info)
    })
}

/// The audit trail, newest first.
pub fn audit<T: ReadTables>(
    t: &T,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<AuditRecord>, QueryError> {
    let limit = page_limit(limit)?;
    let before = parse_cursor(cursor)?;
    let end = before.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let rows = t.scan(
        Table::Audit,
        Bound::Unbounded,
        end,
        Direction::Backward,
        limit + 1,
    )?;
    page(rows, limit, |k, v| decode(Table::Audit, k, v))
}

/// Counts and totals for conservation checks from outside.
pub fn summary<T: ReadTables>(t: &T) -> Result<Summary, TableError> {
    load_summary(t)
}

/// The earliest expiry time of a reserved order, if any: lets the leader
/// propose `ExpireDue` only when something is due.
pub fn next_expiry_ms<T: ReadTables>(t: &T) -> Result<Option<u64>, TableError> {
    let rows = t.scan(
        Table::Expiry,
        Bound::Unbounded,
        Bound::Unbounded,
        Direction::Forward,
        1,
    )?;
    Ok(rows.first().and_then(|(k, _)| {
        let b: [u8; 8] = k.get(..8)?.try_into().ok()?;
        Some(u64::from_be_bytes(b))
    }))
}

/// Rows read per scan when walking a whole table.
pub const WALK_PAGE_ROWS: usize = 1_024;

/// Calls `f` on every row of `table` in key order, reading in bounded pages.
pub fn walk<T: ReadTables>(
    t: &T,
    table: Table,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), TableError>,
) -> Result<(), TableError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let start = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let rows = t.scan(
            table,
            start,
            Bound::Unbounded,
            Direction::Forward,
            WALK_PAGE_ROWS,
        )?;
        for (k, v) in &rows {
            f(k, v)?;
        }
        if rows.len() < WALK_PAGE_ROWS {
            return Ok(());
        }
        after = rows.last().map(|(k, _)| k.clone());
    }
}

/// A hash over every table's rows in key order: equal on two replicas at the
/// same applied index if and only if (up to BLAKE3) their states are equal.
pub fn digest<T: ReadTables>(t: &T) -> Result<[u8; 32], TableError> {
    let mut d = Digester::new();
    for table in Table::ALL {
        walk(t, table, |k, v| {
            d.row(table, k, v);
            Ok(())
        })?;
    }
    Ok(d.finish())
}

/// The [`digest`], fed one row at a time by a caller that already walks
/// every table in [`Table::ALL`] order and key order (a snapshot export),
/// so the state is read once rather than twice.
#[derive(Debug, Clone)]
pub struct Digester {
    h: crate::hashing::GatheringHasher,
    /// Tables whose name is already in the hash, from the start of
    /// [`Table::ALL`].
    tables_begun: usize,
    /// The table of the last row, whose name is in the hash: rows of one
    /// table come together, so only a change of table needs a look-up.
    current: Option<Table>,
}

impl Default for Digester {
    fn default() -> Self {
        Self::new()
    }
}

impl Digester {
    /// A digest of nothing yet.
    pub fn new() -> Self {
        let mut h = crate::hashing::GatheringHasher::new();
        h.update(b"keel.state.v1");
        Self {
            h,
            tables_begun: 0,
            current: None,
        }
    }

    /// Names every table up to and including the one at `upto` (an index
    /// into [`Table::ALL`]) not yet named: empty tables count too.
    fn begin_tables(&mut self, upto: usize) {
        while self.tables_begun <= upto && self.tables_begun < Table::ALL.len() {
            let t = Table::ALL[self.tables_begun];
            self.h.update(t.name().as_bytes());
            self.h.update(&[0]);
            self.tables_begun += 1;
        }
    }

    /// Adds one row. Rows must come table by table in [`Table::ALL`] order
    /// and in key order within a table, as [`digest`] reads them.
    pub fn row(&mut self, table: Table, k: &[u8], v: &[u8]) {
        if self.current != Some(table) {
            if let Some(i) = Table::ALL.iter().position(|t| *t == table) {
                self.begin_tables(i);
            }
            self.current = Some(table);
        }
        self.h.update(&(k.len() as u64).to_le_bytes());
        self.h.update(k);
        self.h.update(&(v.len() as u64).to_le_bytes());
        self.h.update(v);
    }

    /// The digest of every row added.
    pub fn finish(mut self) -> [u8; 32] {
        self.begin_tables(Table::ALL.len());
        *self.h.finalize().as_bytes()
    }
}

#[cfg(test)]
mod digest_tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;
    use crate::tables::{MemTables, WriteTables};

    /// Feeding the rows one by one, as an export does, gives the digest of
    /// the walk; empty tables between full ones are named all the same.
    #[test]
    fn a_digester_fed_row_by_row_equals_the_digest() {
        let mut t = MemTables::new();
        let (first, last) = (Table::ALL[0], Table::ALL[Table::ALL.len() - 1]);
        for i in 0u8..5 {
            t.put(first, &[i], &[i, i]).unwrap();
            t.put(last, &[i, 1], b"v").unwrap();
        }
        let mut d = Digester::new();
        for table in Table::ALL {
            walk(&t, table, |k, v| {
                d.row(table, k, v);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(d.finish(), digest(&t).unwrap());
        assert_eq!(Digester::new().finish(), digest(&MemTables::new()).unwrap());
        // A row in another table changes it.
        let mut other = Digester::new();
        other.row(last, &[0], b"v");
        assert_ne!(other.finish(), digest(&MemTables::new()).unwrap());
    }
}
