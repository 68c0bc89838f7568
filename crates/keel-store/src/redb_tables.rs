//! `keel_domain`'s table traits over redb: one redb table per domain table,
//! byte keys and byte values.

use std::ops::Bound;
use std::path::PathBuf;

use keel_domain::tables::{Row, Table as DomainTable};
use keel_domain::{Direction, ReadTables, TableError, WriteTables};
use openraft::{BasicNode, LogId, StoredMembership};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::{NodeId, StoreError};

/// Applied log id and membership, stored with the state they describe.
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
pub(crate) const KEY_APPLIED: &str = "applied";
pub(crate) const KEY_MEMBERSHIP: &str = "membership";

pub(crate) fn def(t: DomainTable) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

fn storage(e: impl std::fmt::Display) -> TableError {
    TableError::Storage(e.to_string())
}

fn inverted(start: &Bound<&[u8]>, end: &Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => s > e,
        _ => false,
    }
}

type RowGuards<'a> = (
    redb::AccessGuard<'a, &'static [u8]>,
    redb::AccessGuard<'a, &'static [u8]>,
);

fn collect<'a>(
    range: redb::Range<'a, &'static [u8], &'static [u8]>,
    dir: Direction,
    limit: usize,
) -> Result<Vec<Row>, TableError> {
    let conv = |r: Result<RowGuards<'a>, redb::StorageError>| {
        r.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
            .map_err(storage)
    };
    match dir {
        Direction::Forward => range.take(limit).map(conv).collect(),
        Direction::Backward => range.rev().take(limit).map(conv).collect(),
    }
}

/// The domain tables inside one redb write transaction.
pub(crate) struct WriteTxnTables<'t> {
    tables: Vec<redb::Table<'t, &'static [u8], &'static [u8]>>,
}

impl<'t> WriteTxnTables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, redb::TableError> {
        let tables = DomainTable::ALL
            .iter()
            .map(|t| txn.open_table(def(*t)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { tables })
    }
    fn t(&self, t: DomainTable) -> &redb::Table<'t, &'static [u8], &'static [u8]> {
        // ALL lists every variant once, in declaration order.
        &self.tables[t as usize]
    }
}

impl ReadTables for WriteTxnTables<'_> {
    fn get(&self, table: DomainTable, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self
            .t(table)
            .get(key)
            .map_err(storage)?
            .map(|v| v.value().to_vec()))
    }
    fn scan(
        &self,
        table: DomainTable,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<Row>, TableError> {
        if inverted(&start, &end) {
            return Ok(Vec::new());
        }
        collect(
            self.t(table)
                .range::<&[u8]>((start, end))
                .map_err(storage)?,
            dir,
            limit,
        )
    }
}

impl WriteTables for WriteTxnTables<'_> {
    fn put(&mut self, table: DomainTable, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        self.tables[table as usize]
            .insert(key, value)
            .map_err(storage)?;
        Ok(())
    }
    fn delete(&mut self, table: DomainTable, key: &[u8]) -> Result<(), TableError> {
        self.tables[table as usize].remove(key).map_err(storage)?;
        Ok(())
    }
}

/// A consistent read view of the state: one redb read transaction.
pub struct StateReader {
    pub(crate) txn: ReadTransaction,
    pub(crate) path: PathBuf,
}

impl ReadTables for StateReader {
    fn get(&self, table: DomainTable, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        let t = match self.txn.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(storage(e)),
        };
        Ok(t.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
    }
    fn scan(
        &self,
        table: DomainTable,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<Row>, TableError> {
        if inverted(&start, &end) {
            return Ok(Vec::new());
        }
        let t = match self.txn.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(e)),
        };
        collect(t.range::<&[u8]>((start, end)).map_err(storage)?, dir, limit)
    }
}

impl StateReader {
    /// The last applied log id of this view.
    pub fn applied(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        Ok(read_meta::<Option<LogId<NodeId>>>(&self.txn, &self.path, KEY_APPLIED)?.flatten())
    }
    /// The membership as of this view.
    pub fn membership(&self) -> Result<StoredMembership<NodeId, BasicNode>, StoreError> {
        Ok(read_meta(&self.txn, &self.path, KEY_MEMBERSHIP)?.unwrap_or_default())
    }
    /// The state digest of this view (see `keel_domain::query::digest`).
    pub fn digest(&self) -> Result<[u8; 32], StoreError> {
        keel_domain::query::digest(self).map_err(|e| StoreError::Corrupt {
            file: self.path.clone(),
            location: "state tables".into(),
            detail: e.to_string(),
        })
    }
}

pub(crate) fn read_meta<T: serde::de::DeserializeOwned>(
    txn: &ReadTransaction,
    path: &std::path::Path,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let t = match txn.open_table(SM_META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(StoreError::db(path, e)),
    };
    let Some(v) = t.get(key).map_err(|e| StoreError::db(path, e))? else {
        return Ok(None);
    };
    keel_domain::codec::decode(DomainTable::Meta, key.as_bytes(), v.value())
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            file: path.to_path_buf(),
            location: format!("state meta {key}"),
            detail: e.to_string(),
        })
}
