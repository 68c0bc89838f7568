//! The snapshot file format, versioned and checksummed, written and read as
//! a stream (memory stays bounded by one row):
//!
//! ```text
//! "KEELSNAP" | u32 LE version | u32 LE meta length | postcard(SnapshotHeader)
//! then per row: 0x01 | u8 table | u32 LE key length | key | u32 LE value length | value
//! then 0x00 | BLAKE3 (32 bytes) of everything before it
//! ```

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use keel_domain::Table;
use openraft::{BasicNode, LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::{NodeId, StoreError};

const MAGIC: &[u8; 8] = b"KEELSNAP";
/// Version of the snapshot format.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// Largest key or value in a snapshot: far above any record Keel writes,
/// so a larger length means a corrupt file, not a big row.
const FIELD_BYTES_MAX: u32 = 64 << 20;

/// What a snapshot is a snapshot of.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Unique id of this snapshot.
    pub snapshot_id: String,
    /// Last log id included.
    pub last_log_id: Option<LogId<NodeId>>,
    /// Membership as of that log id.
    pub membership: StoredMembership<NodeId, BasicNode>,
}

/// Writes a snapshot, hashing as it goes.
pub struct SnapshotWriter {
    out: BufWriter<File>,
    hash: blake3::Hasher,
}

impl SnapshotWriter {
    /// Starts a snapshot file with its header.
    pub fn create(file: File, header: &SnapshotHeader) -> std::io::Result<Self> {
        let mut w = Self {
            out: BufWriter::new(file),
            hash: blake3::Hasher::new(),
        };
        let meta = postcard::to_stdvec(header).map_err(std::io::Error::other)?;
        w.put(MAGIC)?;
        w.put(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())?;
        w.put(&(meta.len() as u32).to_le_bytes())?;
        w.put(&meta)?;
        Ok(w)
    }
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.update(b);
        self.out.write_all(b)
    }
    /// Appends one row.
    pub fn row(&mut self, table: Table, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        self.put(&[1, table as u8])?;
        self.put(&(key.len() as u32).to_le_bytes())?;
        self.put(key)?;
        self.put(&(value.len() as u32).to_le_bytes())?;
        self.put(value)
    }
    /// Writes the trailer and fsyncs the file.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.put(&[0])?;
        let h = *self.hash.finalize().as_bytes();
        self.out.write_all(&h)?;
        let f = self.out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        file: path.to_path_buf(),
        location: "snapshot".into(),
        detail: detail.into(),
    }
}

struct HashingReader<R> {
    inner: R,
    hash: blake3::Hasher,
}
impl<R: Read> HashingReader<R> {
    fn exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(buf)?;
        self.hash.update(buf);
        Ok(())
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// Reads a snapshot file: its header, then calls `row` for every row, then
/// checks the trailer hash. With `row` doing nothing it is a full check.
pub fn read(
    path: &Path,
    mut row: impl FnMut(Table, &[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<SnapshotHeader, StoreError> {
    let f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut r = HashingReader {
        inner: BufReader::new(f),
        hash: blake3::Hasher::new(),
    };
    let io = |e: std::io::Error| corrupt(path, format!("truncated or unreadable: {e}"));
    let mut magic = [0u8; 8];
    r.exact(&mut magic).map_err(io)?;
    if &magic != MAGIC {
        return Err(corrupt(path, "not a Keel snapshot (bad magic)"));
    }
    let version = r.u32().map_err(io)?;
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(corrupt(
            path,
            format!("unknown snapshot format version {version}"),
        ));
    }
    let meta_len = r.u32().map_err(io)?;
    if meta_len > FIELD_BYTES_MAX {
        return Err(corrupt(path, "header length out of range"));
    }
    let mut meta = vec![0u8; meta_len as usize];
    r.exact(&mut meta).map_err(io)?;
    let header: SnapshotHeader = postcard::from_bytes(&meta)
        .map_err(|e| corrupt(path, format!("header does not decode: {e}")))?;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    loop {
        let mut tag = [0u8; 1];
        r.exact(&mut tag).map_err(io)?;
        match tag[0] {
            0 => break,
            1 => {}
            t => return Err(corrupt(path, format!("bad row tag {t}"))),
        }
        let mut tb = [0u8; 1];
        r.exact(&mut tb).map_err(io)?;
        let table = *Table::ALL
            .get(tb[0] as usize)
            .ok_or_else(|| corrupt(path, format!("unknown table {}", tb[0])))?;
        for buf in [&mut key, &mut value] {
            let n = r.u32().map_err(io)?;
            if n > FIELD_BYTES_MAX {
                return Err(corrupt(path, "row length out of range"));
            }
            buf.resize(n as usize, 0);
            r.exact(buf).map_err(io)?;
        }
        row(table, &key, &value)?;
    }
    let expect = *r.hash.finalize().as_bytes();
    let mut got = [0u8; 32];
    r.inner.read_exact(&mut got).map_err(io)?;
    if got != expect {
        return Err(corrupt(path, "checksum mismatch"));
    }
    let mut extra = [0u8; 1];
    if r.inner.read(&mut extra).map_err(io)? != 0 {
        return Err(corrupt(path, "trailing bytes after the checksum"));
    }
    Ok(header)
}
