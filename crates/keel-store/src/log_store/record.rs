//! The log's record format: each entry stored as a versioned record with
//! a CRC32C over its index and payload, checked on every read; and the
//! frames a backup stores those records in, unchanged, so a backup keeps
//! the log's own checksums.

use std::path::Path;

use openraft::Entry;

use crate::{StoreError, TypeConfig};

/// Version of the log record layout. Bump on any incompatible change to the
/// record or to the entry's encoding; records of another version are refused.
pub const LOG_RECORD_FORMAT_VERSION: u8 = 1;

/// Version byte plus CRC-32C.
pub(super) const RECORD_HEADER_BYTES: usize = 5;

/// The record's checksum: CRC-32C of the index (big endian) and payload.
fn record_crc(index: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&index.to_be_bytes()), payload)
}

/// An entry as a record: version, checksum, postcard payload.
pub(super) fn encode_record(entry: &Entry<TypeConfig>) -> Result<Vec<u8>, postcard::Error> {
    let header = vec![LOG_RECORD_FORMAT_VERSION, 0, 0, 0, 0];
    let mut out = postcard::to_extend(entry, header)?;
    let crc = record_crc(entry.log_id.index, &out[RECORD_HEADER_BYTES..]);
    out[1..RECORD_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Record `bytes` stored under `index` as an entry, verified; damage is
/// reported against `path`.
pub(super) fn decode_record(
    path: &Path,
    index: u64,
    bytes: &[u8],
) -> Result<Entry<TypeConfig>, StoreError> {
    let corrupt = |detail: String| StoreError::corrupt(path, format!("log index {index}"), detail);
    let (Some(&version), Some(crc), Some(payload)) = (
        bytes.first(),
        bytes.get(1..RECORD_HEADER_BYTES),
        bytes.get(RECORD_HEADER_BYTES..),
    ) else {
        return Err(corrupt(format!(
            "record of {} bytes is shorter than its header: torn write",
            bytes.len()
        )));
    };
    if version != LOG_RECORD_FORMAT_VERSION {
        return Err(corrupt(format!(
            "record format version {version}, this build reads {LOG_RECORD_FORMAT_VERSION}"
        )));
    }
    let stored = crc
        .try_into()
        .map(u32::from_le_bytes)
        .map_err(|_| corrupt("short checksum".into()))?;
    let computed = record_crc(index, payload);
    if stored != computed {
        return Err(corrupt(format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
        )));
    }
    let e: Entry<TypeConfig> =
        postcard::from_bytes(payload).map_err(|e| corrupt(format!("does not decode: {e}")))?;
    if e.log_id.index != index {
        return Err(corrupt(format!(
            "record holds log index {}",
            e.log_id.index
        )));
    }
    Ok(e)
}

/// Encodes an entry as a log record: format version, CRC-32C over the index
/// and the payload, postcard payload.
pub fn encode_log_record(entry: &Entry<TypeConfig>) -> Result<Vec<u8>, StoreError> {
    encode_record(entry).map_err(|e| {
        StoreError::other(
            Path::new("log record"),
            format!("encoding {}: {e}", entry.log_id),
        )
    })
}

/// Largest record a log frame may announce: well above any entry (a batch
/// is bounded far below it), so a larger length means a damaged stream and
/// cannot make a reader allocate more.
pub const LOG_FRAME_RECORD_BYTES_MAX: u32 = 64 << 20;

/// Appends one log record to a byte stream of frames (a backup, an
/// export): `[index u64 BE][length u32 BE][record]`.
pub fn push_log_frame(out: &mut Vec<u8>, index: u64, record: &[u8]) {
    out.extend_from_slice(&index.to_be_bytes());
    // A record is far below 4 GiB (see LOG_FRAME_RECORD_BYTES_MAX).
    out.extend_from_slice(&(record.len() as u32).to_be_bytes());
    out.extend_from_slice(record);
}

/// Reads the next frame written by [`push_log_frame`]: `None` at a clean
/// end, an `InvalidData` error on a torn frame or an impossible length.
pub fn read_log_frame(r: &mut impl std::io::Read) -> std::io::Result<Option<(u64, Vec<u8>)>> {
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..])? {
            0 if got == 0 => return Ok(None),
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "log frame header cut short",
                ))
            }
            n => got += n,
        }
    }
    let mut index = [0u8; 8];
    index.copy_from_slice(&head[..8]);
    let mut len = [0u8; 4];
    len.copy_from_slice(&head[8..]);
    let len = u32::from_be_bytes(len);
    if len > LOG_FRAME_RECORD_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("log frame announces {len} bytes, more than {LOG_FRAME_RECORD_BYTES_MAX}"),
        ));
    }
    let mut record = vec![0u8; len as usize];
    r.read_exact(&mut record).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("log frame cut short: {e}"),
        )
    })?;
    Ok(Some((u64::from_be_bytes(index), record)))
}

/// Decodes and verifies a log record that should hold log index `index`;
/// `source` names where it came from in the error (a file, a backup).
pub fn decode_log_record(
    source: &Path,
    index: u64,
    bytes: &[u8],
) -> Result<Entry<TypeConfig>, StoreError> {
    decode_record(source, index, bytes)
}
