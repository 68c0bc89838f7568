//! The names a backup and its pieces go by: its kind and id, and the
//! digest and sizes of each chunk. A module of their own, so that `codec`
//! and `layout`, which name them, and `manifest`, which lists them and uses
//! `codec` and `layout`, do not import each other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::BackupError;

/// Longest backup id. The fixed parts take 16 + 2 + 12 bytes and the
/// sequence number at most 20 digits (a `u64`), so 64 leaves headroom.
pub const ID_BYTES_MAX: usize = 64;

/// Latest `created_ms` an id can show: 9999-12-31T23:59:59.999Z, so the
/// timestamp part stays 4-digit-year fixed width and ids sort by time.
pub const CREATED_MS_MAX: u64 = 253_402_300_799_999;

/// Fewest digits of the sequence number in an id (zero-padded), as in
/// `20261123T142701Z-full-000123`.
const SEQ_DIGITS_MIN: usize = 6;

/// Most digits of the sequence number: a `u64` has at most 20.
const SEQ_DIGITS_MAX: usize = 20;

/// What a backup holds, which decides how it chains (see [`crate::chain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The whole state at `last_index`, taken while the node runs.
    Full,
    /// Changes since `parent`, the previous backup of any kind.
    Incremental,
    /// Changes since `parent`, the last full.
    Differential,
    /// The whole state at `last_index`, taken with the node stopped.
    Cold,
    /// A segment of the replicated log, `first_index..=last_index`.
    Archive,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 5] = [
        Kind::Full,
        Kind::Incremental,
        Kind::Differential,
        Kind::Cold,
        Kind::Archive,
    ];

    /// The word used in ids and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incremental => "incremental",
            Kind::Differential => "differential",
            Kind::Cold => "cold",
            Kind::Archive => "archive",
        }
    }

    /// Whether a restore can start from this kind alone (a full state).
    pub fn is_base(self) -> bool {
        matches!(self, Kind::Full | Kind::Cold)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backup's unique, sortable name: `20261123T142701Z-full-000123`, the
/// UTC creation second, the kind and a caller-chosen sequence number.
///
/// Ids sort by creation time first. The id is also what makes AEAD nonces
/// unique (see [`crate::codec`]), so the library refuses to write under an
/// id that already has objects anywhere.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(String);

impl BackupId {
    /// The id for a backup of `kind` created at `created_ms` (Unix ms,
    /// given by the caller: the library reads no clock) with sequence
    /// number `seq` (e.g. the last log index covered, or a counter; it must
    /// make the id unique within its second and kind).
    pub fn new(created_ms: u64, kind: Kind, seq: u64) -> Result<Self, BackupError> {
        if created_ms > CREATED_MS_MAX {
            return Err(BackupError::InvalidId {
                id: format!("created_ms={created_ms}"),
                reason: "created_ms is past year 9999".to_owned(),
            });
        }
        let secs = created_ms / 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = keel_protocol::clock::civil_from_days(days);
        Ok(Self(format!(
            "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z-{}-{seq:0width$}",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60,
            kind.as_str(),
            width = SEQ_DIGITS_MIN,
        )))
    }

    /// Parses an id string, checking every part of its shape (ids become
    /// object names, so nothing else may slip through).
    pub fn parse(s: &str) -> Result<Self, BackupError> {
        let bad = |reason: &str| BackupError::InvalidId {
            id: s.chars().take(ID_BYTES_MAX * 2).collect(),
            reason: reason.to_owned(),
        };
        if s.len() > ID_BYTES_MAX {
            return Err(bad("longer than 64 bytes"));
        }
        let mut parts = s.splitn(3, '-');
        let (Some(stamp), Some(kind), Some(seq)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected TIMESTAMP-KIND-SEQ"));
        };
        let stamp_ok = stamp.len() == 16
            && stamp.bytes().enumerate().all(|(i, b)| match i {
                8 => b == b'T',
                15 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        if !stamp_ok {
            return Err(bad("timestamp must look like 20261123T142701Z"));
        }
        if !Kind::ALL.iter().any(|k| k.as_str() == kind) {
            return Err(bad(
                "kind must be full, incremental, differential, cold or archive",
            ));
        }
        if !(SEQ_DIGITS_MIN..=SEQ_DIGITS_MAX).contains(&seq.len())
            || !seq.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad("sequence number must be 6 to 20 digits"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as a string (also its object-name prefix on every target).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kind named in the id.
    pub fn kind(&self) -> Kind {
        let word = self.0.split('-').nth(1).unwrap_or_default();
        // Invariant: `parse` and `new` only build ids whose second part is
        // a kind word; `Full` is never reached.
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == word)
            .unwrap_or(Kind::Full)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BackupId {
    type Err = BackupError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for BackupId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BackupId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A BLAKE3 hash, shown as 64 hex characters in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// BLAKE3 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        blake3::Hash::from_hex(s.as_bytes())
            .map(Digest::from)
            .map_err(serde::de::Error::custom)
    }
}

/// One chunk of a backup: its plain and sealed sizes and checksums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInfo {
    /// Bytes of content in this chunk.
    pub plain_bytes: u64,
    /// BLAKE3 of the content.
    pub plain_blake3: Digest,
    /// Bytes after compression and encryption (with the AEAD tag).
    pub sealed_bytes: u64,
    /// BLAKE3 of the sealed bytes: what a mirror copy is checked against.
    pub sealed_blake3: Digest,
    /// BLAKE3 of each erasure shard's payload, shard 0 first (empty for a
    /// mirror). Kept here, under the manifest MAC, so a shard can be proven
    /// good without decoding its chunk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_blake3: Vec<Digest>,
}
