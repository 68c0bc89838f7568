//! How a sealed chunk is spread over the targets: whole copies (mirror) or
//! Reed-Solomon shards (k data + m parity, shard i on target i), and the
//! self-describing header every stored piece carries.
//!
//! A mirror copy is stored as shard 0 of a 1+0 code, so both layouts share
//! one piece format and one check.

use serde::{Deserialize, Serialize};

use crate::ids::{BackupId, ChunkInfo, Digest};
use crate::BackupError;

/// Most targets (and so shards per chunk). Each shard is one object per
/// chunk; past a few dozen the per-object cost dominates and no deployment
/// has that many independent failure domains.
pub const TARGETS_MAX: usize = 32;

/// Version of the piece header. Readers refuse other versions.
pub const PIECE_FORMAT_VERSION: u16 = 1;

/// Magic at the start of every piece object, to tell a piece from any
/// other file that ended up in a target.
const PIECE_MAGIC: &[u8; 4] = b"KBPC";

/// Fixed header bytes before the id: magic, version, k, m, shard, id length,
/// chunk, sealed length, payload length, payload BLAKE3.
const HEADER_FIXED_BYTES: usize = 4 + 2 + 1 + 1 + 1 + 1 + 8 + 8 + 8 + 32;

/// How sealed chunks are stored across the repository's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Layout {
    /// Every target holds every whole sealed chunk: survives the loss of
    /// all targets but one, at n times the space.
    Mirror,
    /// Each sealed chunk becomes `data` shards plus `parity` Reed-Solomon
    /// shards, shard i on target i: survives the loss of any `parity`
    /// targets at (data + parity) / data times the space. Needs exactly
    /// data + parity targets.
    Erasure {
        /// Data shards (k), at least 1.
        data: usize,
        /// Parity shards (m), at least 1.
        parity: usize,
    },
}

/// Why a layout's text was refused.
#[derive(Debug, thiserror::Error)]
pub enum LayoutParseError {
    /// Neither `mirror` nor `K+M`.
    #[error("layout {0:?}: expected `mirror` or `K+M` like 4+2")]
    Form(String),
    /// K or M is not a number.
    #[error("layout {text:?}: bad {which}")]
    Number {
        /// The whole text.
        text: String,
        /// `K` or `M`.
        which: &'static str,
        /// Why the number was refused.
        #[source]
        source: std::num::ParseIntError,
    },
    /// The numbers make no code ([`Layout::validate`]).
    #[error(transparent)]
    Invalid(#[from] BackupError),
}

impl std::str::FromStr for Layout {
    type Err = LayoutParseError;

    /// Parses `mirror` or `K+M` (K data and M parity shards, like `4+2`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "mirror" {
            return Ok(Layout::Mirror);
        }
        let Some((k, m)) = s.split_once('+') else {
            return Err(LayoutParseError::Form(s.to_string()));
        };
        let number = |part: &str, which| {
            part.trim()
                .parse::<usize>()
                .map_err(|source| LayoutParseError::Number {
                    text: s.to_string(),
                    which,
                    source,
                })
        };
        let l = Layout::Erasure {
            data: number(k, "K")?,
            parity: number(m, "M")?,
        };
        l.validate()?;
        Ok(l)
    }
}

impl Layout {
    /// Checks the layout's own numbers.
    pub fn validate(&self) -> Result<(), BackupError> {
        match *self {
            Layout::Mirror => Ok(()),
            Layout::Erasure { data, parity } => {
                if data == 0 || parity == 0 || data + parity > TARGETS_MAX {
                    return Err(BackupError::Config {
                        reason: format!(
                            "erasure layout {data}+{parity} is invalid: need at least 1 data and 1 parity shard and at most {TARGETS_MAX} shards in all"
                        ),
                    });
                }
                Ok(())
            }
        }
    }

    /// Checks this layout can run on `targets` targets.
    pub fn validate_targets(&self, targets: usize) -> Result<(), BackupError> {
        self.validate()?;
        if targets == 0 || targets > TARGETS_MAX {
            return Err(BackupError::Config {
                reason: format!("{targets} targets given; use 1 to {TARGETS_MAX}"),
            });
        }
        if let Layout::Erasure { data, parity } = *self {
            if targets != data + parity {
                return Err(BackupError::Config {
                    reason: format!(
                        "erasure layout {data}+{parity} stores shard i on target i and so needs exactly {} targets, got {targets}; add targets or choose a smaller code",
                        data + parity
                    ),
                });
            }
        }
        Ok(())
    }

    /// Good pieces needed to rebuild a chunk.
    pub fn pieces_needed(&self) -> usize {
        match *self {
            Layout::Mirror => 1,
            Layout::Erasure { data, .. } => data,
        }
    }

    /// Shard checksums a manifest chunk entry carries (none for a mirror,
    /// whose one piece is checked against `sealed_blake3`).
    pub(crate) fn shard_count_in_manifest(&self) -> usize {
        match *self {
            Layout::Mirror => 0,
            Layout::Erasure { data, parity } => data + parity,
        }
    }

    /// (k, m) of the piece code: a mirror copy is shard 0 of a 1+0 code.
    fn code(&self) -> (usize, usize) {
        match *self {
            Layout::Mirror => (1, 0),
            Layout::Erasure { data, parity } => (data, parity),
        }
    }

    /// Which shard target `target` holds.
    pub(crate) fn shard_of_target(&self, target: usize) -> usize {
        match self {
            Layout::Mirror => 0,
            Layout::Erasure { .. } => target,
        }
    }
}

/// Bytes per erasure shard for a sealed chunk: an even number (the
/// Reed-Solomon library works on 16-bit symbols) of at least ceil(len / k).
fn shard_bytes(sealed_bytes: usize, data: usize) -> usize {
    let per = sealed_bytes.div_ceil(data).max(2);
    per + per % 2
}

/// The `parity` Reed-Solomon recovery shards of `data` equal-sized data
/// shards (each an even number of bytes): the encode step of every
/// erasure-coded write, public so its throughput can be measured alone.
pub fn parity_shards(
    data: usize,
    parity: usize,
    shards: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, BackupError> {
    reed_solomon_simd::encode(data, parity, shards).map_err(|e| BackupError::Config {
        reason: format!("erasure code {data}+{parity} unsupported: {e}"),
    })
}

/// Splits a sealed chunk into the payloads of its pieces, in shard order,
/// and fills in the chunk's shard checksums.
pub(crate) fn split(
    layout: &Layout,
    sealed: &[u8],
    info: &mut ChunkInfo,
) -> Result<Vec<Vec<u8>>, BackupError> {
    let (data, parity) = match *layout {
        Layout::Mirror => return Ok(vec![sealed.to_vec()]),
        Layout::Erasure { data, parity } => (data, parity),
    };
    let size = shard_bytes(sealed.len(), data);
    let mut shards: Vec<Vec<u8>> = (0..data)
        .map(|i| {
            let start = (i * size).min(sealed.len());
            let end = ((i + 1) * size).min(sealed.len());
            let mut shard = sealed[start..end].to_vec();
            shard.resize(size, 0);
            shard
        })
        .collect();
    shards.extend(parity_shards(data, parity, &shards)?);
    info.shard_blake3 = shards.iter().map(|s| Digest::of(s)).collect();
    Ok(shards)
}

/// Rebuilds a sealed chunk from good piece payloads (`pieces[i]` is shard
/// i or `None`), or says how many were missing.
pub(crate) fn join(
    layout: &Layout,
    id: &BackupId,
    chunk: u64,
    info: &ChunkInfo,
    pieces: &[Option<Vec<u8>>],
) -> Result<Vec<u8>, BackupError> {
    let need = layout.pieces_needed();
    let have = pieces.iter().filter(|p| p.is_some()).count();
    let too_few = || BackupError::TooFewShards {
        id: id.to_string(),
        chunk,
        have,
        need,
    };
    let (data, parity) = match *layout {
        Layout::Mirror => {
            return pieces.iter().flatten().next().cloned().ok_or_else(too_few);
        }
        Layout::Erasure { data, parity } => (data, parity),
    };
    if have < need {
        return Err(too_few());
    }
    let originals = pieces[..data]
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_deref().map(|p| (i, p)));
    let recovery = pieces[data..]
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_deref().map(|p| (i, p)));
    let mut restored =
        reed_solomon_simd::decode(data, parity, originals, recovery).map_err(|e| {
            BackupError::ChunkCorrupt {
                id: id.to_string(),
                chunk,
                reason: format!("erasure decoding failed: {e}"),
            }
        })?;
    let sealed_len = usize::try_from(info.sealed_bytes).unwrap_or(usize::MAX);
    let mut sealed = Vec::with_capacity(sealed_len);
    for (i, piece) in pieces[..data].iter().enumerate() {
        match piece {
            Some(p) => sealed.extend_from_slice(p),
            None => sealed.extend_from_slice(&restored.remove(&i).ok_or_else(too_few)?),
        }
    }
    sealed.truncate(sealed_len);
    Ok(sealed)
}

/// What a piece must say about itself to be accepted.
#[derive(Debug, Clone)]
pub(crate) struct PieceSpec<'a> {
    pub id: &'a BackupId,
    pub layout: Layout,
    pub chunk: u64,
    pub shard: usize,
    pub sealed_bytes: u64,
    /// The payload checksum from the manifest.
    pub payload_blake3: Digest,
}

/// Frames a piece payload with its header.
pub(crate) fn encode_piece(spec: &PieceSpec<'_>, payload: &[u8]) -> Vec<u8> {
    let (k, m) = spec.layout.code();
    let id = spec.id.as_str().as_bytes();
    let mut out = Vec::with_capacity(HEADER_FIXED_BYTES + id.len() + payload.len());
    out.extend_from_slice(PIECE_MAGIC);
    out.extend_from_slice(&PIECE_FORMAT_VERSION.to_le_bytes());
    // k, m and shard are at most TARGETS_MAX (32) and the id at most
    // ID_BYTES_MAX (64) bytes: all fit a byte (checked by Layout::validate
    // and BackupId::parse).
    for small in [k, m, spec.shard, id.len()] {
        out.push(u8::try_from(small).unwrap_or(u8::MAX));
    }
    out.extend_from_slice(&spec.chunk.to_le_bytes());
    out.extend_from_slice(&spec.sealed_bytes.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(payload);
    out
}

/// Checks a stored piece against what the manifest expects and returns its
/// payload, or the reason it is corrupt.
pub(crate) fn decode_piece(spec: &PieceSpec<'_>, bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.len() < HEADER_FIXED_BYTES {
        return Err(format!(
            "truncated: {} bytes, shorter than a header",
            bytes.len()
        ));
    }
    let (fixed, rest) = bytes.split_at(HEADER_FIXED_BYTES);
    if &fixed[0..4] != PIECE_MAGIC {
        return Err("not a keel-backup piece (bad magic)".to_owned());
    }
    let version = u16::from_le_bytes([fixed[4], fixed[5]]);
    if version != PIECE_FORMAT_VERSION {
        return Err(format!("piece format {version} is not supported"));
    }
    let (k, m, shard, id_len) = (
        usize::from(fixed[6]),
        usize::from(fixed[7]),
        usize::from(fixed[8]),
        usize::from(fixed[9]),
    );
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&fixed[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (chunk, sealed_bytes, payload_bytes) = (u64_at(10), u64_at(18), u64_at(26));
    let mut stored_hash = [0u8; 32];
    stored_hash.copy_from_slice(&fixed[34..66]);
    if rest.len() < id_len || &rest[..id_len] != spec.id.as_str().as_bytes() {
        return Err("header names another backup".to_owned());
    }
    if (k, m) != spec.layout.code() {
        return Err(format!("header says a {k}+{m} code, manifest another"));
    }
    if shard != spec.shard {
        return Err(format!(
            "header names shard {shard}, expected {} (were the targets given in a different order than at write time?)",
            spec.shard
        ));
    }
    if chunk != spec.chunk || sealed_bytes != spec.sealed_bytes {
        return Err("header names another chunk".to_owned());
    }
    let payload = &rest[id_len..];
    if payload.len() as u64 != payload_bytes {
        return Err(format!(
            "truncated or extended: payload is {} bytes, header says {payload_bytes}",
            payload.len()
        ));
    }
    let actual = Digest::of(payload);
    if actual.0 != stored_hash || actual != spec.payload_blake3 {
        return Err("payload does not match its checksum (bit rot?)".to_owned());
    }
    Ok(payload.to_vec())
}

/// The manifest checksum of the piece stored as `shard` of `info`.
pub(crate) fn expected_payload_hash(layout: &Layout, info: &ChunkInfo, shard: usize) -> Digest {
    match layout {
        Layout::Mirror => info.sealed_blake3,
        // Invariant: Manifest::validate checked shard_blake3 has k+m
        // entries and shard < k+m; a wrong index is treated as corrupt.
        Layout::Erasure { .. } => info
            .shard_blake3
            .get(shard)
            .copied()
            .unwrap_or(Digest([0; 32])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_is_parsed_from_its_text() {
        assert_eq!("mirror".parse::<Layout>().unwrap(), Layout::Mirror);
        assert_eq!(
            " 4 + 2".trim_start().parse::<Layout>().unwrap(),
            Layout::Erasure { data: 4, parity: 2 }
        );
        for bad in ["raid5", "x+2", "4+y", "0+2", "4+0", "30+3"] {
            assert!(bad.parse::<Layout>().is_err(), "{bad}");
        }
        assert_eq!(
            "x+2".parse::<Layout>().unwrap_err().to_string(),
            "layout \"x+2\": bad K"
        );
    }
    use crate::manifest::Kind;

    fn info_for(sealed: &[u8]) -> ChunkInfo {
        ChunkInfo {
            plain_bytes: 1,
            plain_blake3: Digest([0; 32]),
            sealed_bytes: sealed.len() as u64,
            sealed_blake3: Digest::of(sealed),
            shard_blake3: vec![],
        }
    }

    #[test]
    fn erasure_rebuilds_from_any_k_of_k_plus_m() {
        let id = BackupId::new(0, Kind::Full, 1).unwrap();
        let layout = Layout::Erasure { data: 4, parity: 2 };
        for len in [17usize, 1000, 1001, 4096] {
            let sealed: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let mut info = info_for(&sealed);
            let shards = split(&layout, &sealed, &mut info).unwrap();
            assert_eq!(shards.len(), 6);
            for a in 0..6 {
                for b in a + 1..6 {
                    let pieces: Vec<_> = shards
                        .iter()
                        .enumerate()
                        .map(|(i, s)| (i != a && i != b).then(|| s.clone()))
                        .collect();
                    assert_eq!(join(&layout, &id, 0, &info, &pieces).unwrap(), sealed);
                }
            }
            let three: Vec<_> = shards
                .iter()
                .enumerate()
                .map(|(i, s)| (i < 3).then(|| s.clone()))
                .collect();
            assert!(matches!(
                join(&layout, &id, 0, &info, &three),
                Err(BackupError::TooFewShards {
                    have: 3,
                    need: 4,
                    ..
                })
            ));
        }
    }

    #[test]
    fn pieces_check_their_own_header_and_payload() {
        let id = BackupId::new(0, Kind::Full, 1).unwrap();
        let payload = b"payload bytes".to_vec();
        let spec = PieceSpec {
            id: &id,
            layout: Layout::Erasure { data: 2, parity: 1 },
            chunk: 5,
            shard: 1,
            sealed_bytes: 26,
            payload_blake3: Digest::of(&payload),
        };
        let bytes = encode_piece(&spec, &payload);
        assert_eq!(decode_piece(&spec, &bytes).unwrap(), payload);

        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x10;
        assert!(decode_piece(&spec, &flipped)
            .unwrap_err()
            .contains("checksum"));
        assert!(decode_piece(&spec, &bytes[..bytes.len() - 3])
            .unwrap_err()
            .contains("truncated"));
        assert!(decode_piece(&spec, &bytes[..10])
            .unwrap_err()
            .contains("truncated"));
        let other_shard = PieceSpec {
            shard: 0,
            ..spec.clone()
        };
        assert!(decode_piece(&other_shard, &bytes)
            .unwrap_err()
            .contains("order"));
    }

    #[test]
    fn erasure_needs_exactly_k_plus_m_targets() {
        let layout = Layout::Erasure { data: 2, parity: 1 };
        assert!(layout.validate_targets(3).is_ok());
        let err = layout.validate_targets(2).unwrap_err().to_string();
        assert!(err.contains("exactly 3 targets"), "{err}");
        assert!(Layout::Erasure { data: 2, parity: 0 }.validate().is_err());
        assert!(Layout::Mirror.validate_targets(0).is_err());
    }
}
