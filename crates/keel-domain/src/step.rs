//! How a command's handlers report: a refusal (part of the replicated
//! result) or a storage failure (which aborts the batch), and the typed
//! read of one record that handlers and queries start from.

use crate::codec::decode;
use crate::error::{DomainError, TableError};
use crate::tables::{ReadTables, Table};

/// A command's refusal, or a storage failure that must abort the batch.
pub(crate) enum Fail {
    Domain(DomainError),
    Table(TableError),
}
impl From<DomainError> for Fail {
    fn from(e: DomainError) -> Self {
        Fail::Domain(e)
    }
}
impl From<TableError> for Fail {
    fn from(e: TableError) -> Self {
        Fail::Table(e)
    }
}

/// A handler's result.
pub(crate) type Step<V> = Result<V, Fail>;

/// The refusal of an arithmetic overflow in `what`.
pub(crate) fn ovf(what: &str) -> Fail {
    Fail::Domain(DomainError::overflow(what))
}

/// The decoded value at `key`, if any.
pub(crate) fn get<T: ReadTables, V: serde::de::DeserializeOwned>(
    t: &T,
    table: Table,
    key: &[u8],
) -> Result<Option<V>, TableError> {
    t.get(table, key)?
        .map(|v| decode(table, key, &v))
        .transpose()
}
