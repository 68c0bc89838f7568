//! The state machine on redb (`state.redb`): applies committed entries with
//! [`keel_domain::apply_batch`] into one write transaction that stays open
//! across `apply` calls until it holds [`APPLY_COMMANDS_PER_COMMIT_MAX`]
//! commands or anything else reads or writes the state, and replaces the
//! whole state with a snapshot's in one fsynced transaction. The snapshot
//! files themselves (built, received, installed, exported; the current one
//! named in the state's metadata) are `snapshot_files`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use keel_domain::query::Digester;
use keel_domain::{Applied, Table};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StoredMembership,
};
use redb::{Database, Durability, ReadableDatabase, WriteTransaction};

use crate::error::blocking;
use crate::purge_gate::PurgeGate;
use crate::redb_tables::{
    def, encode_meta, read_meta_in, table_error, write_meta, SnapshotRef, StateReader,
    WriteTxnTables, KEY_APPLIED, KEY_MEMBERSHIP, KEY_SNAPSHOT, SM_META,
};
use crate::snapshot::{self, SnapshotHeader};
use crate::{NodeId, Observer, StoreError, TypeConfig};

mod snapshot_files;

pub(crate) use snapshot_files::sync_dir;
use snapshot_files::Incoming;
pub use snapshot_files::SnapshotExport;

/// In debug builds the full invariant check runs after every `apply` call
/// (and snapshot install) while the state holds at most this many orders.
/// The check rescans every table, so above this it would turn test runs
/// quadratic; release builds never run it on this path.
pub const DEBUG_INVARIANT_CHECK_ORDERS_MAX: u64 = 5_000;
/// `apply` keeps adding entries to one open write transaction and commits
/// it once it holds this many commands, or earlier when anything else
/// reads or writes the state (a query, a digest, a snapshot). One commit
/// per entry cost about a quarter of applying (`keel bench apply --tables
/// redb`), and an insert into a page the same transaction already copied
/// is cheaper than copying it again. Bounds the memory the open
/// transaction holds and the work a crash throws away (replayed from the
/// log).
pub const APPLY_COMMANDS_PER_COMMIT_MAX: u64 = 1024;
/// Every this many commits of applied entries, one is fsynced. Applying
/// needs no fsync for safety (the log is replayed from the last durable
/// commit), but redb frees pages replaced by non-durable commits only at
/// the next durable one, so without this the file would grow by every page
/// every commit touched until the next snapshot (measured with one commit
/// per one-command apply: each grew it by about 50 KiB; 2,000 of them took
/// it from 33 MiB to 129 MiB, while with this limit it stayed at 33 MiB).
/// One fsync per 256 commits is noise next to the log's fsync per append.
pub const APPLY_COMMITS_PER_FSYNC_MAX: u64 = 256;
/// A commit of applied entries is also fsynced once this many commands
/// were committed since the last fsync: with up to
/// [`APPLY_COMMANDS_PER_COMMIT_MAX`] commands a commit, the commit count
/// alone would let the replay after a crash grow to 262,144 commands.
pub const APPLY_COMMANDS_PER_FSYNC_MAX: u64 = 16_384;
/// redb's page cache for the state: large enough that queries and applies
/// of a working set of orders stay in memory, small enough for three nodes
/// on one laptop (redb's default is 1 GiB).
const STATE_CACHE_BYTES: usize = 128 << 20;

/// Applied entries the state database does not hold yet.
enum PendingApply {
    /// Every applied entry is committed.
    None,
    /// Entries applied into `txn`, not yet committed: readers do not see
    /// them until [`StateMachineStore::settle`] commits it.
    Open {
        /// Boxed: the transaction is large next to the other variants.
        txn: Box<WriteTransaction>,
        /// Commands applied into `txn`.
        commands: u64,
        /// The last applied log id the database holds, restored as the
        /// applied one if `txn` is abandoned.
        committed: Option<LogId<NodeId>>,
    },
    /// Committing applied entries failed: the state database is behind what
    /// was reported applied, so it is neither read nor applied to again.
    /// Restarting the node replays the log from the last durable commit.
    Failed(String),
}

struct Inner {
    /// Declared before `db` so an open transaction is dropped (aborted)
    /// before the database it belongs to.
    pending: Mutex<PendingApply>,
    db: Database,
    path: PathBuf,
    snap_dir: PathBuf,
    applied: RwLock<Option<LogId<NodeId>>>,
    apply_observer: RwLock<Option<Observer>>,
    /// Serialises building, installing and opening snapshots, so the current
    /// snapshot file never changes under one of them.
    snapshot_lock: Mutex<()>,
    /// Names new snapshot files; starts above the current snapshot's.
    next_seq: AtomicU64,
    incoming: Mutex<Vec<Incoming>>,
    commits_since_fsync: AtomicU64,
    commands_since_fsync: AtomicU64,
    /// Advanced after each fsynced commit that holds a snapshot's index;
    /// the log store purges only behind it.
    purge_gate: PurgeGate,
}

impl Drop for Inner {
    /// Commits (fsynced) the entries applied but not yet committed when
    /// the last handle goes, so the next start has less of the log to
    /// replay. Nothing is lost if this fails or never runs (a
    /// crash): the log replays them.
    fn drop(&mut self) {
        let pending = match self.pending.get_mut() {
            Ok(p) => std::mem::replace(p, PendingApply::None),
            Err(_) => return,
        };
        if let PendingApply::Open { txn, .. } = pending {
            if let Err(e) = txn.commit() {
                tracing::warn!(error = %e, "could not commit applied entries at close; the log replays them");
            }
        }
    }
}

/// The state-machine store. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

/// Opens the state database and walks every page of it against its
/// checksum before anything reads it. redb checks checksums only when it
/// recovers from a crash: a page damaged on disk after a clean close is
/// otherwise read as it is, so a node would serve whatever it now says (or
/// redb panics on it). The walk reads the whole file once per start; the
/// log is checked record by record instead ([`crate::LogStore::open`]).
fn open_verified(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    // redb may panic on a page it cannot parse while it opens the file; a
    // panic here is damage in this file, reported as such.
    let opened = std::panic::catch_unwind(|| -> Result<Database, StoreError> {
        let mut db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| StoreError::db(path, e))?;
        match db.check_integrity() {
            Ok(true) => Ok(db),
            // redb repaired the file by going back to an earlier commit or
            // rebuilding its page allocator: something on disk was not what
            // redb wrote. The state may still be whole, but nothing says so.
            Ok(false) => Err(StoreError::corrupt(
                path,
                "database pages",
                "pages failed their checksums (redb rolled the file back to an earlier commit)",
            )),
            Err(e) => Err(StoreError::db(path, e)),
        }
    });
    opened.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(StoreError::corrupt(
            path,
            "database pages",
            format!("redb could not read the file: {what}"),
        ))
    })
}

impl StateMachineStore {
    /// Opens (creating if needed) the state database at `path` with its
    /// snapshots in `snap_dir`. Checks that the metadata and the domain
    /// summary decode and that the current snapshot file exists, and
    /// removes files left in `snap_dir` by an interrupted build or receive.
    pub fn open(path: &Path, snap_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, snap_dir, STATE_CACHE_BYTES)
    }

    /// [`open`](Self::open) with a redb page cache of `cache_bytes`: a
    /// restore, which writes a whole state in one transaction with no node
    /// beside it, gives redb room to keep it in memory.
    pub(crate) fn open_with_cache(
        path: &Path,
        snap_dir: &Path,
        cache_bytes: usize,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(snap_dir).map_err(|e| StoreError::io(snap_dir, e))?;
        let db = open_verified(path, cache_bytes)?;
        let mut txn = db.begin_write().map_err(|e| StoreError::db(path, e))?;
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError::db(path, e))?;
        WriteTxnTables::open(&txn).map_err(|e| StoreError::db(path, e))?;
        txn.open_table(SM_META)
            .map_err(|e| StoreError::db(path, e))?;
        // Creating empty tables needs no fsync: if lost, the next open
        // creates them again.
        txn.commit().map_err(|e| StoreError::db(path, e))?;

        let s = Self {
            inner: Arc::new(Inner {
                pending: Mutex::new(PendingApply::None),
                db,
                path: path.to_path_buf(),
                snap_dir: snap_dir.to_path_buf(),
                applied: RwLock::new(None),
                apply_observer: RwLock::new(None),
                snapshot_lock: Mutex::new(()),
                next_seq: AtomicU64::new(1),
                incoming: Mutex::new(Vec::new()),
                commits_since_fsync: AtomicU64::new(0),
                commands_since_fsync: AtomicU64::new(0),
                purge_gate: PurgeGate::new(None),
            }),
        };
        let r = s.reader()?;
        let applied = r.applied()?;
        // What is on disk at open is durable.
        s.inner.purge_gate.advance(applied.map(|l| l.index));
        r.membership()?;
        keel_domain::apply::load_summary(&r).map_err(|e| table_error(path, e))?;
        let current = r.snapshot_ref()?;
        drop(r);
        *crate::sync::write(&s.inner.applied) = applied;
        if let Some(c) = &current {
            s.inner
                .next_seq
                .store(c.seq.saturating_add(1), Ordering::Relaxed);
            let p = snap_dir.join(&c.file);
            if !p.is_file() {
                return Err(StoreError::corrupt(
                    &p,
                    "snapshot directory",
                    "the current snapshot file is missing",
                ));
            }
        }
        s.remove_snapshot_files_except(current.as_ref().map(|c| c.file.as_str()))?;
        Ok(s)
    }

    /// A consistent read view of the state (one redb read transaction),
    /// implementing [`keel_domain::ReadTables`]. It holds every entry
    /// applied before the call.
    pub fn reader(&self) -> Result<StateReader, StoreError> {
        drop(self.settle()?);
        self.begin_reader()
    }

    /// [`reader`](Self::reader) for async callers: at once when it needs
    /// neither a commit nor a wait for an `apply` in progress, else on the
    /// blocking pool, so neither stalls the runtime's workers.
    pub async fn reader_async(&self) -> Result<StateReader, StoreError> {
        if let Ok(g) = self.inner.pending.try_lock() {
            if matches!(*g, PendingApply::None) {
                drop(g);
                return self.begin_reader();
            }
        }
        let me = self.clone();
        blocking(&self.inner.path, move || me.reader()).await
    }

    fn begin_reader(&self) -> Result<StateReader, StoreError> {
        let txn = self
            .inner
            .db
            .begin_read()
            .map_err(|e| StoreError::db(&self.inner.path, e))?;
        StateReader::new(txn, &self.inner.path)
    }

    /// The last applied log id (`None` if nothing was applied), from memory.
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        *crate::sync::read(&self.inner.applied)
    }

    /// Commands applied but not yet committed to the state database (they
    /// are committed before anything reads the state), for diagnostics and
    /// tests; 0 if the lock is poisoned or a commit failed.
    pub fn uncommitted_commands(&self) -> u64 {
        match self.inner.pending.lock().as_deref() {
            Ok(PendingApply::Open { commands, .. }) => *commands,
            _ => 0,
        }
    }

    /// Sets a callback that observes each `apply` call's duration.
    pub fn set_apply_observer(&self, f: Observer) {
        *crate::sync::write(&self.inner.apply_observer) = Some(f);
    }

    /// The state database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The snapshot directory.
    pub fn snapshot_dir(&self) -> &Path {
        &self.inner.snap_dir
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::db(&self.inner.path, e)
    }

    /// The gate the node's log store purges behind: this state's durable
    /// reach.
    pub(crate) fn purge_gate(&self) -> PurgeGate {
        self.inner.purge_gate.clone()
    }

    fn set_applied(&self, applied: Option<LogId<NodeId>>) {
        *crate::sync::write(&self.inner.applied) = applied;
    }

    /// Applies `entries` into the open write transaction (beginning one if
    /// none is open) and commits it once it holds
    /// [`APPLY_COMMANDS_PER_COMMIT_MAX`] commands. `at` tracks the entry
    /// being applied, for the error report.
    fn apply_entries(
        &self,
        entries: Vec<Entry<TypeConfig>>,
        at: &mut Option<LogId<NodeId>>,
    ) -> Result<Vec<Vec<Applied>>, StoreError> {
        let path = &self.inner.path;
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        // Pair assertion: the log hands each entry over once, in order.
        let mut prev = self.last_applied();
        for e in &entries {
            if prev.is_some_and(|p| e.log_id.index <= p.index) {
                *at = Some(e.log_id);
                return Err(StoreError::other(
                    path,
                    format!(
                        "asked to apply {} after {}",
                        e.log_id,
                        prev.map_or(String::new(), |p| p.to_string())
                    ),
                ));
            }
            prev = Some(e.log_id);
        }

        let mut pending = self.lock_pending()?;
        let (txn, held, committed) = match std::mem::replace(&mut *pending, PendingApply::None) {
            PendingApply::Open {
                txn,
                commands,
                committed,
            } => (txn, commands, committed),
            PendingApply::None => {
                let txn = self.inner.db.begin_write().map_err(|e| self.err(e))?;
                (Box::new(txn), 0, self.last_applied())
            }
            PendingApply::Failed(reason) => {
                let e = self.failed(&reason);
                *pending = PendingApply::Failed(reason);
                return Err(e);
            }
        };
        match self.apply_into(&txn, entries, at) {
            Ok((out, commands)) => {
                self.set_applied(Some(last));
                let commands = held.saturating_add(commands);
                if commands >= APPLY_COMMANDS_PER_COMMIT_MAX {
                    self.commit_applied(&mut pending, txn, commands)?;
                } else {
                    *pending = PendingApply::Open {
                        txn,
                        commands,
                        committed,
                    };
                }
                Ok(out)
            }
            Err(e) => {
                // Dropping the transaction aborts it, with the entries
                // applied into it by earlier calls: the state is back at
                // its last commit, and so is the applied log id. openraft
                // stops the node on this error; a restart replays the log.
                drop(txn);
                self.set_applied(committed);
                Err(e)
            }
        }
    }

    /// Applies `entries` inside `txn`, with the applied log id and any new
    /// membership. Returns each entry's results and the number of commands.
    fn apply_into(
        &self,
        txn: &WriteTransaction,
        entries: Vec<Entry<TypeConfig>>,
        at: &mut Option<LogId<NodeId>>,
    ) -> Result<(Vec<Vec<Applied>>, u64), StoreError> {
        let path = &self.inner.path;
        let mut last = None;
        let mut commands = 0u64;
        let mut out = Vec::with_capacity(entries.len());
        let mut membership: Option<StoredMembership<NodeId, BasicNode>> = None;
        {
            let mut tables = WriteTxnTables::open(txn).map_err(|e| self.err(e))?;
            for e in entries {
                *at = Some(e.log_id);
                last = Some(e.log_id);
                // An entry without commands still counts one, so blank and
                // membership entries also bound the open transaction.
                let weight = match &e.payload {
                    EntryPayload::Normal(batch) => batch.commands.len().max(1),
                    _ => 1,
                };
                commands = commands.saturating_add(weight as u64);
                match e.payload {
                    EntryPayload::Blank => out.push(Vec::new()),
                    EntryPayload::Normal(batch) => {
                        let r = keel_domain::apply_batch(&mut tables, &batch)
                            .map_err(|err| table_error(path, err))?;
                        out.push(r);
                    }
                    EntryPayload::Membership(m) => {
                        membership = Some(StoredMembership::new(Some(e.log_id), m));
                        out.push(Vec::new());
                    }
                }
            }
            #[cfg(debug_assertions)]
            debug_check(&tables, path, "after apply")?;
        }
        let mut meta = vec![(KEY_APPLIED, encode_meta(&last))];
        if let Some(m) = &membership {
            meta.push((KEY_MEMBERSHIP, encode_meta(m)));
        }
        write_meta(txn, path, &meta)?;
        Ok((out, commands))
    }

    fn lock_pending(&self) -> Result<MutexGuard<'_, PendingApply>, StoreError> {
        self.inner
            .pending
            .lock()
            .map_err(|_| StoreError::other(&self.inner.path, "applied-entries lock poisoned"))
    }

    fn failed(&self, reason: &str) -> StoreError {
        StoreError::other(
            &self.inner.path,
            format!(
                "an earlier commit of applied entries failed ({reason}); \
                 restart the node to replay them from the log"
            ),
        )
    }

    /// Commits `txn`, which holds `commands` applied commands. Not fsynced
    /// unless a fsync limit is reached (APPLY_COMMITS_PER_FSYNC_MAX,
    /// APPLY_COMMANDS_PER_FSYNC_MAX): after a crash redb recovers to its
    /// last durable commit, which holds the applied log id of exactly the
    /// state it holds, and openraft re-applies the log from there. The log
    /// is never purged past the last snapshot, and a snapshot is only
    /// reported after a durable commit covering it. A failure leaves
    /// `slot` failed: the entries were reported applied but are lost.
    fn commit_applied(
        &self,
        slot: &mut PendingApply,
        mut txn: Box<WriteTransaction>,
        commands: u64,
    ) -> Result<(), StoreError> {
        let commits = self
            .inner
            .commits_since_fsync
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let since = self
            .inner
            .commands_since_fsync
            .fetch_add(commands, Ordering::Relaxed)
            .saturating_add(commands);
        let fsync = commits >= APPLY_COMMITS_PER_FSYNC_MAX || since >= APPLY_COMMANDS_PER_FSYNC_MAX;
        let committed = txn
            .set_durability(if fsync {
                Durability::Immediate
            } else {
                Durability::None
            })
            .map_err(|e| self.err(e))
            .and_then(|()| txn.commit().map_err(|e| self.err(e)));
        match committed {
            Ok(()) => {
                if fsync {
                    self.durable_commit_made();
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "committing applied entries failed");
                *slot = PendingApply::Failed(e.to_string());
                Err(e)
            }
        }
    }

    /// Commits the entries applied but not yet committed, so the state
    /// database holds everything applied. Returns the lock on the pending
    /// entries: while it is held, no `apply` can open a write transaction.
    fn settle(&self) -> Result<MutexGuard<'_, PendingApply>, StoreError> {
        let mut slot = self.lock_pending()?;
        match std::mem::replace(&mut *slot, PendingApply::None) {
            PendingApply::None => {}
            PendingApply::Open { txn, commands, .. } => {
                self.commit_applied(&mut slot, txn, commands)?;
            }
            PendingApply::Failed(reason) => {
                let e = self.failed(&reason);
                *slot = PendingApply::Failed(reason);
                return Err(e);
            }
        }
        Ok(slot)
    }

    /// A write transaction for something other than applying entries,
    /// after committing the applied ones. It is begun while the pending
    /// entries' lock is held, so an `apply` cannot open one first and keep
    /// it open; an `apply` that comes later waits in redb until this
    /// transaction ends. So the caller must not read or apply while it
    /// holds the transaction.
    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let settled = self.settle()?;
        let txn = self.inner.db.begin_write().map_err(|e| self.err(e));
        drop(settled);
        txn
    }

    /// Resets the fsync counters after a durable commit: it made every
    /// earlier commit durable too.
    fn durable_commit_made(&self) {
        self.inner.commits_since_fsync.store(0, Ordering::Relaxed);
        self.inner.commands_since_fsync.store(0, Ordering::Relaxed);
    }

    /// Replaces every table, the applied log id and the membership with the
    /// snapshot read from `reader` (named `source` in errors), verified as
    /// it streams, in one fsynced transaction; with `current`, that
    /// transaction also names it the current snapshot. `digest`, if given,
    /// is fed every row on the way. `before_commit` sees the header once
    /// the whole stream has been read and verified, and can still refuse
    /// it. Returns the header and the snapshot it replaced.
    fn replace_state_with(
        &self,
        source: &Path,
        reader: impl Read,
        current: Option<&SnapshotRef>,
        mut digest: Option<&mut Digester>,
        before_commit: impl FnOnce(&SnapshotHeader) -> Result<(), StoreError>,
    ) -> Result<(SnapshotHeader, Option<SnapshotRef>), StoreError> {
        let path = &self.inner.path;
        let mut txn = self.begin_write()?;
        // One fsynced transaction replaces every table, the applied log id,
        // the membership and the current snapshot's name: a crash before the
        // commit leaves the old state and snapshot, after it the new ones.
        // fsynced because openraft purges the log up to the snapshot next
        // (and a restore reports the state written once this returns).
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        let old = read_meta_in::<SnapshotRef>(&txn, path, KEY_SNAPSHOT)?;
        for t in Table::ALL {
            txn.delete_table(def(t)).map_err(|e| self.err(e))?;
        }
        let header = {
            let mut tables = WriteTxnTables::open(&txn).map_err(|e| self.err(e))?;
            // The stream is checked as it is read, and any error drops the
            // transaction uncommitted.
            let header = snapshot::read_from(source, reader, |t, k, v| {
                if let Some(d) = digest.as_deref_mut() {
                    d.row(t, k, v);
                }
                keel_domain::WriteTables::put(&mut tables, t, k, v)
                    .map_err(|e| table_error(path, e))
            })?;
            #[cfg(debug_assertions)]
            debug_check(&tables, path, "after installing a snapshot")?;
            header
        };
        before_commit(&header)?;
        let mut meta = vec![
            (KEY_APPLIED, encode_meta(&header.last_log_id)),
            (KEY_MEMBERSHIP, encode_meta(&header.membership)),
        ];
        if let Some(c) = current {
            meta.push((KEY_SNAPSHOT, encode_meta(c)));
        }
        write_meta(&txn, path, &meta)?;
        txn.commit().map_err(|e| self.err(e))?;
        self.durable_commit_made();
        self.set_applied(header.last_log_id);
        self.inner
            .purge_gate
            .advance(header.last_log_id.map(|l| l.index));
        Ok((header, old))
    }

    /// Seeding a restore: the state becomes the snapshot read from
    /// `reader`, checked as it streams (a damaged stream changes nothing),
    /// committed only if `before_commit` agrees once all of it was read.
    /// Returns the header and the state's digest, taken on the way.
    pub(crate) fn load_snapshot_stream(
        &self,
        source: &Path,
        reader: impl Read,
        before_commit: impl FnOnce(&SnapshotHeader) -> Result<(), StoreError>,
    ) -> Result<(SnapshotHeader, [u8; 32]), StoreError> {
        let _guard = self.lock_snapshots()?;
        let mut digester = Digester::new();
        let (header, _) =
            self.replace_state_with(source, reader, None, Some(&mut digester), before_commit)?;
        // The rows came in the header's table order; the digest walks
        // `Table::ALL`. A file written by another table order (an older
        // build) is digested by reading the state back.
        let in_digest_order = header
            .tables
            .iter()
            .map(String::as_str)
            .eq(Table::ALL.iter().map(|t| t.name()));
        let digest = if in_digest_order {
            digester.finish()
        } else {
            self.reader()?.digest()?
        };
        Ok((header, digest))
    }

    /// Seeding a restore: applies entries that must follow the applied log
    /// id without a gap.
    pub(crate) fn apply_restored(&self, entries: Vec<Entry<TypeConfig>>) -> Result<(), StoreError> {
        let mut next = self.last_applied().map_or(0, |l| l.index.saturating_add(1));
        for e in &entries {
            if e.log_id.index != next {
                return Err(StoreError::other(
                    &self.inner.path,
                    format!("restore expected log index {next}, got {}", e.log_id),
                ));
            }
            next = next.saturating_add(1);
        }
        let mut at = None;
        self.apply_entries(entries, &mut at).map(|_| ())
    }

    /// Adopting a restored state into a new cluster: replaces the membership
    /// (fsynced) and makes a snapshot of the result current, so the node
    /// can serve it to peers and its log can start empty behind it.
    pub(crate) fn adopt_membership(
        &self,
        membership: StoredMembership<NodeId, BasicNode>,
    ) -> Result<SnapshotMeta<NodeId, BasicNode>, StoreError> {
        let path = &self.inner.path;
        let mut txn = self.begin_write()?;
        // fsynced: the node will start from this membership.
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        write_meta(&txn, path, &[(KEY_MEMBERSHIP, encode_meta(&membership))])?;
        txn.commit().map_err(|e| self.err(e))?;
        Ok(self.build()?.0)
    }

    /// A durable commit of everything applied so far.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        let mut txn = self.begin_write()?;
        // fsync: a durable redb commit makes every earlier commit durable.
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))?;
        self.durable_commit_made();
        Ok(())
    }
}

#[cfg(debug_assertions)]
fn debug_check(tables: &WriteTxnTables<'_>, path: &Path, when: &str) -> Result<(), StoreError> {
    // A node started with a deliberate bug that breaks the invariants must
    // keep serving, so the chaos checkers are what sees it.
    use keel_domain::test_bugs::{on, TestBug};
    if on(TestBug::Oversell) || on(TestBug::FreePayment) || on(TestBug::SkipIdempotency) {
        return Ok(());
    }
    let s = keel_domain::apply::load_summary(tables).map_err(|e| table_error(path, e))?;
    let orders: u64 = s.orders_by_status.values().sum();
    if orders > DEBUG_INVARIANT_CHECK_ORDERS_MAX {
        return Ok(());
    }
    let v = keel_domain::check_invariants(tables).map_err(|e| table_error(path, e))?;
    if v.is_empty() {
        return Ok(());
    }
    Err(StoreError::corrupt(
        path,
        format!("state {when}"),
        format!("invariants violated: {v:?}"),
    ))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let me = self.clone();
        let (meta, f) = blocking(&self.inner.snap_dir, move || me.build())
            .await
            .map_err(|e| e.write_snapshot())?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(f)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let r = self.reader().map_err(|e| e.read_state_machine())?;
        Ok((
            r.applied().map_err(|e| e.read_state_machine())?,
            r.membership().map_err(|e| e.read_state_machine())?,
        ))
    }

    /// Applies the entries (see [`APPLY_COMMANDS_PER_COMMIT_MAX`] for when
    /// they are committed) and returns each entry's results (empty for blank and membership entries). A storage error or
    /// corruption is returned, never a panic; openraft then stops the node.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Applied>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let start = Instant::now();
        let entries: Vec<_> = entries.into_iter().collect();
        let me = self.clone();
        let res = blocking(&self.inner.path, move || {
            let mut at = None;
            Ok(me.apply_entries(entries, &mut at).map_err(|e| (e, at)))
        })
        .await;
        {
            if let Some(f) = crate::sync::read(&self.inner.apply_observer).as_ref() {
                f(start.elapsed());
            }
        }
        match res {
            Ok(Ok(out)) => Ok(out),
            Ok(Err((e, at))) => Err(e.apply(at)),
            Err(e) => Err(e.apply(None)),
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let me = self.clone();
        let f = blocking(&self.inner.snap_dir, move || me.begin_receiving())
            .await
            .map_err(|e| e.write_snapshot())?;
        Ok(Box::new(tokio::fs::File::from_std(f)))
    }

    /// Verifies the received file in full, then replaces the state with it
    /// in one fsynced transaction. A damaged or mismatched snapshot is
    /// refused and the state left as it was.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        use tokio::io::AsyncWriteExt;
        let mut f = *snapshot;
        // Completes any write tokio still has in flight on the handle.
        f.flush()
            .await
            .map_err(|e| StoreError::io(&self.inner.snap_dir, e).write_snapshot())?;
        let f = f.into_std().await;
        let me = self.clone();
        let meta = meta.clone();
        blocking(&self.inner.snap_dir, move || me.install(&meta, f))
            .await
            .map_err(|e| e.write_snapshot())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let me = self.clone();
        let current = blocking(&self.inner.snap_dir, move || me.current_snapshot())
            .await
            .map_err(|e| e.read_snapshot())?;
        Ok(current.map(|(meta, f)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(f)),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // A failed unwrap is a failed test.

    use keel_domain::{
        Batch, Command, Currency, Envelope, Minor, Principal, ProductName, RequestId, Sku,
    };
    use openraft::CommittedLeaderId;

    use super::*;

    fn entry(index: u64, n: usize, command: Command) -> Entry<TypeConfig> {
        let env = Envelope {
            request_id: RequestId::new(format!("req-{n}")).unwrap(),
            principal: Principal::Admin,
            origin: None,
            command,
        };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Batch {
                leader_time_ms: 1_700_000_000_000,
                commands: vec![env],
            }),
        }
    }

    fn restock(sku: &str, qty: u64) -> Command {
        Command::Restock {
            sku: Sku::new(sku).unwrap(),
            qty,
        }
    }

    fn on_hand(sm: &StateMachineStore, sku: &str) -> u64 {
        let r = sm.reader().unwrap();
        keel_domain::query::product(&r, &Sku::new(sku).unwrap())
            .unwrap()
            .expect("product")
            .stock
            .on_hand
    }

    #[test]
    fn a_failed_apply_abandons_the_uncommitted_entries_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachineStore::open(&dir.path().join("state.redb"), &dir.path().join("snap"))
            .unwrap();
        let mut at = None;
        let shop = ["A", "B"].iter().enumerate().flat_map(|(i, sku)| {
            let upsert = Command::UpsertProduct {
                sku: Sku::new(*sku).unwrap(),
                name: ProductName::new(format!("product {sku}")).unwrap(),
                price: Minor(100),
                currency: Currency::new("EUR").unwrap(),
                active: true,
            };
            let base = 2 * i as u64;
            [
                entry(base, 2 * i, upsert),
                entry(base + 1, 2 * i + 1, restock(sku, 10)),
            ]
        });
        sm.apply_entries(shop.collect(), &mut at).unwrap();
        let committed = sm.reader().unwrap().applied().unwrap();
        assert_eq!(committed.map(|l| l.index), Some(3));

        sm.apply_entries(vec![entry(4, 4, restock("B", 5))], &mut at)
            .unwrap();
        assert_eq!(sm.uncommitted_commands(), 1);
        // Fault injection: product A's row turns to garbage inside the open
        // transaction, where the next apply meets it.
        if let PendingApply::Open { txn, .. } = &*sm.lock_pending().unwrap() {
            txn.open_table(def(Table::Products))
                .unwrap()
                .insert(b"A".as_slice(), b"garbage".as_slice())
                .unwrap();
        } else {
            panic!("the restock of B should wait in an open transaction");
        }
        let err = sm
            .apply_entries(vec![entry(5, 5, restock("A", 1))], &mut at)
            .unwrap_err();
        assert!(err.to_string().contains("table products"), "{err}");

        // The restock of B shared the abandoned transaction: the state and
        // the applied id are back at the last commit, for openraft to
        // replay from after a restart.
        assert_eq!(sm.uncommitted_commands(), 0);
        assert_eq!(sm.last_applied(), committed);
        assert_eq!(sm.reader().unwrap().applied().unwrap(), committed);
        assert_eq!(on_hand(&sm, "B"), 10);
        assert_eq!(on_hand(&sm, "A"), 10, "the garbage was never committed");
    }
}
