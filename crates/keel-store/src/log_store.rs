//! The Raft log on redb. Every record is `[format version][CRC-32C of
//! index ++ payload][postcard entry]`, verified on every read.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogReader, StorageError, Vote};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

use crate::{any, NodeId, Observer, StoreError, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");
const RECORD_VERSION: u8 = 1;
/// Most entries returned by one log read, bounding memory of a read that
/// openraft asks for with a wide range.
pub const READ_ENTRIES_MAX: usize = 4_096;

/// The Raft log store. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    path: PathBuf,
    fsync_observer: Arc<RwLock<Option<Observer>>>,
}

fn encode_record(index: u64, entry: &Entry<TypeConfig>) -> Result<Vec<u8>, postcard::Error> {
    let payload = postcard::to_stdvec(entry)?;
    let mut crc = crc32c::crc32c(&index.to_be_bytes());
    crc = crc32c::crc32c_append(crc, &payload);
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn decode_record(path: &Path, index: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        file: path.to_path_buf(),
        location: format!("log index {index}"),
        detail,
    };
    if bytes.len() < 5 {
        return Err(corrupt(format!(
            "record too short ({} bytes): torn write",
            bytes.len()
        )));
    }
    if bytes[0] != RECORD_VERSION {
        return Err(corrupt(format!("unknown record version {}", bytes[0])));
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let payload = &bytes[5..];
    let crc = crc32c::crc32c_append(crc32c::crc32c(&index.to_be_bytes()), payload);
    if crc != stored {
        return Err(corrupt("checksum mismatch".into()));
    }
    let e: Entry<TypeConfig> =
        postcard::from_bytes(payload).map_err(|e| corrupt(format!("does not decode: {e}")))?;
    if e.log_id.index != index {
        return Err(corrupt(format!("record holds index {}", e.log_id.index)));
    }
    Ok(e)
}

impl LogStore {
    /// Opens the log and verifies every record.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Corrupt {
            file: path.to_path_buf(),
            location: "database header".into(),
            detail: format!("redb cannot open it: {e}"),
        })?;
        let s = Self {
            db: Arc::new(db),
            path: path.to_path_buf(),
            fsync_observer: Arc::new(RwLock::new(None)),
        };
        s.init_tables()?;
        s.verify()?;
        Ok(s)
    }

    fn init_tables(&self) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::db(&self.path, e))?;
        {
            txn.open_table(LOG)
                .map_err(|e| StoreError::db(&self.path, e))?;
            txn.open_table(META)
                .map_err(|e| StoreError::db(&self.path, e))?;
        }
        txn.commit().map_err(|e| StoreError::db(&self.path, e))
    }

    /// Reads every record once and checks its checksum, so a corrupt log is
    /// refused at start-up instead of being replicated or applied.
    fn verify(&self) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| StoreError::db(&self.path, e))?;
        let t = txn
            .open_table(LOG)
            .map_err(|e| StoreError::db(&self.path, e))?;
        let mut prev: Option<u64> = None;
        for row in t.iter().map_err(|e| StoreError::db(&self.path, e))? {
            let (k, v) = row.map_err(|e| StoreError::db(&self.path, e))?;
            let index = k.value();
            decode_record(&self.path, index, v.value())?;
            if let Some(p) = prev {
                if index != p + 1 {
                    return Err(StoreError::Corrupt {
                        file: self.path.clone(),
                        location: format!("log index {index}"),
                        detail: format!("gap after index {p}"),
                    });
                }
            }
            prev = Some(index);
        }
        self.meta::<Vote<NodeId>>("vote")?;
        self.meta::<Option<LogId<NodeId>>>("committed")?;
        self.meta::<LogId<NodeId>>("purged")?;
        Ok(())
    }

    /// Sets a callback that observes each append's commit+fsync time.
    pub fn set_fsync_observer(&self, f: Observer) {
        if let Ok(mut o) = self.fsync_observer.write() {
            *o = Some(f);
        }
    }

    fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| StoreError::db(&self.path, e))?;
        let t = txn
            .open_table(META)
            .map_err(|e| StoreError::db(&self.path, e))?;
        let Some(v) = t.get(key).map_err(|e| StoreError::db(&self.path, e))? else {
            return Ok(None);
        };
        keel_domain::codec::decode(keel_domain::Table::Meta, key.as_bytes(), v.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                file: self.path.clone(),
                location: format!("log meta {key}"),
                detail: e.to_string(),
            })
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &str,
        v: &T,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::db(&self.path, e))?;
        txn.set_durability(durability);
        {
            let mut t = txn
                .open_table(META)
                .map_err(|e| StoreError::db(&self.path, e))?;
            t.insert(key, keel_domain::codec::encode(v).as_slice())
                .map_err(|e| StoreError::db(&self.path, e))?;
        }
        txn.commit().map_err(|e| StoreError::db(&self.path, e))
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| StoreError::db(&self.path, e))?;
        let t = txn
            .open_table(LOG)
            .map_err(|e| StoreError::db(&self.path, e))?;
        let last = t.last().map_err(|e| StoreError::db(&self.path, e))?;
        match last {
            None => Ok(None),
            Some((k, v)) => Ok(Some(
                decode_record(&self.path, k.value(), v.value())?.log_id,
            )),
        }
    }

    fn read_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| StoreError::db(&self.path, e))?;
        let t = txn
            .open_table(LOG)
            .map_err(|e| StoreError::db(&self.path, e))?;
        let mut out = Vec::new();
        for row in t
            .range::<u64>((start, end))
            .map_err(|e| StoreError::db(&self.path, e))?
        {
            let (k, v) = row.map_err(|e| StoreError::db(&self.path, e))?;
            out.push(decode_record(&self.path, k.value(), v.value())?);
            if out.len() >= READ_ENTRIES_MAX {
                break;
            }
        }
        Ok(out)
    }

    fn delete_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::db(&self.path, e))?;
        txn.set_durability(durability);
        {
            let mut t = txn
                .open_table(LOG)
                .map_err(|e| StoreError::db(&self.path, e))?;
            t.retain_in::<u64, _>((start, end), |_, _| false)
                .map_err(|e| StoreError::db(&self.path, e))?;
        }
        txn.commit().map_err(|e| StoreError::db(&self.path, e))
    }
}

fn read_err(e: StoreError) -> StorageError<NodeId> {
    crate::se::read_logs(any(e))
}
fn write_err(e: StoreError) -> StorageError<NodeId> {
    crate::se::write_logs(any(e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.read_range(range.start_bound().cloned(), range.end_bound().cloned())
            .map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let purged: Option<LogId<NodeId>> = self.meta("purged").map_err(read_err)?;
        let last = self.last_entry_id().map_err(read_err)?.or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        // fsync: a vote forgotten after a crash could let this node vote
        // twice in one term, electing two leaders.
        self.put_meta("vote", vote, Durability::Immediate)
            .map_err(|e| crate::se::write_vote(any(e)))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.meta("vote").map_err(|e| crate::se::read_vote(any(e)))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not fsynced: it only lets a restarted node re-apply sooner; losing
        // it is safe because the leader re-sends the commit index. The next
        // fsynced append makes it durable anyway.
        self.put_meta("committed", &committed, Durability::None)
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .meta::<Option<LogId<NodeId>>>("committed")
            .map_err(read_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let start = Instant::now();
        let res = (|| -> Result<(), StoreError> {
            let mut txn = self
                .db
                .begin_write()
                .map_err(|e| StoreError::db(&self.path, e))?;
            // fsync before the callback: openraft counts this node towards
            // the quorum only once the callback fires, so an acknowledged
            // entry is on the disks of a majority.
            txn.set_durability(Durability::Immediate);
            {
                let mut t = txn
                    .open_table(LOG)
                    .map_err(|e| StoreError::db(&self.path, e))?;
                for e in entries {
                    let rec = encode_record(e.log_id.index, &e)
                        .map_err(|err| StoreError::db(&self.path, err))?;
                    t.insert(e.log_id.index, rec.as_slice())
                        .map_err(|err| StoreError::db(&self.path, err))?;
                }
            }
            txn.commit().map_err(|e| StoreError::db(&self.path, e))
        })();
        if let Ok(o) = self.fsync_observer.read() {
            if let Some(f) = o.as_ref() {
                f(start.elapsed());
            }
        }
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Durable: a truncated (conflicting) entry must not reappear after a
        // crash, or this node could later vote with a stale log.
        self.delete_range(
            Bound::Included(log_id.index),
            Bound::Unbounded,
            Durability::Immediate,
        )
        .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge point first: if we crash between the two commits
        // the log still reads consistently (entries at or below it ignored).
        self.put_meta("purged", &log_id, Durability::Immediate)
            .map_err(write_err)?;
        self.delete_range(
            Bound::Unbounded,
            Bound::Included(log_id.index),
            Durability::None,
        )
        .map_err(write_err)
    }
}
