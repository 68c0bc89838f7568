//! Errors. [`DomainError`] is a command's refusal (part of the replicated
//! result, so it is serialisable and stable); [`TableError`] is a storage
//! failure underneath the state machine, which is never a domain outcome.

use serde::{Deserialize, Serialize};

pub use crate::field::FieldError;
use crate::ids::{AccountId, OrderId, RequestId, Sku};
use crate::model::OrderStatus;
use crate::money::Minor;

/// One order line that could not be reserved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShortLine {
    /// The product.
    pub sku: Sku,
    /// What the order asked for (summed over lines of the same SKU).
    pub requested: u64,
    /// What was available when the order was applied.
    pub available: u64,
}

/// Why a command was refused. Each variant has a stable [`code`](Self::code)
/// that the HTTP API uses as the problem `type`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DomainError {
    /// A field of the command is out of range or malformed.
    #[error("validation failed: {0}")]
    Validation(FieldError),
    /// The named entity does not exist.
    #[error("{entity} {id} not found")]
    NotFound {
        /// `product`, `account` or `order`.
        entity: String,
        /// Its id.
        id: String,
    },
    /// The entity already exists and cannot be created again.
    #[error("{entity} {id} already exists")]
    AlreadyExists {
        /// `account`, or a currency's merchant or external account.
        entity: String,
        /// Its id.
        id: String,
    },
    /// Not every line could be reserved; nothing was reserved.
    #[error("out of stock")]
    OutOfStock {
        /// Every short line, with requested and available quantities.
        lines: Vec<ShortLine>,
    },
    /// The paying account's balance is short of the amount.
    #[error("insufficient funds in {account}: balance {balance}, required {required}")]
    InsufficientFunds {
        /// The paying account.
        account: AccountId,
        /// Its balance.
        balance: Minor,
        /// What the transfer needed.
        required: Minor,
    },
    /// The order's status does not allow the action.
    #[error("cannot {action} order {order} in status {from:?}")]
    InvalidTransition {
        /// The order.
        order: OrderId,
        /// Its current status.
        from: OrderStatus,
        /// The refused action (`pay`, `cancel`, ...).
        action: String,
    },
    /// `SetStock` would put `on_hand` below what is reserved.
    #[error("on_hand {on_hand} is below reserved {reserved} for {sku}")]
    BelowReserved {
        /// The product.
        sku: Sku,
        /// The requested on-hand quantity.
        on_hand: u64,
        /// Units currently reserved.
        reserved: u64,
    },
    /// The same idempotency key was used for a different command.
    #[error("idempotency key {request_id} was used for a different request")]
    IdempotencyConflict {
        /// The key.
        request_id: RequestId,
    },
    /// The principal may not act on this entity.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why, for a human.
        reason: String,
    },
    /// The credential the command came with is no longer good: its key
    /// was revoked or has expired, or its customer's tokens were revoked.
    #[error("unauthorized: {reason}")]
    Unauthorized {
        /// Why, for a human.
        reason: String,
    },
    /// An amount or quantity would overflow its integer type.
    #[error("arithmetic overflow in {what}")]
    Overflow {
        /// What overflowed.
        what: String,
    },
}

impl DomainError {
    /// The stable short code used as problem `type` and in metrics.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Validation(_) => "validation",
            DomainError::NotFound { .. } => "not_found",
            DomainError::AlreadyExists { .. } => "already_exists",
            DomainError::OutOfStock { .. } => "out_of_stock",
            DomainError::InsufficientFunds { .. } => "insufficient_funds",
            DomainError::InvalidTransition { .. } => "invalid_transition",
            DomainError::BelowReserved { .. } => "below_reserved",
            DomainError::IdempotencyConflict { .. } => "idempotency_conflict",
            DomainError::Forbidden { .. } => "forbidden",
            DomainError::Overflow { .. } => "overflow",
            DomainError::Unauthorized { .. } => "unauthorized",
        }
    }

    pub(crate) fn validation(field: &str, reason: impl Into<String>) -> Self {
        DomainError::Validation(FieldError::new(field, reason))
    }

    pub(crate) fn not_found(entity: &str, id: impl ToString) -> Self {
        DomainError::NotFound {
            entity: entity.to_owned(),
            id: id.to_string(),
        }
    }

    pub(crate) fn overflow(what: &str) -> Self {
        DomainError::Overflow {
            what: what.to_owned(),
        }
    }
}

impl From<FieldError> for DomainError {
    fn from(e: FieldError) -> Self {
        DomainError::Validation(e)
    }
}

/// The storage underneath the state machine failed or returned data that does
/// not decode. Never a command's outcome: the caller must stop applying.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The backing store reported an I/O or engine error.
    #[error("storage error: {0}")]
    Storage(String),
    /// A stored value failed to decode or its checksum did not match.
    #[error("corrupt record in table {table} at key {key}: {reason}")]
    Corrupt {
        /// The table's name.
        table: &'static str,
        /// The key, hex encoded.
        key: String,
        /// What was wrong.
        reason: String,
    },
}
