//! Turns one chunk of content into sealed bytes and back: BLAKE3 of the
//! plain bytes, zstd, then ChaCha20-Poly1305, then BLAKE3 of the sealed
//! bytes.
//!
//! The nonce is never stored and never drawn at random: it is a keyed
//! BLAKE3 of (backup id, chunk number, BLAKE3 of the content). Ids are
//! unique (the repository refuses to write under an id that already has
//! objects), so no nonce repeats; and should an id ever be reused anyway
//! (two repositories sharing a key, a caller bug), different content still
//! gets a different nonce, and the same content the same ciphertext, which
//! reveals only that it is the same. The associated data binds the id and
//! chunk number, so a chunk moved to another backup or position fails to
//! open instead of restoring the wrong bytes.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;

use crate::ids::{BackupId, ChunkInfo, Digest};
use crate::BackupError;

/// Content bytes per chunk at most. A chunk is the unit held in memory (a
/// few copies of it: plain, compressed, sealed, shards), so this bounds a
/// backup's memory whatever its size; 4 MiB amortizes per-object costs on
/// S3 (one request per shard) while staying small next to a node's memory.
pub const CHUNK_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Content bytes per chunk at least (a smaller chunk size only multiplies
/// objects and manifest entries).
pub const CHUNK_BYTES_MIN: usize = 4 * 1024;

/// Largest sealed chunk: zstd's worst-case expansion of incompressible
/// input (about 1/256 plus a small constant) and the 16-byte AEAD tag fit
/// well inside 1/128 plus 4 KiB.
pub const SEALED_BYTES_MAX: usize = CHUNK_BYTES_MAX + CHUNK_BYTES_MAX / 128 + 4096;

/// Largest key file read: a key is 32 raw bytes or 64 hex characters plus
/// a newline; anything much larger is the wrong file.
pub const KEY_FILE_BYTES_MAX: u64 = 1024;

/// zstd level: 3 is zstd's default, compressing a 4 MiB chunk in a few
/// milliseconds; higher levels cost far more CPU for a few percent.
const ZSTD_LEVEL: i32 = 3;

/// Key-derivation contexts (`blake3::derive_key`): one key per purpose.
const AEAD_KEY_CONTEXT: &str = "keel-backup 2026-01 chunk aead key v1";
const NONCE_KEY_CONTEXT: &str = "keel-backup 2026-01 chunk nonce v1";

/// Tag bound into the associated data, so sealed chunks of a future format
/// cannot be confused with these.
const AAD_DOMAIN: &[u8] = b"keel-backup chunk v1";

/// The repository key: 32 secret bytes from which the AEAD, nonce and
/// manifest MAC keys are derived.
#[derive(Clone)]
pub struct Key {
    material: [u8; 32],
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material, not even in debug logs.
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from raw bytes (tests, or a caller with its own key store).
    pub fn from_bytes(material: [u8; 32]) -> Self {
        Self { material }
    }

    /// Loads a key file holding exactly 32 raw bytes, or 64 hex characters
    /// (surrounding whitespace allowed).
    pub fn from_file(path: &Path) -> Result<Self, BackupError> {
        let file_err = |source| BackupError::KeyFile {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(file_err)?.len();
        let origin = path.display().to_string();
        if len > KEY_FILE_BYTES_MAX {
            return Err(BackupError::KeyFormat {
                origin,
                reason: format!("{len} bytes long"),
            });
        }
        let bytes = std::fs::read(path).map_err(file_err)?;
        if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(Self::from_bytes(raw));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| BackupError::KeyFormat {
            origin: origin.clone(),
            reason: format!("{} bytes of binary, not 32", bytes.len()),
        })?;
        Self::from_hex(text, origin)
    }

    /// Loads a key from environment variable `var`, as 64 hex characters.
    pub fn from_env(var: &str) -> Result<Self, BackupError> {
        let origin = format!("environment variable {var}");
        let text = std::env::var(var).map_err(|e| BackupError::KeyFormat {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        Self::from_hex(&text, origin)
    }

    fn from_hex(text: &str, origin: String) -> Result<Self, BackupError> {
        let text = text.trim();
        let material = keel_protocol::hex::decode(text)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| BackupError::KeyFormat {
                origin,
                reason: format!(
                    "{} characters that are not 64 hex digits",
                    text.chars().count()
                ),
            })?;
        Ok(Self::from_bytes(material))
    }

    /// The root key material (only for deriving purpose keys).
    pub(crate) fn material(&self) -> &[u8; 32] {
        &self.material
    }
}

/// The keys a [`Key`] expands to for chunks, kept derived once per
/// repository rather than per chunk.
#[derive(Clone)]
pub(crate) struct ChunkKeys {
    aead: ChaCha20Poly1305,
    nonce_key: [u8; 32],
}

impl fmt::Debug for ChunkKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChunkKeys(..)")
    }
}

impl ChunkKeys {
    pub(crate) fn new(key: &Key) -> Self {
        let aead_key = blake3::derive_key(AEAD_KEY_CONTEXT, key.material());
        Self {
            aead: ChaCha20Poly1305::new(&aead_key.into()),
            nonce_key: blake3::derive_key(NONCE_KEY_CONTEXT, key.material()),
        }
    }

    fn nonce(&self, id: &BackupId, chunk: u64, plain: &Digest) -> [u8; 12] {
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(&aad(id, chunk));
        h.update(&plain.0);
        let mut nonce = [0u8; 12];
        h.finalize_xof().fill(&mut nonce);
        nonce
    }
}

/// Associated data: domain tag, then the length-prefixed id, then the
/// chunk number, so no two (id, chunk) pairs give the same bytes.
fn aad(id: &BackupId, chunk: u64) -> Vec<u8> {
    let id = id.as_str().as_bytes();
    let mut out = Vec::with_capacity(AAD_DOMAIN.len() + 1 + id.len() + 8);
    out.extend_from_slice(AAD_DOMAIN);
    // Ids are at most ID_BYTES_MAX (64) bytes, so the length fits a byte.
    out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(id);
    out.extend_from_slice(&chunk.to_le_bytes());
    out
}

/// Compresses and encrypts one chunk; returns the sealed bytes and the
/// chunk's manifest entry (without shard checksums, which the layout adds).
pub(crate) fn seal_chunk(
    keys: &ChunkKeys,
    id: &BackupId,
    chunk: u64,
    plain: &[u8],
) -> Result<(Vec<u8>, ChunkInfo), BackupError> {
    let corrupt = |reason: String| BackupError::ChunkCorrupt {
        id: id.to_string(),
        chunk,
        reason,
    };
    if plain.len() > CHUNK_BYTES_MAX {
        return Err(BackupError::TooLarge {
            what: "chunk content bytes",
            got: plain.len() as u64,
            max: CHUNK_BYTES_MAX as u64,
        });
    }
    let plain_blake3 = Digest::of(plain);
    let compressed = zstd::bulk::compress(plain, ZSTD_LEVEL)
        .map_err(|e| corrupt(format!("zstd compression failed: {e}")))?;
    let nonce = keys.nonce(id, chunk, &plain_blake3);
    let aad = aad(id, chunk);
    let sealed = keys
        .aead
        .encrypt(
            &nonce.into(),
            Payload {
                msg: &compressed,
                aad: &aad,
            },
        )
        .map_err(|_| corrupt("encryption failed".to_owned()))?;
    if sealed.len() > SEALED_BYTES_MAX {
        return Err(BackupError::TooLarge {
            what: "sealed chunk bytes",
            got: sealed.len() as u64,
            max: SEALED_BYTES_MAX as u64,
        });
    }
    let info = ChunkInfo {
        plain_bytes: plain.len() as u64,
        plain_blake3,
        sealed_bytes: sealed.len() as u64,
        sealed_blake3: Digest::of(&sealed),
        shard_blake3: Vec::new(),
    };
    Ok((sealed, info))
}

/// Checks, decrypts and decompresses one sealed chunk, returning its
/// content only when every check against `info` passed.
pub(crate) fn open_chunk(
    keys: &ChunkKeys,
    id: &BackupId,
    chunk: u64,
    info: &ChunkInfo,
    sealed: &[u8],
) -> Result<Vec<u8>, BackupError> {
    let corrupt = |reason: String| BackupError::ChunkCorrupt {
        id: id.to_string(),
        chunk,
        reason,
    };
    if sealed.len() as u64 != info.sealed_bytes || Digest::of(sealed) != info.sealed_blake3 {
        return Err(corrupt(
            "sealed bytes do not match their checksum".to_owned(),
        ));
    }
    let nonce = keys.nonce(id, chunk, &info.plain_blake3);
    let aad = aad(id, chunk);
    let compressed = keys
        .aead
        .decrypt(
            &nonce.into(),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map_err(|_| {
            corrupt("decryption failed: wrong key, or the chunk belongs elsewhere".to_owned())
        })?;
    // `plain_bytes` was validated against CHUNK_BYTES_MAX with the
    // manifest, so a hostile frame cannot make zstd allocate more.
    let capacity = usize::try_from(info.plain_bytes).unwrap_or(CHUNK_BYTES_MAX);
    let plain = zstd::bulk::decompress(&compressed, capacity)
        .map_err(|e| corrupt(format!("zstd decompression failed: {e}")))?;
    if plain.len() as u64 != info.plain_bytes || Digest::of(&plain) != info.plain_blake3 {
        return Err(corrupt("content does not match its checksum".to_owned()));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Kind;

    fn id(seq: u64) -> BackupId {
        BackupId::new(1_700_000_000_000, Kind::Full, seq).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips() {
        let keys = ChunkKeys::new(&Key::from_bytes([1; 32]));
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (sealed, info) = seal_chunk(&keys, &id(1), 3, &plain).unwrap();
        assert!(sealed.len() < plain.len(), "repetitive content compresses");
        assert_eq!(open_chunk(&keys, &id(1), 3, &info, &sealed).unwrap(), plain);
    }

    #[test]
    fn moved_chunks_and_wrong_keys_fail_to_open() {
        let keys = ChunkKeys::new(&Key::from_bytes([1; 32]));
        let (sealed, info) = seal_chunk(&keys, &id(1), 0, b"some content").unwrap();
        assert!(open_chunk(&keys, &id(1), 1, &info, &sealed).is_err());
        assert!(open_chunk(&keys, &id(2), 0, &info, &sealed).is_err());
        let other = ChunkKeys::new(&Key::from_bytes([2; 32]));
        assert!(open_chunk(&other, &id(1), 0, &info, &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(open_chunk(&keys, &id(1), 0, &info, &flipped).is_err());
    }

    #[test]
    fn nonces_differ_per_chunk_backup_and_content() {
        let keys = ChunkKeys::new(&Key::from_bytes([1; 32]));
        let content = Digest::of(b"a");
        let a = keys.nonce(&id(1), 0, &content);
        assert_ne!(a, keys.nonce(&id(1), 1, &content));
        assert_ne!(a, keys.nonce(&id(2), 0, &content));
        assert_ne!(a, keys.nonce(&id(1), 0, &Digest::of(b"b")));
        assert_eq!(a, keys.nonce(&id(1), 0, &content));
    }

    #[test]
    fn incompressible_full_chunk_fits_the_sealed_limit() {
        let keys = ChunkKeys::new(&Key::from_bytes([1; 32]));
        let mut plain = vec![0u8; CHUNK_BYTES_MAX];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in plain.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let (sealed, _) = seal_chunk(&keys, &id(1), 0, &plain).unwrap();
        assert!(sealed.len() > CHUNK_BYTES_MAX);
        assert!(sealed.len() <= SEALED_BYTES_MAX);
    }

    #[test]
    fn key_files_accept_raw_and_hex_and_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [9u8; 32]).unwrap();
        assert_eq!(Key::from_file(&raw).unwrap().material(), &[9u8; 32]);

        let hex = dir.path().join("hex");
        std::fs::write(&hex, format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(Key::from_file(&hex).unwrap().material(), &[0xab; 32]);

        let short = dir.path().join("short");
        std::fs::write(&short, "abcd").unwrap();
        let err = Key::from_file(&short).unwrap_err().to_string();
        assert!(err.contains("64 hex"), "{err}");

        let env = Key::from_env("KEEL_BACKUP_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert!(
            env.to_string()
                .contains("KEEL_BACKUP_TEST_SURELY_UNSET_VAR"),
            "{env}"
        );

        let missing = Key::from_file(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, BackupError::KeyFile { .. }));
        assert!(format!("{:?}", Key::from_bytes([1; 32])) == "Key(..)");
    }
}
