//! What a backup is: its id, kind, the log range it covers, its chunks and
//! their checksums. The manifest is the only object that makes a backup
//! visible, and it is MAC'd with the repository key so a tampered manifest
//! or a wrong key is caught before a single byte is restored.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::{Key, CHUNK_BYTES_MAX, SEALED_BYTES_MAX};
pub use crate::ids::{BackupId, ChunkInfo, Digest, Kind, CREATED_MS_MAX, ID_BYTES_MAX};
use crate::layout::Layout;
use crate::BackupError;

/// Version of the manifest JSON schema (and of the envelope around it).
/// Bumped on any incompatible change; readers refuse versions they do not
/// know instead of guessing.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// Most chunks in one backup: 256 Ki chunks of 4 MiB is 1 TiB, far above a
/// Keel state or log segment, and keeps a manifest under ~100 MiB.
pub const CHUNKS_MAX: usize = 256 * 1024;

/// Largest manifest object read from a target (see [`CHUNKS_MAX`]: about
/// 350 bytes of JSON per erasure-coded chunk).
pub const MANIFEST_BYTES_MAX: u64 = 128 * 1024 * 1024;

/// Most caller labels on one backup: labels are a handful of facts (state
/// digest, node id, cluster id), not a data store.
pub const LABELS_MAX: usize = 64;

/// Longest label key plus value, in bytes.
pub const LABEL_BYTES_MAX: usize = 1024;

/// Context string for the manifest MAC key (`blake3::derive_key`): a
/// separate key per purpose, so the AEAD key never doubles as a MAC key.
const MAC_KEY_CONTEXT: &str = "keel-backup 2026-01 manifest mac v1";

/// What the caller says about a backup it hands to
/// [`Repository::write`](crate::Repository::write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupMeta {
    /// What the content is.
    pub kind: Kind,
    /// Caller's sequence number for the id (see [`BackupId::new`]).
    pub seq: u64,
    /// Creation time, Unix ms, from the caller's clock.
    pub created_ms: u64,
    /// First log index covered (for a full: the index of the state, same
    /// as `last_index`, or the log start).
    pub first_index: u64,
    /// Last log index covered.
    pub last_index: u64,
    /// Leader time of `first_index`, Unix ms.
    pub first_time_ms: u64,
    /// Leader time of `last_index`, Unix ms.
    pub last_time_ms: u64,
    /// Incremental: the previous backup of any kind; differential: the last
    /// full; full and cold: none; archive: optional.
    pub parent: Option<BackupId>,
    /// Caller metadata (state digest, node id, ...), stored under the MAC.
    pub labels: BTreeMap<String, String>,
}

impl BackupMeta {
    /// The id this backup will be written under.
    pub fn id(&self) -> Result<BackupId, BackupError> {
        BackupId::new(self.created_ms, self.kind, self.seq)
    }

    /// Checks the metadata describes a backup that can take part in a
    /// chain; a bad one would only fail later, at restore time.
    pub fn validate(&self) -> Result<BackupId, BackupError> {
        let id = self.id()?;
        let bad = |reason: String| BackupError::InvalidMeta {
            id: id.to_string(),
            reason,
        };
        if self.first_index > self.last_index {
            return Err(bad(format!(
                "first_index {} is after last_index {}",
                self.first_index, self.last_index
            )));
        }
        if self.first_time_ms > self.last_time_ms {
            return Err(bad(format!(
                "first_time_ms {} is after last_time_ms {}",
                self.first_time_ms, self.last_time_ms
            )));
        }
        validate_parent(self.kind, self.parent.as_ref(), &id).map_err(bad)?;
        validate_labels(&self.labels).map_err(bad)?;
        Ok(id)
    }
}

fn validate_parent(kind: Kind, parent: Option<&BackupId>, id: &BackupId) -> Result<(), String> {
    match (kind, parent) {
        (Kind::Full | Kind::Cold, Some(p)) => {
            Err(format!("a {kind} backup has no parent, got {p}"))
        }
        (Kind::Incremental | Kind::Differential, None) => {
            Err(format!("an {kind} backup needs a parent"))
        }
        (_, Some(p)) if p == id => Err("a backup cannot be its own parent".to_owned()),
        (Kind::Differential, Some(p)) if !p.kind().is_base() => Err(format!(
            "a differential's parent must be a full or cold backup, got {p}"
        )),
        _ => Ok(()),
    }
}

fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > LABELS_MAX {
        return Err(format!("{} labels, at most {LABELS_MAX}", labels.len()));
    }
    match labels
        .iter()
        .find(|(k, v)| k.len() + v.len() > LABEL_BYTES_MAX)
    {
        Some((k, _)) => Err(format!("label {k} is longer than {LABEL_BYTES_MAX} bytes")),
        None => Ok(()),
    }
}

/// A backup's description: written last, after every chunk, so its
/// presence on a target means the backup is complete there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT_VERSION`] at write time.
    pub format_version: u32,
    /// The backup's id.
    pub id: BackupId,
    /// What the content is.
    pub kind: Kind,
    /// First log index covered.
    pub first_index: u64,
    /// Last log index covered.
    pub last_index: u64,
    /// Leader time of `first_index`, Unix ms.
    pub first_time_ms: u64,
    /// Leader time of `last_index`, Unix ms.
    pub last_time_ms: u64,
    /// See [`BackupMeta::parent`].
    pub parent: Option<BackupId>,
    /// How the sealed chunks are spread over the targets.
    pub layout: Layout,
    /// Content bytes per chunk (the last chunk may be shorter).
    pub chunk_bytes: u64,
    /// Total content bytes.
    pub content_bytes: u64,
    /// BLAKE3 of the whole content, checked once more after a restore.
    pub content_blake3: Digest,
    /// The chunks, in content order.
    pub chunks: Vec<ChunkInfo>,
    /// Creation time, Unix ms, from the caller.
    pub created_ms: u64,
    /// Caller metadata.
    pub labels: BTreeMap<String, String>,
}

impl Manifest {
    /// Checks a manifest read back from a target is self-consistent before
    /// anything trusts its sizes (pair assertion with the write path).
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.format_version != MANIFEST_FORMAT_VERSION {
            return Err(format!(
                "format version {} is not supported (this build reads {MANIFEST_FORMAT_VERSION}); use a newer keel",
                self.format_version
            ));
        }
        if self.id.kind() != self.kind {
            return Err(format!("id {} does not match kind {}", self.id, self.kind));
        }
        self.layout.validate().map_err(|e| e.to_string())?;
        if self.first_index > self.last_index || self.first_time_ms > self.last_time_ms {
            return Err("index or time range is reversed".to_owned());
        }
        validate_parent(self.kind, self.parent.as_ref(), &self.id)?;
        validate_labels(&self.labels)?;
        if self.chunk_bytes == 0 || self.chunk_bytes > CHUNK_BYTES_MAX as u64 {
            return Err(format!("chunk_bytes {} is out of range", self.chunk_bytes));
        }
        if self.chunks.len() > CHUNKS_MAX {
            return Err(format!(
                "{} chunks, at most {CHUNKS_MAX}",
                self.chunks.len()
            ));
        }
        let shards = self.layout.shard_count_in_manifest();
        let mut total: u64 = 0;
        for (n, c) in self.chunks.iter().enumerate() {
            if c.plain_bytes == 0 || c.plain_bytes > self.chunk_bytes {
                return Err(format!("chunk {n} has {} content bytes", c.plain_bytes));
            }
            if c.sealed_bytes == 0 || c.sealed_bytes > SEALED_BYTES_MAX as u64 {
                return Err(format!("chunk {n} has {} sealed bytes", c.sealed_bytes));
            }
            if c.shard_blake3.len() != shards {
                return Err(format!(
                    "chunk {n} lists {} shard checksums, layout needs {shards}",
                    c.shard_blake3.len()
                ));
            }
            total += c.plain_bytes;
        }
        if total != self.content_bytes {
            return Err(format!(
                "chunks add up to {total} bytes, manifest says {}",
                self.content_bytes
            ));
        }
        Ok(())
    }
}

/// On-disk form of a manifest: the manifest JSON verbatim plus a keyed
/// BLAKE3 MAC over exactly those bytes.
#[derive(Deserialize)]
struct Envelope<'a> {
    format_version: u32,
    mac: String,
    #[serde(borrow)]
    manifest: &'a serde_json::value::RawValue,
}

/// The MAC key for manifests, derived from the repository key.
pub(crate) fn mac_key(key: &Key) -> [u8; 32] {
    blake3::derive_key(MAC_KEY_CONTEXT, key.material())
}

/// Serializes and MACs a manifest into the bytes stored on every target.
pub(crate) fn seal_manifest(manifest: &Manifest, mac_key: &[u8; 32]) -> Vec<u8> {
    // Invariant: a Manifest holds only strings, integers, maps with string
    // keys and enums, which serde_json always serializes.
    let json = serde_json::to_vec(manifest).unwrap_or_default();
    let mac = blake3::keyed_hash(mac_key, &json);
    let mut out = Vec::with_capacity(json.len() + 128);
    out.extend_from_slice(
        format!(
            "{{\"format_version\":{MANIFEST_FORMAT_VERSION},\"mac\":\"{}\",\"manifest\":",
            mac.to_hex()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&json);
    out.extend_from_slice(b"}\n");
    out
}

/// Why a stored manifest was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ManifestFault {
    /// The MAC does not match: wrong key or altered bytes.
    Auth,
    /// Authentic (or unparseable) but unusable.
    Invalid(String),
}

impl fmt::Display for ManifestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestFault::Auth => f.write_str("MAC mismatch (wrong key or altered bytes)"),
            ManifestFault::Invalid(r) => f.write_str(r),
        }
    }
}

/// Checks the MAC, then parses and validates a stored manifest for `id`.
pub(crate) fn open_manifest(
    bytes: &[u8],
    id: &BackupId,
    mac_key: &[u8; 32],
) -> Result<Manifest, ManifestFault> {
    let envelope: Envelope<'_> = serde_json::from_slice(bytes)
        .map_err(|e| ManifestFault::Invalid(format!("not a manifest envelope: {e}")))?;
    if envelope.format_version != MANIFEST_FORMAT_VERSION {
        return Err(ManifestFault::Invalid(format!(
            "envelope format version {} is not supported (this build reads {MANIFEST_FORMAT_VERSION})",
            envelope.format_version
        )));
    }
    let stored =
        blake3::Hash::from_hex(envelope.mac.as_bytes()).map_err(|_| ManifestFault::Auth)?;
    let json = envelope.manifest.get().as_bytes();
    // blake3::Hash equality is constant time.
    if blake3::keyed_hash(mac_key, json) != stored {
        return Err(ManifestFault::Auth);
    }
    let manifest: Manifest = serde_json::from_slice(json)
        .map_err(|e| ManifestFault::Invalid(format!("manifest JSON: {e}")))?;
    if &manifest.id != id {
        return Err(ManifestFault::Invalid(format!(
            "stored under {id} but describes {}",
            manifest.id
        )));
    }
    manifest.validate().map_err(ManifestFault::Invalid)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_protocol::clock::civil_from_days;

    #[test]
    fn id_from_fields_matches_the_documented_shape() {
        // 2026-11-23T14:27:01Z
        let ms = 1_795_444_021_000;
        let id = BackupId::new(ms, Kind::Full, 123).unwrap();
        assert_eq!(id.as_str(), "20261123T142701Z-full-000123");
        assert_eq!(id.kind(), Kind::Full);
        assert_eq!(BackupId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn civil_dates_are_right_at_edges() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
        let last = BackupId::new(CREATED_MS_MAX, Kind::Cold, 1).unwrap();
        assert!(last.as_str().starts_with("99991231T235959Z-cold-"));
        assert!(BackupId::new(CREATED_MS_MAX + 1, Kind::Cold, 1).is_err());
    }

    #[test]
    fn ids_sort_by_time() {
        let a = BackupId::new(1_000, Kind::Incremental, 999_999).unwrap();
        let b = BackupId::new(2_000, Kind::Archive, 1).unwrap();
        assert!(a < b);
    }

    #[test]
    fn bad_ids_are_refused() {
        for s in [
            "",
            "20261123T142701Z-full",
            "20261123T142701Z-full-12345",
            "20261123X142701Z-full-000123",
            "20261123T142701Z-bogus-000123",
            "20261123T142701Z-full-00012a",
            "20261123T142701Z-full-000123/../x",
            "../20261123T142701Z-full-000123",
        ] {
            assert!(BackupId::parse(s).is_err(), "{s}");
        }
    }

    fn meta(kind: Kind, parent: Option<BackupId>) -> BackupMeta {
        BackupMeta {
            kind,
            seq: 7,
            created_ms: 1_700_000_000_000,
            first_index: 1,
            last_index: 10,
            first_time_ms: 5,
            last_time_ms: 9,
            parent,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn parents_must_fit_the_kind() {
        let full = BackupId::new(1_600_000_000_000, Kind::Full, 1).unwrap();
        let incr = BackupId::new(1_600_000_000_000, Kind::Incremental, 2).unwrap();
        assert!(meta(Kind::Full, None).validate().is_ok());
        assert!(meta(Kind::Full, Some(full.clone())).validate().is_err());
        assert!(meta(Kind::Incremental, None).validate().is_err());
        assert!(meta(Kind::Incremental, Some(incr.clone()))
            .validate()
            .is_ok());
        assert!(meta(Kind::Differential, Some(incr)).validate().is_err());
        assert!(meta(Kind::Differential, Some(full)).validate().is_ok());
        assert!(meta(Kind::Archive, None).validate().is_ok());
        let mut reversed = meta(Kind::Full, None);
        reversed.first_index = 11;
        assert!(reversed.validate().is_err());
    }

    fn sample_manifest() -> Manifest {
        let plain = Digest::of(b"hello");
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: BackupId::new(1_700_000_000_000, Kind::Full, 5).unwrap(),
            kind: Kind::Full,
            first_index: 1,
            last_index: 5,
            first_time_ms: 1,
            last_time_ms: 2,
            parent: None,
            layout: Layout::Mirror,
            chunk_bytes: 1024,
            content_bytes: 5,
            content_blake3: plain,
            chunks: vec![ChunkInfo {
                plain_bytes: 5,
                plain_blake3: plain,
                sealed_bytes: 40,
                sealed_blake3: Digest::of(b"x"),
                shard_blake3: vec![],
            }],
            created_ms: 1_700_000_000_000,
            labels: BTreeMap::from([("node".to_owned(), "n1".to_owned())]),
        }
    }

    #[test]
    fn manifest_round_trips_and_detects_tampering_and_wrong_keys() {
        let key = Key::from_bytes([7; 32]);
        let m = sample_manifest();
        let sealed = seal_manifest(&m, &mac_key(&key));
        assert_eq!(open_manifest(&sealed, &m.id, &mac_key(&key)).unwrap(), m);

        let wrong = Key::from_bytes([8; 32]);
        assert_eq!(
            open_manifest(&sealed, &m.id, &mac_key(&wrong)),
            Err(ManifestFault::Auth)
        );

        let text = String::from_utf8(sealed).unwrap();
        let tampered = text.replace("\"last_index\":5", "\"last_index\":6");
        assert_ne!(tampered, text);
        assert_eq!(
            open_manifest(tampered.as_bytes(), &m.id, &mac_key(&key)),
            Err(ManifestFault::Auth)
        );

        let other = BackupId::new(1_700_000_000_000, Kind::Full, 6).unwrap();
        assert!(matches!(
            open_manifest(text.as_bytes(), &other, &mac_key(&key)),
            Err(ManifestFault::Invalid(_))
        ));
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let mut m = sample_manifest();
        m.content_bytes = 6;
        assert!(m.validate().is_err());
        let mut m = sample_manifest();
        m.format_version = 2;
        assert!(m.validate().unwrap_err().contains("newer keel"));
    }
}
