//! The on-disk encoding of every stored value: one format-version byte, the
//! postcard body, and a CRC-32C of both. Compact (postcard uses varints), and
//! self-checking: a flipped bit in a value is reported as corruption on read,
//! never decoded into a plausible wrong value.

use keel_protocol::hex;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::TableError;
use crate::tables::Table;

/// Version of the value encoding. Bump on any incompatible change to a stored
/// type; `decode` refuses versions it does not know.
pub const VALUE_FORMAT_VERSION: u8 = 1;

/// Encodes a value for storage.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VALUE_FORMAT_VERSION];
    // postcard serialisation of our own plain types into a Vec cannot fail:
    // they contain no maps with non-serialisable keys and no custom errors.
    if let Ok(body) = postcard::to_stdvec(value) {
        out.extend_from_slice(&body);
    }
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a stored value, verifying version and checksum.
pub fn decode<T: DeserializeOwned>(
    table: Table,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, TableError> {
    let corrupt = |reason: String| TableError::Corrupt {
        table: table.name(),
        key: hex::encode(key),
        reason,
    };
    if bytes.len() < 5 {
        return Err(corrupt(format!("value too short ({} bytes)", bytes.len())));
    }
    let (payload, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c(payload) != stored {
        return Err(corrupt("checksum mismatch".into()));
    }
    if payload[0] != VALUE_FORMAT_VERSION {
        return Err(corrupt(format!("unknown format version {}", payload[0])));
    }
    postcard::from_bytes(&payload[1..]).map_err(|e| corrupt(format!("does not decode: {e}")))
}

/// CRC-32C (Castagnoli) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_every_single_bit_flip() {
        let v = (42u64, String::from("hello"), vec![1i64, -2]);
        let enc = encode(&v);
        let back: (u64, String, Vec<i64>) = decode(Table::Meta, b"k", &enc).unwrap();
        assert_eq!(back, v);
        for i in 0..enc.len() * 8 {
            let mut bad = enc.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                decode::<(u64, String, Vec<i64>)>(Table::Meta, b"k", &bad).is_err(),
                "flip of bit {i} went unnoticed"
            );
        }
    }

    #[test]
    fn truncated_and_unknown_versions_are_corrupt() {
        let enc = encode(&7u32);
        assert!(decode::<u32>(Table::Meta, b"k", &enc[..3]).is_err());
        let mut v2 = enc.clone();
        v2[0] = 99;
        let n = v2.len();
        let crc = crc32c(&v2[..n - 4]).to_le_bytes();
        v2[n - 4..].copy_from_slice(&crc);
        let err = decode::<u32>(Table::Meta, b"k", &v2).unwrap_err();
        assert!(err.to_string().contains("unknown format version"));
    }
}
