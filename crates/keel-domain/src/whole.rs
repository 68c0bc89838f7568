//! Whole numbers read from JSON. JSON has one number type and JSON Schema
//! counts `596.0` as the integer 596, so a field of whole units accepts an
//! integral JSON number however it is written; a fraction, or a number
//! outside the field's type, is still refused. Formats that are not
//! human-readable (postcard: the Raft log, the tables, internal RPC) read
//! exactly as the plain integer types do, so nothing stored changes.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// 2^53: the largest magnitude up to which every integer has an `f64` of
/// its own. A float beyond it may not be the number that was written (a
/// literal too long for `f64`, or an integer literal past `i64` that the
/// JSON parser read as a float and rounded into range), so it is refused
/// rather than read as a neighbour.
const EXACT_F64_MAX: f64 = 9_007_199_254_740_992.0;

/// Accepts an integer, or a float with no fraction, that fits `T`.
struct Whole<T>(std::marker::PhantomData<T>);

impl<T: TryFrom<u64> + TryFrom<i64>> Visitor<'_> for Whole<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a whole number that fits {}", std::any::type_name::<T>())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        let refuse = || E::invalid_value(de::Unexpected::Float(v), &self);
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(refuse());
        }
        if v.abs() > EXACT_F64_MAX {
            return Err(refuse());
        }
        // Integral and within ±2^53: the conversion is exact.
        if v >= 0.0 {
            self.visit_u64(v as u64)
        } else {
            self.visit_i64(v as i64)
        }
    }
}

fn whole<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + TryFrom<i64> + Deserialize<'de>,
{
    if d.is_human_readable() {
        d.deserialize_any(Whole(std::marker::PhantomData))
    } else {
        T::deserialize(d)
    }
}

/// A `u64` field (`#[serde(deserialize_with = "whole::u64")]`).
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole(d)
}

/// An `i64` field.
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    whole(d)
}

/// An `Option<u32>` field (with `#[serde(default)]`: absent is `None`).
pub fn option_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    option(d)
}

/// An `Option<u64>` field (with `#[serde(default)]`: absent is `None`).
pub fn option_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    option(d)
}

fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64> + TryFrom<i64> + Deserialize<'de>,
{
    /// `Some` of a whole number, or `None` for null.
    struct Wrap<T>(T);
    impl<'de, T: TryFrom<u64> + TryFrom<i64> + Deserialize<'de>> Deserialize<'de> for Wrap<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            whole(d).map(Wrap)
        }
    }
    Ok(Option::<Wrap<T>>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    struct Fields {
        #[serde(deserialize_with = "super::u64")]
        n: u64,
        #[serde(deserialize_with = "super::i64")]
        m: i64,
        #[serde(default, deserialize_with = "super::option_u32")]
        t: Option<u32>,
    }

    fn json(s: &str) -> Result<Fields, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn an_integral_json_number_is_whole_however_it_is_written() {
        let f = json(r#"{"n": 596.0, "m": -3.0, "t": 7.0}"#).unwrap();
        assert_eq!((f.n, f.m, f.t), (596, -3, Some(7)));
        let f = json(r#"{"n": 18446744073709551615, "m": 1e3}"#).unwrap();
        assert_eq!((f.n, f.m, f.t), (u64::MAX, 1000, None));
        let f = json(r#"{"n": 9007199254740992.0, "m": -9223372036854775808}"#).unwrap();
        assert_eq!((f.n, f.m), (1 << 53, i64::MIN));
        assert_eq!(json(r#"{"n": 1, "m": 1, "t": null}"#).unwrap().t, None);
    }

    #[test]
    fn fractions_and_numbers_outside_the_type_are_refused() {
        for bad in [
            r#"{"n": 1.5, "m": 0}"#,
            r#"{"n": -1, "m": 0}"#,
            r#"{"n": -1.0, "m": 0}"#,
            r#"{"n": 18446744073709551616, "m": 0}"#,
            r#"{"n": 1.8446744073709552e19, "m": 0}"#,
            r#"{"n": 0, "m": 9223372036854775808}"#,
            r#"{"n": 0, "m": 9.3e18}"#,
            // Past i64::MIN as an integer literal, which the parser reads
            // as a float that rounds to exactly i64::MIN.
            r#"{"n": 0, "m": -9223372036854775809}"#,
            // More digits than an f64 holds: it would read as ...992.
            r#"{"n": 9007199254740993.0, "m": 0}"#,
            r#"{"n": 0, "m": 0, "t": 4294967296}"#,
            r#"{"n": 0, "m": 0, "t": 0.5}"#,
            r#"{"n": "1", "m": 0}"#,
        ] {
            assert!(json(bad).is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn postcard_reads_the_plain_integers_it_always_did() {
        let f = Fields {
            n: 596,
            m: -3,
            t: Some(7),
        };
        let bytes = postcard::to_stdvec(&f).unwrap();
        assert_eq!(postcard::from_bytes::<Fields>(&bytes).unwrap(), f);
        // The same bytes as fields without the helpers.
        #[derive(Serialize)]
        struct Plain {
            n: u64,
            m: i64,
            t: Option<u32>,
        }
        let plain = postcard::to_stdvec(&Plain {
            n: 596,
            m: -3,
            t: Some(7),
        })
        .unwrap();
        assert_eq!(bytes, plain);
    }
}
