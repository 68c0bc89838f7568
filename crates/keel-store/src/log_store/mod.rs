//! The Raft log on redb (`log.redb`).
//!
//! Table `log`: index (u64) → record, where a record is
//! `[format version u8][CRC-32C u32 LE of (index u64 BE ++ payload)][payload]`
//! and the payload is the postcard encoding of the openraft entry. The index
//! is inside the checksum, so a record copied to the wrong key is caught too.
//! Table `log_meta`: `vote`, `committed`, `purged`, each encoded with
//! [`keel_domain::codec`] (version byte, postcard, CRC-32C).
//!
//! Every record is verified when read, and all of them at open.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use keel_domain::codec;
use keel_domain::test_bugs::{on, TestBug};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, Membership, RaftLogReader, StorageError, Vote,
};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};
use serde::{de::DeserializeOwned, Serialize};

use tokio::sync::{mpsc, oneshot};

use crate::log_backend::LogBackend;
use crate::purge_gate::{PurgeGate, PURGE_AWAIT_STATE_MAX};
use crate::{NodeId, Observer, StoreError, TypeConfig};

mod record;

pub use record::{
    decode_log_record, encode_log_record, push_log_frame, read_log_frame,
    LOG_FRAME_RECORD_BYTES_MAX, LOG_RECORD_FORMAT_VERSION,
};
use record::{decode_record, encode_record};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "purged";

/// Most entries one replication read returns. openraft already bounds a
/// request by its `max_payload_entries`; this keeps a wide request from a
/// misconfiguration from loading the whole log.
pub const REPLICATION_READ_ENTRIES_MAX: usize = 1_024;
/// Most record bytes one replication read returns (at least one entry is
/// always returned). An entry can carry a thousand commands, so a count
/// alone does not bound memory; 8 MiB of postcard keeps one AppendEntries
/// well under the node's 64 MiB RPC body limit even if its wire encoding is
/// several times larger.
pub const REPLICATION_READ_BYTES_MAX: usize = 8 << 20;
/// redb's page cache for the log. Reads are mostly of recent entries (for
/// replication), which are also the most recently written pages; a small
/// cache keeps three nodes on one laptop cheap (redb's default is 1 GiB).
const LOG_CACHE_BYTES: usize = 32 << 20;

/// Most log writes (appends, saved commit points, truncations, purges,
/// votes) queued for the writer thread; openraft waits to queue more.
pub const LOG_WRITE_QUEUE_MAX: usize = 1_024;
/// Most queued appends and commit points the writer commits together, in one
/// transaction and one fsync (group commit).
pub const LOG_WRITE_GROUP_MAX: usize = 64;

/// The Raft log store. Cheap to clone; clones share the database and its
/// writer thread.
///
/// Writes go through one writer thread, in the order openraft asked for
/// them. An append returns as soon as its entries are queued and readable
/// (openraft's storage-v2 contract): openraft then sends them to the
/// followers while this node's own fsync runs, instead of after it, and the
/// entries' `LogFlushed` callback fires once the fsync is done.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
    writer: Arc<Writer>,
    /// The state's durable reach: a purge waits until the state holds its
    /// index (see `purge_gate`). None for a log opened alone, with no state
    /// beside it (`LogStore::open`; `crate::open` sets it).
    purge_gate: Option<PurgeGate>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    fsync_observer: RwLock<Option<Observer>>,
    /// Entries appended but not yet committed to `db`, by index: what
    /// readers see on top of the database until the writer has written
    /// them. Always a run of indexes above everything `db` holds.
    unflushed: Mutex<BTreeMap<u64, Entry<TypeConfig>>>,
    /// The vote, when the deliberate bug `vote-unsynced`
    /// (`keel_domain::test_bugs`) keeps it out of the database; always
    /// `None` without that bug.
    vote_in_memory: Mutex<Option<Vote<NodeId>>>,
}

/// `(index, record)` of an entry, encoded as it is stored.
type Record = (u64, Vec<u8>);

/// One queued write.
enum Job {
    /// An append or a commit point: queued runs of these are committed
    /// together.
    Grouped(Grouped),
    Truncate {
        index: u64,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    Purge {
        upto: LogId<NodeId>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    Vote {
        vote: Vote<NodeId>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// A write the writer commits together with its neighbours.
enum Grouped {
    /// Entries encoded by `append`; the entries themselves wait in
    /// `Inner::unflushed` for readers.
    Append {
        records: Vec<Record>,
        callback: LogFlushed<TypeConfig>,
    },
    /// openraft's commit point: not fsynced (see `save_committed`).
    Committed(Option<LogId<NodeId>>),
}

/// The queue to the writer thread. Dropping the last handle closes the
/// queue; the thread writes what is left and ends, and the drop waits for
/// it, so the database is closed when the last `LogStore` is gone.
struct Writer {
    /// `None` only while dropping.
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(inner: Arc<Inner>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(LOG_WRITE_QUEUE_MAX);
        let path = inner.path.clone();
        let thread = std::thread::Builder::new()
            .name("keel-log-writer".into())
            .spawn(move || write_loop(&inner, rx))
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(Self {
            queue: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every critical section of the log's in-memory locks is a single map
/// operation, so they follow the first rule of [`crate::sync`].
use crate::sync::lock;

/// The writer thread: takes jobs in order; runs of appends and commit
/// points are committed together.
fn write_loop(inner: &Inner, mut rx: mpsc::Receiver<Job>) {
    // After a failed write the log on disk may lack entries openraft was
    // told nothing about yet; nothing after it may be written or reported.
    let mut failed: Option<String> = None;
    let mut next: Option<Job> = None;
    loop {
        let Some(job) = next.take().or_else(|| rx.blocking_recv()) else {
            return;
        };
        match job {
            Job::Grouped(first) => {
                let mut group = Group::default();
                group.add(first);
                for _ in 1..LOG_WRITE_GROUP_MAX {
                    match rx.try_recv() {
                        Ok(Job::Grouped(g)) => group.add(g),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                inner.write_group(group, &mut failed);
            }
            Job::Truncate { index, done } => {
                let _ = done.send(inner.guarded(&mut failed, |i| i.truncate(index)));
            }
            Job::Purge { upto, done } => {
                let _ = done.send(inner.guarded(&mut failed, |i| i.purge(upto)));
            }
            Job::Vote { vote, done } => {
                let _ = done.send(inner.guarded(&mut failed, |i| i.save_vote(&vote)));
            }
        }
    }
}

/// Appends and commit points the writer commits together.
#[derive(Default)]
struct Group {
    records: Vec<Record>,
    callbacks: Vec<LogFlushed<TypeConfig>>,
    /// The last commit point queued, if any.
    committed: Option<Option<LogId<NodeId>>>,
}

impl Group {
    fn add(&mut self, g: Grouped) {
        match g {
            Grouped::Append { records, callback } => {
                self.records.extend(records);
                self.callbacks.push(callback);
            }
            Grouped::Committed(c) => self.committed = Some(c),
        }
    }
}

impl LogStore {
    /// Opens (creating if needed) the log at `path` and verifies every
    /// record and the metadata.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let backend = LogBackend::open(path).map_err(|e| StoreError::db(path, e))?;
        let db = redb::Builder::new()
            .set_cache_size(LOG_CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(|e| StoreError::db(path, e))?;
        let inner = Inner {
            db,
            path: path.to_path_buf(),
            fsync_observer: RwLock::new(None),
            unflushed: Mutex::new(BTreeMap::new()),
            vote_in_memory: Mutex::new(None),
        };
        inner.init_tables()?;
        inner.verify()?;
        let inner = Arc::new(inner);
        let writer = Arc::new(Writer::start(inner.clone())?);
        Ok(Self {
            inner,
            writer,
            purge_gate: None,
        })
    }

    /// Purges from here on wait until the state behind `gate` holds their
    /// index durably.
    pub(crate) fn purge_behind(&mut self, gate: PurgeGate) {
        self.purge_gate = Some(gate);
    }

    /// Sets a callback that observes each append's commit-and-fsync time.
    pub fn set_fsync_observer(&self, f: Observer) {
        *crate::sync::write(&self.inner.fsync_observer) = Some(f);
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The last log index this node knows to be committed, as last saved
    /// (openraft saves it as it advances; it may lag the cluster's).
    pub fn committed_index(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .inner
            .read_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)?
            .flatten()
            .map(|l| l.index))
    }

    /// The log's purge point: entries at or below it are gone from here.
    pub fn purged(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        self.inner.read_meta::<LogId<NodeId>>(KEY_PURGED)
    }

    /// Up to `entries_max` records (and about `bytes_max` bytes, at least
    /// one record) with indexes above `after` and at most `upto`, as stored:
    /// each verified, and handed out raw so a backup keeps the log's own
    /// checksum. Also returns the purge point: if the first record is not
    /// `after + 1`, what was asked for is gone from this node's log.
    pub fn read_records(
        &self,
        after: u64,
        upto: u64,
        entries_max: usize,
        bytes_max: usize,
    ) -> Result<LogPage, StoreError> {
        let inner = &self.inner;
        let txn = inner.read_txn()?;
        let purged = inner.meta::<LogId<NodeId>>(&txn, KEY_PURGED)?;
        let t = txn.open_table(LOG).map_err(|e| inner.err(e))?;
        let mut records = Vec::new();
        let mut bytes = 0usize;
        let start = Bound::Excluded(after);
        for row in t
            .range::<u64>((start, Bound::Included(upto)))
            .map_err(|e| inner.err(e))?
        {
            if !records.is_empty() && (records.len() >= entries_max || bytes >= bytes_max) {
                break;
            }
            let (k, v) = row.map_err(|e| inner.err(e))?;
            let index = k.value();
            decode_record(&inner.path, index, v.value())?;
            bytes += v.value().len();
            records.push((index, v.value().to_vec()));
        }
        Ok(LogPage { purged, records })
    }

    /// Adopting a restored state: the log starts empty behind `last` (the
    /// restored state's applied log id, also its snapshot's), with `last`
    /// committed and `vote` as this node's vote. Refused unless the log is
    /// empty. One fsynced commit: the node starts from exactly this.
    pub(crate) fn adopt(&self, last: LogId<NodeId>, vote: Vote<NodeId>) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut txn = inner.db.begin_write().map_err(|e| inner.err(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| inner.err(e))?;
        {
            let t = txn.open_table(LOG).map_err(|e| inner.err(e))?;
            if t.first().map_err(|e| inner.err(e))?.is_some() {
                return Err(StoreError::other(
                    &inner.path,
                    "refusing to adopt a restored state into a log that has entries",
                ));
            }
            let mut m = txn.open_table(META).map_err(|e| inner.err(e))?;
            m.insert(KEY_PURGED, codec::encode(&last).as_slice())
                .map_err(|e| inner.err(e))?;
            m.insert(KEY_COMMITTED, codec::encode(&Some(last)).as_slice())
                .map_err(|e| inner.err(e))?;
            m.insert(KEY_VOTE, codec::encode(&vote).as_slice())
                .map_err(|e| inner.err(e))?;
        }
        txn.commit().map_err(|e| inner.err(e))
    }
}

/// The last log id and the saved vote.
type LastAndVote = (Option<LogId<NodeId>>, Option<Vote<NodeId>>);

/// A membership entry's log id and membership.
type MembershipAt = (LogId<NodeId>, Membership<NodeId, BasicNode>);

impl LogStore {
    /// The last log id (the purge point when every entry is purged) and the
    /// saved vote, for [`crate::recover`].
    pub(crate) fn last_and_vote(&self) -> Result<LastAndVote, StoreError> {
        Ok((self.inner.log_state()?.last_log_id, self.inner.read_vote()?))
    }

    /// The last membership entry in the log above `after`, if any: the
    /// membership openraft would take as effective at start-up over the one
    /// the state holds.
    pub(crate) fn last_membership_after(
        &self,
        after: Option<u64>,
    ) -> Result<Option<MembershipAt>, StoreError> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let entries = self
            .inner
            .read_range(start, Bound::Unbounded, None)
            .map_err(|e| e.error)?;
        Ok(entries.into_iter().rev().find_map(|e| match e.payload {
            EntryPayload::Membership(m) => Some((e.log_id, m)),
            _ => None,
        }))
    }

    /// Appends `entry` right after the last log id and saves `vote`, in one
    /// fsynced commit (`Durability::Immediate`): the recovery of
    /// [`crate::recover`] either happened whole or not at all. Refused
    /// unless `entry` follows the last log id and `vote` is not below the
    /// saved one, the two rules every append and vote of openraft keeps.
    pub(crate) fn force_append(
        &self,
        entry: &Entry<TypeConfig>,
        vote: Vote<NodeId>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let (last, saved) = self.last_and_vote()?;
        let next = last.map_or(1, |l| l.index + 1);
        if entry.log_id.index != next || Some(entry.log_id) <= last {
            return Err(StoreError::other(
                &inner.path,
                format!(
                    "a forced entry {} does not follow the log's last {last:?}",
                    entry.log_id
                ),
            ));
        }
        if saved.is_some_and(|v| vote.partial_cmp(&v).is_none_or(|o| o.is_lt())) {
            return Err(StoreError::other(
                &inner.path,
                format!("a forced vote {vote} is below the saved vote"),
            ));
        }
        let record =
            encode_record(entry).map_err(|e| StoreError::other(&inner.path, e.to_string()))?;
        let mut txn = inner.db.begin_write().map_err(|e| inner.err(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| inner.err(e))?;
        {
            let mut t = txn.open_table(LOG).map_err(|e| inner.err(e))?;
            t.insert(entry.log_id.index, record.as_slice())
                .map_err(|e| inner.err(e))?;
            let mut m = txn.open_table(META).map_err(|e| inner.err(e))?;
            m.insert(KEY_VOTE, codec::encode(&vote).as_slice())
                .map_err(|e| inner.err(e))?;
        }
        txn.commit().map_err(|e| inner.err(e))
    }
}

/// A page of raw log records (see [`LogStore::read_records`]).
#[derive(Debug)]
pub struct LogPage {
    /// The log's purge point: records at or below it are gone.
    pub purged: Option<LogId<NodeId>>,
    /// `(index, record)` in index order, each in the format of
    /// [`decode_log_record`].
    pub records: Vec<(u64, Vec<u8>)>,
}

/// How an append commits: fsynced, as the comment in `append` explains.
/// (The deliberate bug `ack-before-fsync` of `keel_domain::test_bugs` skips
/// the fsync underneath, in [`LogBackend`]: the commit reaches the OS, so a
/// killed process keeps it, but not the disk, so a power loss that drops
/// unsynced writes loses acknowledged entries, which only the chaos suite's
/// `lose-unsynced` nemesis can show.)
const APPEND_DURABILITY: Durability = Durability::Immediate;

impl Inner {
    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::db(&self.path, e)
    }

    fn init_tables(&self) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        txn.set_durability(Durability::None)
            .map_err(|e| self.err(e))?;
        txn.open_table(LOG).map_err(|e| self.err(e))?;
        txn.open_table(META).map_err(|e| self.err(e))?;
        // Creating two empty tables needs no fsync: if it is lost, the next
        // open creates them again.
        txn.commit().map_err(|e| self.err(e))
    }

    fn read_txn(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(|e| self.err(e))
    }

    /// Reads every record once and checks its checksum, that indexes are
    /// consecutive, above the purge point and with non-decreasing terms, so
    /// a damaged log is refused at start-up instead of replicated or applied.
    fn verify(&self) -> Result<(), StoreError> {
        let txn = self.read_txn()?;
        self.meta::<Vote<NodeId>>(&txn, KEY_VOTE)?;
        self.meta::<Option<LogId<NodeId>>>(&txn, KEY_COMMITTED)?;
        let purged = self.meta::<LogId<NodeId>>(&txn, KEY_PURGED)?;
        let t = txn.open_table(LOG).map_err(|e| self.err(e))?;
        let mut prev: Option<LogId<NodeId>> = None;
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let index = k.value();
            let e = decode_record(&self.path, index, v.value())?;
            let bad = |detail: String| {
                StoreError::corrupt(&self.path, format!("log index {index}"), detail)
            };
            if let Some(p) = purged {
                if index <= p.index {
                    return Err(bad(format!("entry survives purge up to {}", p.index)));
                }
            }
            if let Some(p) = prev {
                if p.index.checked_add(1) != Some(index) {
                    return Err(bad(format!("gap after log index {}", p.index)));
                }
                if e.log_id.leader_id.term < p.leader_id.term {
                    return Err(bad(format!(
                        "term {} after term {} at index {}",
                        e.log_id.leader_id.term, p.leader_id.term, p.index
                    )));
                }
            }
            prev = Some(e.log_id);
        }
        Ok(())
    }

    fn meta<T: DeserializeOwned>(
        &self,
        txn: &ReadTransaction,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let t = txn.open_table(META).map_err(|e| self.err(e))?;
        let Some(v) = t.get(key).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        codec::decode(keel_domain::Table::Meta, key.as_bytes(), v.value())
            .map(Some)
            .map_err(|e| StoreError::corrupt(&self.path, format!("log meta {key}"), e.to_string()))
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.meta(&self.read_txn()?, key)
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        txn.set_durability(durability).map_err(|e| self.err(e))?;
        {
            let mut t = txn.open_table(META).map_err(|e| self.err(e))?;
            t.insert(key, codec::encode(value).as_slice())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Saves the vote, fsynced (see `LogStore::save_vote`). The deliberate
    /// bug `vote-unsynced` keeps it in memory instead, where a restart
    /// forgets it.
    fn save_vote(&self, vote: &Vote<NodeId>) -> Result<(), StoreError> {
        if on(TestBug::VoteUnsynced) {
            *lock(&self.vote_in_memory) = Some(*vote);
            return Ok(());
        }
        self.put_meta(KEY_VOTE, vote, Durability::Immediate)
    }

    fn read_vote(&self) -> Result<Option<Vote<NodeId>>, StoreError> {
        if let Some(v) = *lock(&self.vote_in_memory) {
            return Ok(Some(v));
        }
        self.read_meta(KEY_VOTE)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let pending = lock(&self.unflushed)
            .last_key_value()
            .map(|(_, e)| e.log_id);
        let txn = self.read_txn()?;
        let purged: Option<LogId<NodeId>> = self.meta(&txn, KEY_PURGED)?;
        let t = txn.open_table(LOG).map_err(|e| self.err(e))?;
        let last = match t.last().map_err(|e| self.err(e))? {
            None => None,
            Some((k, v)) => Some(decode_record(&self.path, k.value(), v.value())?.log_id),
        };
        Ok(LogState {
            last_purged_log_id: purged,
            // With every entry purged, the last log id is the purge point.
            last_log_id: pending.or(last).or(purged),
        })
    }

    /// Entries in `(start, end)`, verified. With `limit`, stops after that
    /// many entries or bytes (but returns at least one). A damaged record is
    /// reported with its index.
    fn read_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        limit: Option<(usize, usize)>,
    ) -> Result<Vec<Entry<TypeConfig>>, ReadError> {
        // Unflushed entries first, then the database: an entry the writer
        // commits in between is in this copy or in that (later) read view,
        // and unflushed entries all lie above what the database held.
        let unflushed: Vec<Entry<TypeConfig>> = lock(&self.unflushed)
            .range((start, end))
            .map(|(_, e)| e.clone())
            .collect();
        let full = |out: &Vec<Entry<TypeConfig>>, bytes: usize| {
            limit.is_some_and(|(entries_max, bytes_max)| {
                !out.is_empty() && (out.len() >= entries_max || bytes >= bytes_max)
            })
        };
        let txn = self.read_txn()?;
        let t = txn.open_table(LOG).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for row in t.range::<u64>((start, end)).map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            if full(&out, bytes) {
                return Ok(out);
            }
            let index = k.value();
            bytes += v.value().len();
            let e = decode_record(&self.path, index, v.value()).map_err(|error| ReadError {
                error,
                index: Some(index),
            })?;
            out.push(e);
        }
        let read_upto = out.last().map(|e| e.log_id.index);
        for e in unflushed {
            if read_upto.is_some_and(|i| e.log_id.index <= i) {
                continue;
            }
            if full(&out, bytes) {
                break;
            }
            bytes += postcard::experimental::serialized_size(&e).unwrap_or(0);
            out.push(e);
        }
        Ok(out)
    }

    /// Runs `f` unless an earlier write failed; a failure of `f` is
    /// remembered so no later write is made.
    fn guarded(
        &self,
        failed: &mut Option<String>,
        f: impl FnOnce(&Self) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if let Some(why) = failed {
            return Err(StoreError::other(
                &self.path,
                format!("an earlier log write failed: {why}"),
            ));
        }
        let r = f(self);
        if let Err(e) = &r {
            *failed = Some(e.to_string());
        }
        r
    }

    /// Commits a run of appends and commit points in one transaction, then
    /// reports each append flushed (or failed).
    fn write_group(&self, group: Group, failed: &mut Option<String>) {
        let Group {
            records,
            callbacks,
            committed,
        } = group;
        let result = self.guarded(failed, |i| i.commit_appends(&records, committed));
        if result.is_ok() {
            let mut unflushed = lock(&self.unflushed);
            for (index, _) in &records {
                unflushed.remove(index);
            }
        }
        for callback in callbacks {
            // openraft stops the node on a failed flush.
            callback.log_io_completed(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::other(e.to_string())),
            );
        }
    }

    fn commit_appends(
        &self,
        records: &[Record],
        committed: Option<Option<LogId<NodeId>>>,
    ) -> Result<(), StoreError> {
        if let Some(w) = records
            .windows(2)
            .find(|w| w[0].0.checked_add(1) != Some(w[1].0))
        {
            return Err(StoreError::other(
                &self.path,
                format!(
                    "refusing to append non-consecutive entries {} then {}",
                    w[0].0, w[1].0
                ),
            ));
        }
        let start = Instant::now();
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        // fsync before openraft hears of it: the callbacks (after this
        // returns) are what let openraft count this node towards a quorum,
        // so an entry reported committed is on a majority's disks. redb's
        // Immediate commit writes the new pages and a checksummed header,
        // then fsyncs; after a crash a commit whose pages did not all reach
        // the disk fails its checksum and redb falls back to the previous
        // one. So the log holds the whole group or none of it, and a
        // callback only ever follows a completed fsync. A group of commit
        // points alone is not fsynced (see `save_committed`).
        txn.set_durability(if records.is_empty() {
            Durability::None
        } else {
            APPEND_DURABILITY
        })
        .map_err(|e| self.err(e))?;
        {
            let mut t = txn.open_table(LOG).map_err(|e| self.err(e))?;
            for (index, rec) in records {
                t.insert(*index, rec.as_slice()).map_err(|e| self.err(e))?;
            }
            if let Some(c) = committed {
                let mut m = txn.open_table(META).map_err(|e| self.err(e))?;
                m.insert(KEY_COMMITTED, codec::encode(&c).as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        if !records.is_empty() {
            {
                if let Some(f) = crate::sync::read(&self.fsync_observer).as_ref() {
                    f(start.elapsed());
                }
            }
        }
        Ok(())
    }

    fn truncate(&self, index: u64) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        // fsync: the removed entries conflict with the leader's log. Once
        // truncate returns, openraft may act on the shorter log; an fsync
        // here means a crash can never bring the discarded suffix back.
        // Truncation is rare (leader changes), so the cost does not matter.
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        {
            let mut t = txn.open_table(LOG).map_err(|e| self.err(e))?;
            t.retain_in::<u64, _>(index.., |_, _| false)
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn purge(&self, upto: LogId<NodeId>) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        // One transaction for the purge point and the deletion, so the log
        // never holds entries at or below its purge point. fsynced because
        // purges are rare (once per snapshot) and it keeps the on-disk log
        // and openraft's view of it equal from here on.
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        {
            let mut m = txn.open_table(META).map_err(|e| self.err(e))?;
            m.insert(KEY_PURGED, codec::encode(&upto).as_slice())
                .map_err(|e| self.err(e))?;
            let mut t = txn.open_table(LOG).map_err(|e| self.err(e))?;
            t.retain_in::<u64, _>(..=upto.index, |_, _| false)
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }
}

/// A failed log read, with the index of the damaged record if it was one.
struct ReadError {
    error: StoreError,
    index: Option<u64>,
}

impl From<StoreError> for ReadError {
    fn from(error: StoreError) -> Self {
        Self { error, index: None }
    }
}

impl ReadError {
    fn into_storage(self) -> StorageError<NodeId> {
        match self.index {
            // Name the damaged index in openraft's error subject too.
            Some(i) => self.error.read_log_at(i),
            None => self.error.read_logs(),
        }
    }
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        // The whole range: openraft's `get_log_entries` (used to apply
        // committed entries) treats a short answer as a missing entry.
        let (start, end) = bounds(&range);
        self.inner
            .read_range(start, end, None)
            .map_err(ReadError::into_storage)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.inner
            .read_range(
                Bound::Included(start),
                Bound::Excluded(end),
                Some((REPLICATION_READ_ENTRIES_MAX, REPLICATION_READ_BYTES_MAX)),
            )
            .map_err(ReadError::into_storage)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.inner.log_state().map_err(|e| e.read_logs())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        // fsynced before returning: a vote forgotten in a crash could let
        // this node vote again in the same term for another candidate,
        // electing two leaders. Written after every earlier log write, so
        // it also makes any earlier non-durable write durable. (The
        // deliberate bug `vote-unsynced` keeps it in memory instead.)
        let vote = *vote;
        self.call(|done| Job::Vote { vote, done })
            .await
            .map_err(|e| e.write_vote())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.inner.read_vote().map_err(|e| e.read_vote())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Queued, not waited for, and not fsynced. The committed id only
        // lets a restarted node re-apply its log before hearing from a
        // leader; if a crash loses it, the node restarts from an older value
        // (or none), which is always safe: the leader re-sends the commit
        // index with its next heartbeat. It is written after the appends
        // queued before it, and the next fsynced write makes it durable.
        self.queue(Job::Grouped(Grouped::Committed(committed)))
            .await
            .map_err(|e| e.write_logs())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .inner
            .read_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)
            .map_err(|e| e.read_logs())?
            .flatten())
    }

    /// Makes the entries readable and queues them for the writer, which
    /// commits and fsyncs them (with any appends queued beside them) and
    /// then reports them flushed through `callback`. Returns at once, as
    /// storage-v2 asks: openraft replicates the entries meanwhile, and
    /// counts this node towards their quorum only at the callback.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        if entries.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let mut records = Vec::with_capacity(entries.len());
        for e in &entries {
            let rec = encode_record(e).map_err(|err| {
                StoreError::other(&self.inner.path, format!("encoding {}: {err}", e.log_id))
                    .write_logs()
            })?;
            // Pair assertion (debug builds): what goes to disk reads back.
            #[cfg(debug_assertions)]
            decode_record(&self.inner.path, e.log_id.index, &rec).map_err(|e| e.write_logs())?;
            records.push((e.log_id.index, rec));
        }
        lock(&self.inner.unflushed).extend(entries.into_iter().map(|e| (e.log_id.index, e)));
        self.queue(Job::Grouped(Grouped::Append { records, callback }))
            .await
            .map_err(|e| e.write_logs())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // After every append queued before it. Appends made since are
        // flushed by then, so no unflushed entry at or above the index is
        // left for readers to see.
        let index = log_id.index;
        self.call(|done| Job::Truncate { index, done })
            .await
            .map_err(|e| e.write_logs())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Never past what the state holds durably: openraft asks for this
        // purge when it hands a received snapshot to the state machine,
        // without waiting for the install. Entries appended later queue
        // behind this purge, so they too reach the disk only after the
        // state they follow.
        if let Some(gate) = &self.purge_gate {
            gate.wait_for(log_id.index, PURGE_AWAIT_STATE_MAX)
                .await
                .map_err(|e| StoreError::other(&self.inner.path, e.to_string()).write_logs())?;
        }
        self.call(|done| Job::Purge { upto: log_id, done })
            .await
            .map_err(|e| e.write_logs())
    }
}

impl LogStore {
    /// Queues a write without waiting for it.
    async fn queue(&self, job: Job) -> Result<(), StoreError> {
        let stopped = || StoreError::other(&self.inner.path, "the log writer has stopped");
        let tx = self.writer.queue.as_ref().ok_or_else(stopped)?;
        tx.send(job).await.map_err(|_| stopped())
    }

    /// Queues a write and waits for its result.
    async fn call(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<(), StoreError>>) -> Job,
    ) -> Result<(), StoreError> {
        let (done, result) = oneshot::channel();
        self.queue(job(done)).await?;
        result.await.map_err(|_| {
            StoreError::other(&self.inner.path, "the log writer stopped before the write")
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::record::RECORD_HEADER_BYTES;
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(keel_domain::Batch {
                leader_time_ms: 7,
                commands: Vec::new(),
            }),
        }
    }

    #[test]
    fn records_round_trip_and_every_bit_flip_is_caught() {
        let p = Path::new("log.redb");
        let e = entry(3, 9);
        let rec = encode_record(&e).unwrap();
        assert_eq!(decode_record(p, 9, &rec).unwrap(), e);
        for bit in 0..rec.len() * 8 {
            let mut bad = rec.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let err = decode_record(p, 9, &bad).unwrap_err();
            assert!(err.is_corrupt(), "bit {bit}: {err}");
            assert!(err.to_string().contains("log index 9"), "{err}");
        }
    }

    #[test]
    fn a_record_under_another_index_or_torn_is_corrupt() {
        let p = Path::new("log.redb");
        let rec = encode_record(&entry(1, 4)).unwrap();
        let err = decode_record(p, 5, &rec).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        for len in 0..RECORD_HEADER_BYTES {
            let err = decode_record(p, 4, &rec[..len]).unwrap_err();
            assert!(err.to_string().contains("torn write"), "{err}");
        }
        let err = decode_record(p, 4, &rec[..rec.len() - 1]).unwrap_err();
        assert!(err.is_corrupt());
    }
}
