//! Identifier newtypes. Each can only be built valid ("parse, don't validate"):
//! deserialisation goes through the same constructor, so a command that reached
//! the state machine already has well-formed identifiers.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::field::FieldError;

/// Longest SKU or account id: long enough for any real catalogue code, short
/// enough that keys stay small in every index that embeds them.
pub const ID_LEN_MAX: usize = 64;
/// Longest idempotency key, as Stripe allows (`Idempotency-Key`).
pub const REQUEST_ID_LEN_MAX: usize = 128;
/// Longest product name in characters.
pub const PRODUCT_NAME_LEN_MAX: usize = 200;

fn check_id(field: &'static str, s: &str) -> Result<(), FieldError> {
    if s.is_empty() || s.len() > ID_LEN_MAX {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {ID_LEN_MAX} characters, got {}", s.len()),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(FieldError::new(
            field,
            format!("may contain only A-Z a-z 0-9 - _ . (found {c:?})"),
        ));
    }
    Ok(())
}

/// The pattern of a SKU or account id, as [`check_id`] checks it.
pub const ID_PATTERN: &str = "^[A-Za-z0-9._-]+$";
/// The pattern of an idempotency key: printable ASCII.
pub const REQUEST_ID_PATTERN: &str = "^[ -~]+$";
/// The pattern of a currency code.
pub const CURRENCY_PATTERN: &str = "^[A-Z]{3}$";
/// The pattern of a product name: no control character (Unicode's `Cc`,
/// what [`char::is_control`] refuses).
pub const PRODUCT_NAME_PATTERN: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]+$";

/// The OpenAPI schema of a string with these bounds: what the constructor
/// accepts, exactly, so the API's contract and its validation agree.
fn string_schema(
    description: &str,
    len: (usize, usize),
    pattern: &str,
    example: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .min_length(Some(len.0))
        .max_length(Some(len.1))
        .pattern(Some(pattern))
        .examples([example])
        .into()
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $example:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Builds the identifier, or says which rule it breaks.
            pub fn new(s: impl Into<String>) -> Result<Self, FieldError> {
                let s = s.into();
                check_id($field, &s)?;
                Ok(Self(s))
            }
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(s: String) -> Result<Self, FieldError> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                string_schema(
                    concat!("1 to 64 of A-Z a-z 0-9 - _ . (", $field, ")"),
                    (1, ID_LEN_MAX),
                    ID_PATTERN,
                    $example,
                )
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

string_id!(
    /// A stock-keeping unit: 1 to 64 of `A-Z a-z 0-9 - _ .`.
    Sku,
    "sku",
    "SKU-1"
);
string_id!(
    /// An account's id: the same alphabet and length as a SKU.
    AccountId,
    "account",
    "alice"
);

string_id!(
    /// An API key's id: the same alphabet and length as a SKU. The node
    /// that creates a key chooses it at random; it is not a secret.
    KeyId,
    "key",
    "k-5f3a9c0e1d2b4a68"
);

/// An order's id, assigned by the state machine: dense and increasing from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OrderId(pub u64);

impl<'de> Deserialize<'de> for OrderId {
    /// As the `u64` inside; from JSON, any integral number ([`crate::whole`]).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::whole::u64(d).map(OrderId)
    }
}

impl utoipa::PartialSchema for OrderId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::Custom("uint64".into())))
            .description(Some("An order's id: assigned from 1 up"))
            .minimum(Some(1))
            .maximum(Some(u64::MAX))
            .examples([1])
            .into()
    }
}
impl utoipa::ToSchema for OrderId {}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An idempotency key: 1 to 128 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

impl RequestId {
    /// Builds the key, or says which rule it breaks.
    pub fn new(s: impl Into<String>) -> Result<Self, FieldError> {
        let s = s.into();
        if s.is_empty() || s.len() > REQUEST_ID_LEN_MAX {
            return Err(FieldError::new(
                "request_id",
                format!(
                    "must be 1 to {REQUEST_ID_LEN_MAX} characters, got {}",
                    s.len()
                ),
            ));
        }
        if s.bytes().any(|b| !(0x20..=0x7e).contains(&b)) {
            return Err(FieldError::new(
                "request_id",
                "may contain only printable ASCII",
            ));
        }
        Ok(Self(s))
    }
    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for RequestId {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::new(s)
    }
}
impl From<RequestId> for String {
    fn from(v: RequestId) -> String {
        v.0
    }
}
impl utoipa::PartialSchema for RequestId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            "An idempotency key: 1 to 128 printable ASCII characters",
            (1, REQUEST_ID_LEN_MAX),
            REQUEST_ID_PATTERN,
            "order-7f3a",
        )
    }
}
impl utoipa::ToSchema for RequestId {}
impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Builds the code, or says which rule it breaks.
    pub fn new(s: &str) -> Result<Self, FieldError> {
        let b = s.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_uppercase) {
            return Err(FieldError::new(
                "currency",
                format!("must be three upper-case letters (ISO 4217), got {s:?}"),
            ));
        }
        Ok(Self([b[0], b[1], b[2]]))
    }
    /// The code as text.
    pub fn as_str(&self) -> &str {
        // The constructor admits only ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}
impl TryFrom<String> for Currency {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::new(&s)
    }
}
impl From<Currency> for String {
    fn from(v: Currency) -> String {
        v.as_str().to_owned()
    }
}
impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            "An ISO 4217 currency code: three upper-case letters",
            (3, 3),
            CURRENCY_PATTERN,
            "EUR",
        )
    }
}
impl utoipa::ToSchema for Currency {}
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A product's display name: 1 to 200 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductName(String);

impl ProductName {
    /// Builds the name, or says which rule it breaks.
    pub fn new(s: impl Into<String>) -> Result<Self, FieldError> {
        let s = s.into();
        let n = s.chars().count();
        if n == 0 || n > PRODUCT_NAME_LEN_MAX {
            return Err(FieldError::new(
                "name",
                format!("must be 1 to {PRODUCT_NAME_LEN_MAX} characters, got {n}"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(FieldError::new(
                "name",
                "may not contain control characters",
            ));
        }
        Ok(Self(s))
    }
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for ProductName {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::new(s)
    }
}
impl utoipa::PartialSchema for ProductName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            "A product's display name: 1 to 200 characters, no control characters",
            (1, PRODUCT_NAME_LEN_MAX),
            PRODUCT_NAME_PATTERN,
            "Blue mug",
        )
    }
}
impl utoipa::ToSchema for ProductName {}
impl From<ProductName> for String {
    fn from(v: ProductName) -> String {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_accepts_its_alphabet_and_rejects_the_rest() {
        assert!(Sku::new("ABC-12_x.y").is_ok());
        assert_eq!(Sku::new("").unwrap_err().field, "sku");
        assert!(Sku::new("a".repeat(64)).is_ok());
        assert!(Sku::new("a".repeat(65)).is_err());
        assert!(Sku::new("has space").is_err());
        assert!(Sku::new("ü").is_err());
        assert_eq!(AccountId::new("a/b").unwrap_err().field, "account");
    }

    #[test]
    fn request_id_is_printable_ascii_up_to_128() {
        assert!(RequestId::new("key 1 ~!").is_ok());
        assert!(RequestId::new("x".repeat(128)).is_ok());
        assert!(RequestId::new("x".repeat(129)).is_err());
        assert!(RequestId::new("tab\t").is_err());
        assert!(RequestId::new("").is_err());
    }

    #[test]
    fn currency_is_three_upper_case_letters() {
        assert_eq!(Currency::new("EUR").unwrap().as_str(), "EUR");
        assert!(Currency::new("eur").is_err());
        assert!(Currency::new("EURO").is_err());
    }

    #[test]
    fn product_name_counts_characters_not_bytes() {
        assert!(ProductName::new("é".repeat(200)).is_ok());
        assert!(ProductName::new("é".repeat(201)).is_err());
        assert!(ProductName::new("").is_err());
        assert!(ProductName::new("a\nb").is_err());
    }

    #[test]
    fn deserialising_goes_through_the_constructor() {
        let bad: Result<Sku, _> = serde_json::from_str("\"no spaces\"");
        assert!(bad.is_err());
        let good: Sku = serde_json::from_str("\"SKU-1\"").unwrap();
        assert_eq!(good.as_str(), "SKU-1");
    }
}
