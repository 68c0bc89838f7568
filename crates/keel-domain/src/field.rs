//! The validation error of one field, in a module of its own: the identifier
//! newtypes (`ids`) return it, and [`crate::DomainError`] (`error`), which
//! names those identifiers, carries it.

use serde::{Deserialize, Serialize};

/// A field that failed validation, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field's name as it appears in the API.
    pub field: String,
    /// What rule it broke, for a human.
    pub reason: String,
}

impl FieldError {
    /// A validation failure of `field`.
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}
