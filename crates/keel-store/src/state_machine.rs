//! The state machine on redb: applies committed entries with
//! `keel_domain::apply_batch`, one write transaction per `apply` call, and
//! builds and installs snapshots.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use keel_domain::{Applied, Table};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StoredMembership,
};
use redb::{Database, Durability, ReadableTable};

use crate::redb_tables::{def, StateReader, WriteTxnTables, KEY_APPLIED, KEY_MEMBERSHIP, SM_META};
use crate::snapshot::{self, SnapshotHeader, SnapshotWriter};
use crate::{sm_read_err, sm_write_err, NodeId, Observer, StoreError, TypeConfig};

/// In debug builds the full invariant check runs after every apply while
/// the state holds at most this many orders; above it the O(state) scan
/// would dominate test run time. Release builds never run it on this path.
pub const DEBUG_INVARIANT_CHECK_ORDERS_MAX: u64 = 5_000;
const CURRENT: &str = "current.snap";

struct Inner {
    db: Database,
    path: PathBuf,
    snap_dir: PathBuf,
    applied: RwLock<Option<LogId<NodeId>>>,
    apply_observer: RwLock<Option<Observer>>,
    snapshot_lock: Mutex<()>,
    snapshot_seq: AtomicU64,
}

/// The state-machine store. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

impl StateMachineStore {
    /// Opens the state database and checks its metadata decodes.
    pub fn open(path: &Path, snap_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(snap_dir).map_err(|e| StoreError::io(snap_dir, e))?;
        let db = Database::create(path).map_err(|e| StoreError::Corrupt {
            file: path.to_path_buf(),
            location: "database header".into(),
            detail: format!("redb cannot open it: {e}"),
        })?;
        let s = Self {
            inner: Arc::new(Inner {
                db,
                path: path.to_path_buf(),
                snap_dir: snap_dir.to_path_buf(),
                applied: RwLock::new(None),
                apply_observer: RwLock::new(None),
                snapshot_lock: Mutex::new(()),
                snapshot_seq: AtomicU64::new(0),
            }),
        };
        let r = s.reader()?;
        let applied = r.applied()?;
        r.membership()?;
        if let Ok(mut a) = s.inner.applied.write() {
            *a = applied;
        }
        // Remove half-received snapshots left by a crash.
        if let Ok(dir) = std::fs::read_dir(snap_dir) {
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with("incoming-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(s)
    }

    /// A consistent read view of the state.
    pub fn reader(&self) -> Result<StateReader, StoreError> {
        let txn = self
            .inner
            .db
            .begin_read()
            .map_err(|e| StoreError::db(&self.inner.path, e))?;
        Ok(StateReader {
            txn,
            path: self.inner.path.clone(),
        })
    }

    /// The last applied log id (from memory).
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.inner.applied.read().ok().and_then(|a| *a)
    }

    /// Sets a callback that observes each apply call's duration.
    pub fn set_apply_observer(&self, f: Observer) {
        if let Ok(mut o) = self.inner.apply_observer.write() {
            *o = Some(f);
        }
    }

    fn apply_entries(
        &self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<Vec<Applied>>, StoreError> {
        let path = &self.inner.path;
        let mut txn = self
            .inner
            .db
            .begin_write()
            .map_err(|e| StoreError::db(path, e))?;
        // Not fsynced: after a crash redb comes back at its last durable
        // commit, whose applied id is stored alongside, and openraft
        // re-applies the log from there. The log is only purged behind a
        // snapshot, and a snapshot first makes the state durable.
        txn.set_durability(Durability::None);
        let mut out = Vec::with_capacity(entries.len());
        let mut last: Option<LogId<NodeId>> = None;
        let mut membership: Option<StoredMembership<NodeId, BasicNode>> = None;
        {
            let mut tables = WriteTxnTables::open(&txn).map_err(|e| StoreError::db(path, e))?;
            for e in entries {
                last = Some(e.log_id);
                match e.payload {
                    EntryPayload::Blank => out.push(Vec::new()),
                    EntryPayload::Normal(batch) => {
                        let r = keel_domain::apply_batch(&mut tables, &batch).map_err(|err| {
                            StoreError::Corrupt {
                                file: path.clone(),
                                location: format!("applying log index {}", e.log_id.index),
                                detail: err.to_string(),
                            }
                        })?;
                        out.push(r);
                    }
                    EntryPayload::Membership(m) => {
                        membership = Some(StoredMembership::new(Some(e.log_id), m));
                        out.push(Vec::new());
                    }
                }
            }
            #[cfg(debug_assertions)]
            debug_check(&tables, path)?;
        }
        {
            let mut meta = txn
                .open_table(SM_META)
                .map_err(|e| StoreError::db(path, e))?;
            meta.insert(KEY_APPLIED, keel_domain::codec::encode(&last).as_slice())
                .map_err(|e| StoreError::db(path, e))?;
            if let Some(m) = &membership {
                meta.insert(KEY_MEMBERSHIP, keel_domain::codec::encode(m).as_slice())
                    .map_err(|e| StoreError::db(path, e))?;
            }
        }
        txn.commit().map_err(|e| StoreError::db(path, e))?;
        if let (Some(l), Ok(mut a)) = (last, self.inner.applied.write()) {
            *a = Some(l);
        }
        Ok(out)
    }

    /// Makes every applied commit durable (an empty fsynced commit).
    fn make_durable(&self) -> Result<(), StoreError> {
        let path = &self.inner.path;
        let mut txn = self
            .inner
            .db
            .begin_write()
            .map_err(|e| StoreError::db(path, e))?;
        txn.set_durability(Durability::Immediate);
        txn.commit().map_err(|e| StoreError::db(path, e))
    }

    fn current_path(&self) -> PathBuf {
        self.inner.snap_dir.join(CURRENT)
    }

    fn build(&self) -> Result<SnapshotHeader, StoreError> {
        let _guard = self
            .inner
            .snapshot_lock
            .lock()
            .map_err(|_| StoreError::db(&self.inner.path, "snapshot lock poisoned"))?;
        // The snapshot may let the log be purged up to its index, so the
        // state it covers must survive a crash first.
        self.make_durable()?;
        let r = self.reader()?;
        let last = r.applied()?;
        let seq = self.inner.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let header = SnapshotHeader {
            snapshot_id: format!(
                "{}-{}-{}",
                last.map_or(0, |l| l.leader_id.term),
                last.map_or(0, |l| l.index),
                seq
            ),
            last_log_id: last,
            membership: r.membership()?,
        };
        let tmp = self.inner.snap_dir.join(format!("building-{seq}.snap"));
        let file = std::fs::File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let mut w = SnapshotWriter::create(file, &header).map_err(|e| StoreError::io(&tmp, e))?;
        for t in Table::ALL {
            let table = match r.txn.open_table(def(t)) {
                Ok(x) => x,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(StoreError::db(&self.inner.path, e)),
            };
            for row in table
                .iter()
                .map_err(|e| StoreError::db(&self.inner.path, e))?
            {
                let (k, v) = row.map_err(|e| StoreError::db(&self.inner.path, e))?;
                w.row(t, k.value(), v.value())
                    .map_err(|e| StoreError::io(&tmp, e))?;
            }
        }
        w.finish().map_err(|e| StoreError::io(&tmp, e))?;
        self.publish(&tmp)?;
        Ok(header)
    }

    /// Atomically makes `file` the current snapshot (rename + dir fsync).
    fn publish(&self, file: &Path) -> Result<(), StoreError> {
        let cur = self.current_path();
        std::fs::rename(file, &cur).map_err(|e| StoreError::io(&cur, e))?;
        let dir = std::fs::File::open(&self.inner.snap_dir)
            .map_err(|e| StoreError::io(&self.inner.snap_dir, e))?;
        dir.sync_all()
            .map_err(|e| StoreError::io(&self.inner.snap_dir, e))
    }

    fn install(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        file: &Path,
    ) -> Result<(), StoreError> {
        let _guard = self
            .inner
            .snapshot_lock
            .lock()
            .map_err(|_| StoreError::db(&self.inner.path, "snapshot lock poisoned"))?;
        // Verify the whole file before touching the state.
        let header = snapshot::read(file, |_, _, _| Ok(()))?;
        if header.last_log_id != meta.last_log_id {
            return Err(StoreError::Corrupt {
                file: file.to_path_buf(),
                location: "snapshot header".into(),
                detail: format!(
                    "covers {:?}, leader announced {:?}",
                    header.last_log_id, meta.last_log_id
                ),
            });
        }
        let path = &self.inner.path;
        let mut txn = self
            .inner
            .db
            .begin_write()
            .map_err(|e| StoreError::db(path, e))?;
        // One fsynced transaction: a crash mid-install leaves the old state.
        txn.set_durability(Durability::Immediate);
        for t in Table::ALL {
            txn.delete_table(def(t))
                .map_err(|e| StoreError::db(path, e))?;
        }
        {
            let mut tables = WriteTxnTables::open(&txn).map_err(|e| StoreError::db(path, e))?;
            snapshot::read(file, |t, k, v| {
                keel_domain::WriteTables::put(&mut tables, t, k, v)
                    .map_err(|e| StoreError::db(path, e))
            })?;
        }
        {
            let mut m = txn
                .open_table(SM_META)
                .map_err(|e| StoreError::db(path, e))?;
            m.insert(
                KEY_APPLIED,
                keel_domain::codec::encode(&header.last_log_id).as_slice(),
            )
            .map_err(|e| StoreError::db(path, e))?;
            m.insert(
                KEY_MEMBERSHIP,
                keel_domain::codec::encode(&header.membership).as_slice(),
            )
            .map_err(|e| StoreError::db(path, e))?;
        }
        txn.commit().map_err(|e| StoreError::db(path, e))?;
        if let Ok(mut a) = self.inner.applied.write() {
            *a = header.last_log_id;
        }
        self.publish(file)
    }

    async fn open_current(&self) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
        let cur = self.current_path();
        if !cur.exists() {
            return Ok(None);
        }
        let header = snapshot::read(&cur, |_, _, _| Ok(()))?;
        let f = tokio::fs::File::open(&cur)
            .await
            .map_err(|e| StoreError::io(&cur, e))?;
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                last_log_id: header.last_log_id,
                last_membership: header.membership,
                snapshot_id: header.snapshot_id,
            },
            snapshot: Box::new(f),
        }))
    }
}

#[cfg(debug_assertions)]
fn debug_check(tables: &WriteTxnTables<'_>, path: &Path) -> Result<(), StoreError> {
    let s = keel_domain::apply::load_summary(tables).map_err(|e| StoreError::db(path, e))?;
    if s.next_order_id > DEBUG_INVARIANT_CHECK_ORDERS_MAX {
        return Ok(());
    }
    let v = keel_domain::check_invariants(tables).map_err(|e| StoreError::db(path, e))?;
    if v.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            file: path.to_path_buf(),
            location: "state after apply".into(),
            detail: format!("invariants violated: {v:?}"),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.build())
            .await
            .map_err(sm_write_err)?
            .map_err(|e| crate::se::write_snapshot(None, crate::any(e)))?;
        self.open_current()
            .await
            .map_err(|e| crate::se::read_snapshot(None, crate::any(e)))?
            .ok_or_else(|| crate::se::read_snapshot(None, crate::any("snapshot vanished")))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let r = self.reader().map_err(sm_read_err)?;
        Ok((
            r.applied().map_err(sm_read_err)?,
            r.membership().map_err(sm_read_err)?,
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Applied>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let start = Instant::now();
        let entries: Vec<_> = entries.into_iter().collect();
        let res = self.apply_entries(entries).map_err(sm_write_err);
        if let Ok(o) = self.inner.apply_observer.read() {
            if let Some(f) = o.as_ref() {
                f(start.elapsed());
            }
        }
        res
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        let seq = self.inner.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let p = self
            .inner
            .snap_dir
            .join(format!("incoming-{seq}-{}.snap", std::process::id()));
        let f = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .await
            .map_err(|e| {
                crate::se::write_snapshot(None, crate::any(format!("{}: {e}", p.display())))
            })?;
        if let Ok(mut g) = INCOMING.lock() {
            g.push((Arc::as_ptr(&self.inner) as usize, p));
        }
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        use tokio::io::AsyncWriteExt;
        let mut f = *snapshot;
        f.flush().await.map_err(sm_write_err)?;
        f.sync_all().await.map_err(sm_write_err)?;
        drop(f);
        let key = Arc::as_ptr(&self.inner) as usize;
        let path = INCOMING
            .lock()
            .ok()
            .and_then(|mut g| {
                g.iter()
                    .rposition(|(k, _)| *k == key)
                    .map(|i| g.remove(i).1)
            })
            .ok_or_else(|| sm_write_err("no snapshot is being received"))?;
        let me = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || me.install(&meta, &path))
            .await
            .map_err(sm_write_err)?
            .map_err(|e| crate::se::write_snapshot(None, crate::any(e)))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.open_current()
            .await
            .map_err(|e| crate::se::read_snapshot(None, crate::any(e)))
    }
}

/// Paths of snapshot files being received, by store: openraft hands the file
/// back to `install_snapshot` as a handle without its path.
static INCOMING: Mutex<Vec<(usize, PathBuf)>> = Mutex::new(Vec::new());
