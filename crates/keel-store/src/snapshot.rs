//! The snapshot file format: versioned, checksummed, written and read as a
//! stream, so memory stays bounded by one row however large the state.
//!
//! ```text
//! "KEELSNAP"                      8 bytes, magic
//! format version                  u32 LE (SNAPSHOT_FORMAT_VERSION)
//! header length                   u32 LE
//! header                          postcard(SnapshotHeader): id, last log id,
//!                                 membership, table names
//! rows, each:                     0x01 | u8 table (position in header.tables)
//!                                 | u32 LE key length | key
//!                                 | u32 LE value length | value
//!                                 in strictly increasing (table, key) order
//! end:                            0x00 | u64 LE number of rows
//! BLAKE3-256                      32 bytes, of every byte before it
//! ```
//!
//! Tables are named in the header rather than numbered by the current
//! [`Table`] order, so a file stays readable if the enum is reordered.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use keel_domain::hashing::GatheringHasher;
use keel_domain::Table;
use openraft::{BasicNode, LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::{NodeId, StoreError};

/// First bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"KEELSNAP";
/// Version of the snapshot format. Bump on any incompatible change;
/// readers refuse versions they do not know.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// Largest encoded header. It holds a membership config: a few nodes, far
/// below this; a larger length means a damaged file.
const HEADER_BYTES_MAX: u32 = 1 << 20;
/// Largest key or value in a snapshot: far above any record Keel writes
/// (an order has at most 100 lines), so a larger length means a damaged
/// file, and a damaged length cannot make the reader allocate more.
pub const FIELD_BYTES_MAX: u32 = 64 << 20;
/// Buffer of the streaming reader and writer.
pub const IO_BUFFER_BYTES: usize = 256 << 10;
const TAG_ROW: u8 = 1;
const TAG_END: u8 = 0;

/// What a snapshot is a snapshot of.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Unique id of this snapshot (openraft's `snapshot_id`).
    pub snapshot_id: String,
    /// Last log id the state includes.
    pub last_log_id: Option<LogId<NodeId>>,
    /// Membership as of that log id.
    pub membership: StoredMembership<NodeId, BasicNode>,
    /// Names of the tables rows refer to, by position.
    pub tables: Vec<String>,
}

impl SnapshotHeader {
    /// A header for a snapshot of every [`Table`].
    pub fn new(
        snapshot_id: String,
        last_log_id: Option<LogId<NodeId>>,
        membership: StoredMembership<NodeId, BasicNode>,
    ) -> Self {
        Self {
            snapshot_id,
            last_log_id,
            membership,
            tables: Table::ALL.iter().map(|t| t.name().to_owned()).collect(),
        }
    }
}

/// Writes a snapshot file, hashing as it goes.
pub struct SnapshotWriter {
    out: BufWriter<File>,
    hash: GatheringHasher,
    positions: Vec<(Table, u8)>,
    last: Option<(u8, Vec<u8>)>,
    rows: u64,
}

fn invalid(detail: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, detail)
}

impl SnapshotWriter {
    /// Starts a snapshot in `file` with its header.
    pub fn create(file: File, header: &SnapshotHeader) -> std::io::Result<Self> {
        let positions = header
            .tables
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let t = Table::ALL.into_iter().find(|t| t.name() == name)?;
                Some((t, u8::try_from(i).ok()?))
            })
            .collect();
        let mut w = Self {
            out: BufWriter::with_capacity(IO_BUFFER_BYTES, file),
            hash: GatheringHasher::new(),
            positions,
            last: None,
            rows: 0,
        };
        let meta = postcard::to_stdvec(header).map_err(std::io::Error::other)?;
        let meta_len = u32::try_from(meta.len())
            .ok()
            .filter(|n| *n <= HEADER_BYTES_MAX)
            .ok_or_else(|| invalid(format!("snapshot header of {} bytes", meta.len())))?;
        w.put(MAGIC)?;
        w.put(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())?;
        w.put(&meta_len.to_le_bytes())?;
        w.put(&meta)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.update(b);
        self.out.write_all(b)
    }

    fn len_u32(what: &str, b: &[u8]) -> std::io::Result<[u8; 4]> {
        u32::try_from(b.len())
            .ok()
            .filter(|n| *n <= FIELD_BYTES_MAX)
            .map(u32::to_le_bytes)
            .ok_or_else(|| invalid(format!("snapshot {what} of {} bytes", b.len())))
    }

    /// Appends one row. Rows must come in strictly increasing (table, key)
    /// order, as a table scan in [`Table::ALL`] order yields them; anything
    /// else is refused here, as the reader would refuse it.
    pub fn row(&mut self, table: Table, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let pos = self
            .positions
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, p)| *p)
            .ok_or_else(|| invalid(format!("table {} is not in the header", table.name())))?;
        if let Some((lp, lk)) = &self.last {
            if (*lp, lk.as_slice()) >= (pos, key) {
                return Err(invalid(format!(
                    "row out of order in table {}",
                    table.name()
                )));
            }
        }
        let klen = Self::len_u32("key", key)?;
        let vlen = Self::len_u32("value", value)?;
        self.put(&[TAG_ROW, pos])?;
        self.put(&klen)?;
        self.put(key)?;
        self.put(&vlen)?;
        self.put(value)?;
        match &mut self.last {
            Some((lp, lk)) => {
                *lp = pos;
                lk.clear();
                lk.extend_from_slice(key);
            }
            None => self.last = Some((pos, key.to_vec())),
        }
        self.rows += 1;
        Ok(())
    }

    /// Writes the trailer and fsyncs the file's data, returning it. The
    /// caller makes the file's name durable (rename and directory fsync).
    pub fn finish(self) -> std::io::Result<File> {
        let f = self.finish_unsynced()?;
        // fsync: the file is about to be named the current snapshot, which
        // lets openraft purge the log it replaces; its bytes must be on disk
        // before any of that.
        f.sync_all()?;
        Ok(f)
    }

    /// Writes the trailer and returns the file without fsyncing it: for a
    /// file read once and removed (a backup export), which nothing needs
    /// after a crash. Left to the page cache, such a file usually never
    /// reaches the disk at all, so it does not compete with the log's
    /// fsyncs.
    pub fn finish_unsynced(mut self) -> std::io::Result<File> {
        self.put(&[TAG_END])?;
        let rows = self.rows.to_le_bytes();
        self.put(&rows)?;
        let h = *self.hash.finalize().as_bytes();
        self.out.write_all(&h)?;
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

struct HashingReader<R> {
    inner: R,
    hash: GatheringHasher,
    offset: u64,
}

impl<R: Read> HashingReader<R> {
    fn exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(buf)?;
        self.hash.update(buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn u8(&mut self) -> std::io::Result<u8> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// Reads a snapshot file: checks magic, version and header, calls `row` for
/// every row in file order, then checks the row count, the BLAKE3 trailer
/// and that nothing follows it. With a `row` that does nothing it is a full
/// verification. A damaged file is [`StoreError::Corrupt`] naming the part
/// of the file; an error from `row` is returned as it is.
///
/// `row` may run before the file is found damaged, so a caller that writes
/// rows somewhere must be able to discard them (a transaction).
pub fn read(
    path: &Path,
    row: impl FnMut(Table, &[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<SnapshotHeader, StoreError> {
    read_from(path, open_file(path)?, row)
}

/// A snapshot file opened for [`read_from`], buffered as [`read`] reads it.
pub fn open_file(path: &Path) -> Result<BufReader<File>, StoreError> {
    let f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    Ok(BufReader::with_capacity(IO_BUFFER_BYTES, f))
}

/// [`read`] from any reader (a snapshot arriving over the network, checked
/// as it passes); `source` names it in errors.
pub fn read_from(
    source: &Path,
    reader: impl Read,
    mut row: impl FnMut(Table, &[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<SnapshotHeader, StoreError> {
    let path = source;
    let mut r = HashingReader {
        inner: reader,
        hash: GatheringHasher::new(),
        offset: 0,
    };
    let corrupt = |at: &str, offset: u64, detail: String| {
        StoreError::corrupt(path, format!("snapshot {at} (byte {offset})"), detail)
    };
    let short = |at: &str, offset: u64, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt(at, offset, "file ends early: truncated".into())
        } else {
            StoreError::io(path, e)
        }
    };

    let mut magic = [0u8; 8];
    r.exact(&mut magic).map_err(|e| short("magic", 0, e))?;
    if &magic != MAGIC {
        return Err(corrupt("magic", 0, "not a Keel snapshot".into()));
    }
    let version = r.u32().map_err(|e| short("version", r.offset, e))?;
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(corrupt(
            "version",
            8,
            format!("format version {version}, this build reads {SNAPSHOT_FORMAT_VERSION}"),
        ));
    }
    let header_len = r.u32().map_err(|e| short("header", r.offset, e))?;
    if header_len > HEADER_BYTES_MAX {
        return Err(corrupt(
            "header",
            r.offset,
            format!("header length {header_len} out of range"),
        ));
    }
    let mut meta = vec![0u8; header_len as usize];
    r.exact(&mut meta)
        .map_err(|e| short("header", r.offset, e))?;
    let header: SnapshotHeader = postcard::from_bytes(&meta)
        .map_err(|e| corrupt("header", r.offset, format!("does not decode: {e}")))?;
    let mut tables = Vec::with_capacity(header.tables.len());
    for name in &header.tables {
        let t = Table::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| corrupt("header", r.offset, format!("unknown table {name:?}")))?;
        if tables.contains(&t) {
            return Err(corrupt("header", r.offset, format!("table {name:?} twice")));
        }
        tables.push(t);
    }

    let (mut key, mut value, mut last_key) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_table: Option<u8> = None;
    let mut rows = 0u64;
    loop {
        // Named only on the error paths: a label per row would cost an
        // allocation for each of millions of rows.
        let at = || format!("row {rows}");
        let row_start = r.offset;
        match r.u8().map_err(|e| short(&at(), row_start, e))? {
            TAG_END => break,
            TAG_ROW => {}
            t => return Err(corrupt(&at(), row_start, format!("bad row tag {t}"))),
        }
        let pos = r.u8().map_err(|e| short(&at(), row_start, e))?;
        let table = *tables
            .get(pos as usize)
            .ok_or_else(|| corrupt(&at(), row_start, format!("unknown table number {pos}")))?;
        for buf in [&mut key, &mut value] {
            let n = r.u32().map_err(|e| short(&at(), row_start, e))?;
            if n > FIELD_BYTES_MAX {
                return Err(corrupt(
                    &at(),
                    row_start,
                    format!("length {n} out of range"),
                ));
            }
            buf.resize(n as usize, 0);
            r.exact(buf).map_err(|e| short(&at(), row_start, e))?;
        }
        if let Some(lt) = last_table {
            if (lt, last_key.as_slice()) >= (pos, key.as_slice()) {
                return Err(corrupt(
                    &at(),
                    row_start,
                    format!("row out of order in table {}", table.name()),
                ));
            }
        }
        row(table, &key, &value)?;
        last_table = Some(pos);
        std::mem::swap(&mut last_key, &mut key);
        rows += 1;
    }
    let mut count = [0u8; 8];
    r.exact(&mut count)
        .map_err(|e| short("trailer", r.offset, e))?;
    let count = u64::from_le_bytes(count);
    if count != rows {
        return Err(corrupt(
            "trailer",
            r.offset,
            format!("says {count} rows, file has {rows}"),
        ));
    }
    let expect = *r.hash.finalize().as_bytes();
    let mut got = [0u8; 32];
    r.inner
        .read_exact(&mut got)
        .map_err(|e| short("checksum", r.offset, e))?;
    if got != expect {
        return Err(corrupt("checksum", r.offset, "BLAKE3 mismatch".into()));
    }
    let mut extra = [0u8; 1];
    if r.inner
        .read(&mut extra)
        .map_err(|e| StoreError::io(path, e))?
        != 0
    {
        return Err(corrupt(
            "checksum",
            r.offset + 32,
            "bytes after the checksum".into(),
        ));
    }
    Ok(header)
}

/// Fully verifies a snapshot file without using its rows.
pub fn verify(path: &Path) -> Result<SnapshotHeader, StoreError> {
    read(path, |_, _, _| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, rows: &[(Table, &[u8], &[u8])]) {
        let h = SnapshotHeader::new("s".into(), None, StoredMembership::default());
        let mut w = SnapshotWriter::create(File::create(path).unwrap(), &h).unwrap();
        for (t, k, v) in rows {
            w.row(*t, k, v).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn round_trips_rows_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.snap");
        let rows: Vec<(Table, &[u8], &[u8])> = vec![
            (Table::Products, b"a", b"1"),
            (Table::Products, b"b", b""),
            (Table::Meta, b"", b"x"),
        ];
        write(&p, &rows);
        let mut got = Vec::new();
        let h = read(&p, |t, k, v| {
            got.push((t, k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(h.snapshot_id, "s");
        let want: Vec<_> = rows
            .iter()
            .map(|(t, k, v)| (*t, k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn every_truncation_and_byte_flip_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.snap");
        write(
            &p,
            &[(Table::Orders, b"k1", b"v1"), (Table::Orders, b"k2", b"v2")],
        );
        let good = std::fs::read(&p).unwrap();
        let bad = dir.path().join("bad.snap");
        for len in 0..good.len() {
            std::fs::write(&bad, &good[..len]).unwrap();
            let e = verify(&bad).unwrap_err();
            assert!(e.is_corrupt(), "truncated to {len}: {e}");
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x40;
            std::fs::write(&bad, &b).unwrap();
            let e = verify(&bad).unwrap_err();
            assert!(e.is_corrupt(), "flip at {i}: {e}");
        }
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&bad, &longer).unwrap();
        assert!(verify(&bad).unwrap_err().is_corrupt());
    }

    #[test]
    fn the_writer_refuses_unordered_rows() {
        let dir = tempfile::tempdir().unwrap();
        let h = SnapshotHeader::new("s".into(), None, StoredMembership::default());
        let f = File::create(dir.path().join("s")).unwrap();
        let mut w = SnapshotWriter::create(f, &h).unwrap();
        w.row(Table::Orders, b"b", b"").unwrap();
        assert!(w.row(Table::Orders, b"a", b"").is_err());
        assert!(w.row(Table::Orders, b"b", b"").is_err());
        assert!(w.row(Table::Products, b"z", b"").is_err());
        w.row(Table::Meta, b"a", b"").unwrap();
    }
}
