//! Money in integer minor units (cents). Every operation is checked: an
//! overflow is an error the caller must handle, never a silent wrap.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// An amount in minor units of some currency. Signed because the external
/// account (the outside world) runs a negative balance by design.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Minor(pub i64);

impl<'de> Deserialize<'de> for Minor {
    /// As the `i64` inside; from JSON, any integral number ([`crate::whole`]).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::whole::i64(d).map(Minor)
    }
}

/// An arithmetic result did not fit in an `i64` of minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("amount overflow")]
pub struct Overflow;

impl Minor {
    /// Zero minor units.
    pub const ZERO: Minor = Minor(0);

    /// `self + other`, or `Overflow`.
    pub fn checked_add(self, other: Minor) -> Result<Minor, Overflow> {
        self.0.checked_add(other.0).map(Minor).ok_or(Overflow)
    }
    /// `self - other`, or `Overflow`.
    pub fn checked_sub(self, other: Minor) -> Result<Minor, Overflow> {
        self.0.checked_sub(other.0).map(Minor).ok_or(Overflow)
    }
    /// `self * qty`, or `Overflow`.
    pub fn checked_mul(self, qty: u64) -> Result<Minor, Overflow> {
        let q = i64::try_from(qty).map_err(|_| Overflow)?;
        self.0.checked_mul(q).map(Minor).ok_or(Overflow)
    }
    /// True when strictly positive.
    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

impl utoipa::PartialSchema for Minor {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some(
                "An amount in integer minor units (cents) of a currency",
            ))
            .minimum(Some(i64::MIN))
            .maximum(Some(i64::MAX))
            .into()
    }
}
impl utoipa::ToSchema for Minor {}

impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Minor(2).checked_add(Minor(3)), Ok(Minor(5)));
        assert_eq!(Minor(i64::MAX).checked_add(Minor(1)), Err(Overflow));
        assert_eq!(Minor(i64::MIN).checked_sub(Minor(1)), Err(Overflow));
        assert_eq!(Minor(i64::MAX / 2 + 1).checked_mul(2), Err(Overflow));
        assert_eq!(Minor(7).checked_mul(u64::MAX), Err(Overflow));
        assert_eq!(Minor(7).checked_mul(3), Ok(Minor(21)));
    }
}
