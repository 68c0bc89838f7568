//! `keel_domain`'s table traits over redb: one redb table per
//! [`keel_domain::Table`], named by [`Table::name`], byte keys to byte values
//! (redb orders `&[u8]` keys bytewise, which the domain's key layout needs).
//! Plus the state's own metadata table, `sm_meta`.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use keel_domain::codec;
use keel_domain::tables::Row;
use keel_domain::{Direction, ReadTables, Table, TableError, WriteTables};
use keel_protocol::hex;
use openraft::{BasicNode, LogId, StoredMembership};
use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::{NodeId, StoreError};

/// The state's metadata, written in the same transaction as the state it
/// describes. Values are encoded with [`keel_domain::codec`] (checksummed).
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
/// `Option<LogId>`: the last applied log id.
pub(crate) const KEY_APPLIED: &str = "applied";
/// `StoredMembership`: the last applied membership.
pub(crate) const KEY_MEMBERSHIP: &str = "membership";
/// [`SnapshotRef`]: the current snapshot file.
pub(crate) const KEY_SNAPSHOT: &str = "snapshot";

/// Which file in the snapshot directory is the current snapshot. Recorded
/// in the state database, in the same transaction as the state an installed
/// snapshot brings, so state and current snapshot never disagree after a
/// crash; any other file in the directory is left over and removed at open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotRef {
    /// File name inside the snapshot directory.
    pub file: String,
    /// Sequence number that named it; new files get larger ones.
    pub seq: u64,
}

// `Table::ALL` lists the tables in declaration order, so a table's
// discriminant is its position in `ALL` (checked at compile time).
const _: () = {
    let mut i = 0;
    while i < Table::ALL.len() {
        assert!(Table::ALL[i] as usize == i);
        i += 1;
    }
};

/// The redb definition of a domain table.
pub(crate) fn def(t: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(t.name())
}

fn storage_err(table: Table, key: &[u8], e: impl Into<redb::Error>) -> TableError {
    match e.into() {
        redb::Error::Corrupted(reason) => TableError::Corrupt {
            table: table.name(),
            key: hex::encode(key),
            reason: format!("redb: {reason}"),
        },
        other => TableError::Storage(format!("table {}: {other}", table.name())),
    }
}

fn missing(table: Table) -> TableError {
    TableError::Storage(format!("table {} is not open", table.name()))
}

type RowGuards<'a> = (
    redb::AccessGuard<'a, &'static [u8]>,
    redb::AccessGuard<'a, &'static [u8]>,
);

fn scan_table(
    table: Table,
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    dir: Direction,
    limit: usize,
) -> Result<Vec<Row>, TableError> {
    // redb refuses an inverted range; the domain expects an empty answer.
    if keel_domain::tables::is_inverted(&start, &end) || limit == 0 {
        return Ok(Vec::new());
    }
    let range = t
        .range::<&[u8]>((start, end))
        .map_err(|e| storage_err(table, b"", e))?;
    let row = |r: Result<RowGuards<'_>, redb::StorageError>| {
        r.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
            .map_err(|e| storage_err(table, b"", e))
    };
    match dir {
        Direction::Forward => range.take(limit).map(row).collect(),
        Direction::Backward => range.rev().take(limit).map(row).collect(),
    }
}

/// The domain tables inside one redb write transaction: what
/// `keel_domain::apply_batch` runs over on a replica.
pub(crate) struct WriteTxnTables<'t> {
    tables: Vec<redb::Table<'t, &'static [u8], &'static [u8]>>,
}

impl<'t> WriteTxnTables<'t> {
    /// Opens (creating if needed) every domain table in `txn`.
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, redb::TableError> {
        let tables = Table::ALL
            .iter()
            .map(|t| txn.open_table(def(*t)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { tables })
    }

    fn table(
        &self,
        t: Table,
    ) -> Result<&redb::Table<'t, &'static [u8], &'static [u8]>, TableError> {
        self.tables.get(t as usize).ok_or_else(|| missing(t))
    }

    fn table_mut(
        &mut self,
        t: Table,
    ) -> Result<&mut redb::Table<'t, &'static [u8], &'static [u8]>, TableError> {
        self.tables.get_mut(t as usize).ok_or_else(|| missing(t))
    }
}

impl ReadTables for WriteTxnTables<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self
            .table(table)?
            .get(key)
            .map_err(|e| storage_err(table, key, e))?
            .map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<Row>, TableError> {
        scan_table(table, self.table(table)?, start, end, dir, limit)
    }
}

impl WriteTables for WriteTxnTables<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        self.table_mut(table)?
            .insert(key, value)
            .map_err(|e| storage_err(table, key, e))?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), TableError> {
        self.table_mut(table)?
            .remove(key)
            .map_err(|e| storage_err(table, key, e))?;
        Ok(())
    }
}

/// A consistent read view of the state: one redb read transaction. Every
/// read through it (domain queries, [`StateReader::applied`],
/// [`StateReader::digest`]) sees the same committed state, however many
/// entries are applied meanwhile.
pub struct StateReader {
    txn: ReadTransaction,
    tables: Vec<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    path: PathBuf,
}

impl StateReader {
    pub(crate) fn new(txn: ReadTransaction, path: &Path) -> Result<Self, StoreError> {
        let tables = Table::ALL
            .iter()
            .map(|t| txn.open_table(def(*t)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::db(path, e))?;
        Ok(Self {
            txn,
            tables,
            path: path.to_path_buf(),
        })
    }

    fn table(&self, t: Table) -> Result<&ReadOnlyTable<&'static [u8], &'static [u8]>, TableError> {
        self.tables.get(t as usize).ok_or_else(|| missing(t))
    }

    /// The last applied log id of this view (`None` before the first entry).
    pub fn applied(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        Ok(read_meta::<Option<LogId<NodeId>>>(&self.txn, &self.path, KEY_APPLIED)?.flatten())
    }

    /// The last applied membership of this view.
    pub fn membership(&self) -> Result<StoredMembership<NodeId, BasicNode>, StoreError> {
        Ok(read_meta(&self.txn, &self.path, KEY_MEMBERSHIP)?.unwrap_or_default())
    }

    /// The state digest of this view ([`keel_domain::query::digest`]): equal
    /// on two replicas at the same applied log id.
    pub fn digest(&self) -> Result<[u8; 32], StoreError> {
        keel_domain::query::digest(self).map_err(|e| table_error(&self.path, e))
    }

    pub(crate) fn snapshot_ref(&self) -> Result<Option<SnapshotRef>, StoreError> {
        read_meta(&self.txn, &self.path, KEY_SNAPSHOT)
    }

    /// Calls `f` with every row of every table, in [`Table::ALL`] order and
    /// key order, streaming (one row in memory at a time).
    pub(crate) fn for_each_row(
        &self,
        mut f: impl FnMut(Table, &[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for t in Table::ALL {
            let table = self.table(t).map_err(|e| table_error(&self.path, e))?;
            for row in table.iter().map_err(|e| StoreError::db(&self.path, e))? {
                let (k, v) = row.map_err(|e| StoreError::db(&self.path, e))?;
                f(t, k.value(), v.value())?;
            }
        }
        Ok(())
    }
}

impl ReadTables for StateReader {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self
            .table(table)?
            .get(key)
            .map_err(|e| storage_err(table, key, e))?
            .map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<Row>, TableError> {
        scan_table(table, self.table(table)?, start, end, dir, limit)
    }
}

/// A domain table error as a store error on the state file.
pub(crate) fn table_error(path: &Path, e: TableError) -> StoreError {
    match e {
        TableError::Corrupt { table, key, reason } => {
            StoreError::corrupt(path, format!("table {table} key {key}"), reason)
        }
        TableError::Storage(detail) => StoreError::other(path, detail),
    }
}

fn decode_meta<T: serde::de::DeserializeOwned>(
    path: &Path,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    codec::decode(Table::Meta, key.as_bytes(), bytes)
        .map_err(|e| StoreError::corrupt(path, format!("state meta {key}"), e.to_string()))
}

/// Reads and verifies one metadata value.
pub(crate) fn read_meta<T: serde::de::DeserializeOwned>(
    txn: &ReadTransaction,
    path: &Path,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let t = txn
        .open_table(SM_META)
        .map_err(|e| StoreError::db(path, e))?;
    let Some(v) = t.get(key).map_err(|e| StoreError::db(path, e))? else {
        return Ok(None);
    };
    decode_meta(path, key, v.value()).map(Some)
}

/// Reads and verifies one metadata value inside a write transaction.
pub(crate) fn read_meta_in<T: serde::de::DeserializeOwned>(
    txn: &WriteTransaction,
    path: &Path,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let t = txn
        .open_table(SM_META)
        .map_err(|e| StoreError::db(path, e))?;
    let Some(v) = t.get(key).map_err(|e| StoreError::db(path, e))? else {
        return Ok(None);
    };
    decode_meta(path, key, v.value()).map(Some)
}

/// Writes metadata values in `txn`.
pub(crate) fn write_meta(
    txn: &WriteTransaction,
    path: &Path,
    values: &[(&str, Vec<u8>)],
) -> Result<(), StoreError> {
    let mut t = txn
        .open_table(SM_META)
        .map_err(|e| StoreError::db(path, e))?;
    for (k, v) in values {
        t.insert(*k, v.as_slice())
            .map_err(|e| StoreError::db(path, e))?;
    }
    Ok(())
}

/// Encodes a metadata value.
pub(crate) fn encode_meta<T: Serialize>(value: &T) -> Vec<u8> {
    codec::encode(value)
}
