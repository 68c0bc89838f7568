//! The small typed table interface the state machine runs over. The same
//! `apply` code runs over [`MemTables`] (tests, benchmarks) and over a redb
//! write transaction (the replicated node): a table is an ordered map from
//! byte keys to byte values, and keys are laid out so every query the API
//! needs is a bounded range scan.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::TableError;

/// Every table of the commerce state. Keys are big-endian where numeric so
/// that byte order is numeric order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// `sku` → [`crate::model::Product`].
    Products,
    /// `account id` → [`crate::model::Account`].
    Accounts,
    /// `order id (u64 BE)` → [`crate::model::Order`].
    Orders,
    /// `customer ++ 0x00 ++ !order id (u64 BE)` → empty: a customer's orders,
    /// newest first, as an ascending scan of one prefix.
    CustomerOrders,
    /// `expires_at_ms (u64 BE) ++ order id (u64 BE)` → empty, for reserved
    /// orders only: "orders expiring before t" is a scan from the start.
    Expiry,
    /// `request id` → idempotency record (fingerprint, time, result).
    Idempotency,
    /// `recorded_at_ms (u64 BE) ++ request id` → empty: pruning by age.
    IdempotencyByTime,
    /// `currency ++ kind byte` → account id of that currency's merchant or
    /// external account.
    CurrencyAccounts,
    /// Named singletons (the summary and clock, the key count, the next
    /// audit sequence number).
    Meta,
    /// `key id` → [`crate::identity::ApiKey`].
    ApiKeys,
    /// `account id` → token generation (`u32`): a customer token of an
    /// older generation is refused.
    CustomerTokens,
    /// `seq (u64 BE)` → [`crate::identity::AuditRecord`]: the audit trail,
    /// oldest first, the last [`crate::identity::AUDIT_RECORDS_MAX`] kept.
    Audit,
}

impl Table {
    /// Every table, in a fixed order (digest, snapshots).
    pub const ALL: [Table; 12] = [
        Table::Products,
        Table::Accounts,
        Table::Orders,
        Table::CustomerOrders,
        Table::Expiry,
        Table::Idempotency,
        Table::IdempotencyByTime,
        Table::CurrencyAccounts,
        Table::Meta,
        Table::ApiKeys,
        Table::CustomerTokens,
        Table::Audit,
    ];

    /// The table's stable name (used as the redb table name).
    pub fn name(self) -> &'static str {
        match self {
            Table::Products => "products",
            Table::Accounts => "accounts",
            Table::Orders => "orders",
            Table::CustomerOrders => "customer_orders",
            Table::Expiry => "expiry",
            Table::Idempotency => "idempotency",
            Table::IdempotencyByTime => "idempotency_by_time",
            Table::CurrencyAccounts => "currency_accounts",
            Table::Meta => "meta",
            Table::ApiKeys => "api_keys",
            Table::CustomerTokens => "customer_tokens",
            Table::Audit => "audit",
        }
    }
}

/// Scan direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending key order.
    Forward,
    /// Descending key order.
    Backward,
}

/// A key-value pair returned by a scan.
pub type Row = (Vec<u8>, Vec<u8>);

/// Read access to the tables.
pub trait ReadTables {
    /// The value at `key`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TableError>;
    /// Up to `limit` rows with keys in `(start, end)`, in `dir` order.
    fn scan(
        &self,
        table: Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<Row>, TableError>;
}

/// Write access to the tables. Writes made by one `apply_batch` call become
/// visible together or not at all (the implementation's transaction).
pub trait WriteTables: ReadTables {
    /// Stores `value` at `key`.
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TableError>;
    /// Removes `key` (absent is fine).
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), TableError>;
}

/// The smallest key strictly greater than every key starting with `prefix`,
/// or `None` when no such key exists (all bytes 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// True when `start` lies above `end`: such a range holds no key, and
/// implementations answer it with no rows rather than an error or a panic.
pub fn is_inverted(start: &Bound<&[u8]>, end: &Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => s > e,
        _ => false,
    }
}

/// In-memory tables: for tests and benchmarks of the pure state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemTables {
    tables: BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemTables {
    /// Empty tables.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ReadTables for MemTables {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self.tables.get(&table).and_then(|t| t.get(key)).cloned())
    }

    fn scan(
        &self,
        table: Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<Row>, TableError> {
        let Some(t) = self.tables.get(&table) else {
            return Ok(Vec::new());
        };
        // BTreeMap::range panics on an inverted range; an empty answer is right.
        if is_inverted(&start, &end) {
            return Ok(Vec::new());
        }
        let start = start.map(<[u8]>::to_vec);
        let end = end.map(<[u8]>::to_vec);
        let range = t.range((start, end));
        let rows = match dir {
            Direction::Forward => range
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Direction::Backward => range
                .rev()
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        Ok(rows)
    }
}

impl WriteTables for MemTables {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        self.tables
            .entry(table)
            .or_default()
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), TableError> {
        if let Some(t) = self.tables.get_mut(&table) {
            t.remove(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn scans_respect_bounds_direction_and_limit() {
        let mut t = MemTables::new();
        for k in [b"a", b"b", b"c", b"d"] {
            t.put(Table::Meta, k, b"v").unwrap();
        }
        let keys = |rows: Vec<Row>| rows.into_iter().map(|r| r.0).collect::<Vec<_>>();
        let fwd = t
            .scan(
                Table::Meta,
                Bound::Included(b"b"),
                Bound::Unbounded,
                Direction::Forward,
                2,
            )
            .unwrap();
        assert_eq!(keys(fwd), vec![b"b".to_vec(), b"c".to_vec()]);
        let back = t
            .scan(
                Table::Meta,
                Bound::Unbounded,
                Bound::Excluded(b"d"),
                Direction::Backward,
                10,
            )
            .unwrap();
        assert_eq!(
            keys(back),
            vec![b"c".to_vec(), b"b".to_vec(), b"a".to_vec()]
        );
        let inverted = t
            .scan(
                Table::Meta,
                Bound::Included(b"d"),
                Bound::Included(b"a"),
                Direction::Forward,
                10,
            )
            .unwrap();
        assert!(inverted.is_empty());
    }
}
