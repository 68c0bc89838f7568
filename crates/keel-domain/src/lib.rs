//! Keel's commerce core: a pure, deterministic state machine.
//!
//! Every replica applies the same [`Batch`]es from the Raft log through
//! [`apply_batch`] and ends with byte-identical tables. This crate does no
//! I/O, reads no clock and uses no randomness: the leader's timestamp inside
//! each batch is the only time it sees. Storage is abstracted by the small
//! [`WriteTables`] trait, implemented in memory here ([`MemTables`]) and over
//! redb in `keel-store`.
//!
//! Where each invariant of docs/DOMAIN.md lives:
//! - enforced: in [`apply`]'s command handlers (check everything, then write);
//! - checked: by [`check_invariants`], used by unit and property tests, and
//!   after every batch in debug builds by the store.
#![deny(missing_docs)]

mod access;
pub mod apply;
pub mod codec;
pub mod command;
pub mod error;
pub mod field;
pub mod hashing;
pub mod identity;
pub mod ids;
pub mod invariants;
pub mod keys;
pub mod model;
pub mod money;
pub mod query;
mod step;
pub mod tables;
pub mod test_bugs;
pub mod whole;

pub use access::token_generation;
pub use apply::{apply_batch, Applied, CommandResult, Outcome};
pub use command::{Batch, Command, Envelope, LineRequest, Principal};
pub use error::{DomainError, FieldError, ShortLine, TableError};
pub use identity::{ApiKey, AuditRecord, KeyInfo, Role};
pub use ids::{AccountId, Currency, KeyId, OrderId, ProductName, RequestId, Sku};
pub use invariants::{check_invariants, Violation};
pub use model::{
    Account, AccountKind, Order, OrderLine, OrderStatus, Product, StatusChange, Stock, StockLedger,
    Summary,
};
pub use money::Minor;
pub use tables::{Direction, MemTables, ReadTables, Table, WriteTables};
