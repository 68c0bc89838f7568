//! The snapshot files of a state-machine store: building one from a read
//! view, receiving and verifying one from a leader, installing it, naming
//! the current one, exporting one for a hot backup, and removing what a
//! crash or an older snapshot left behind.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use keel_domain::query::Digester;
use openraft::{BasicNode, LogId, SnapshotMeta, StoredMembership};
use redb::Durability;

use super::StateMachineStore;
use crate::error::blocking;
use crate::redb_tables::{
    encode_meta, read_meta_in, table_error, write_meta, SnapshotRef, StateReader, KEY_SNAPSHOT,
};
use crate::snapshot::{self, SnapshotHeader, SnapshotWriter};
use crate::{NodeId, StoreError};

/// (device, inode) of a file, to recognise the file openraft hands back.
pub(super) type FileId = (u64, u64);

#[cfg(unix)]
pub(super) fn file_id(m: &std::fs::Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
pub(super) fn file_id(_: &std::fs::Metadata) -> Option<FileId> {
    None
}

/// A snapshot's meta and an open handle to its file.
pub(super) type SnapshotFile = (SnapshotMeta<NodeId, BasicNode>, File);

/// A file handed out by `begin_receiving_snapshot`.
pub(super) struct Incoming {
    pub(super) path: PathBuf,
    pub(super) id: Option<FileId>,
}

/// fsyncs directory `dir`, so the names of the files in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// openraft's view of a snapshot file's header.
pub(super) fn snapshot_meta(h: SnapshotHeader) -> SnapshotMeta<NodeId, BasicNode> {
    SnapshotMeta {
        last_log_id: h.last_log_id,
        last_membership: h.membership,
        snapshot_id: h.snapshot_id,
    }
}

/// Writes `r` as a snapshot file at `path` (removed again on failure) and
/// returns the file opened for reading; `synced` fsyncs it (see
/// [`SnapshotWriter::finish`] and [`SnapshotWriter::finish_unsynced`]), and
/// `digest` is fed every row on the way.
pub(super) fn write_snapshot_file(
    r: &StateReader,
    header: &SnapshotHeader,
    path: &Path,
    synced: bool,
    mut digest: Option<&mut Digester>,
) -> Result<File, StoreError> {
    let written = (|| {
        let f = File::create(path).map_err(|e| StoreError::io(path, e))?;
        let mut w = SnapshotWriter::create(f, header).map_err(|e| StoreError::io(path, e))?;
        r.for_each_row(|t, k, v| {
            if let Some(d) = digest.as_deref_mut() {
                d.row(t, k, v);
            }
            w.row(t, k, v).map_err(|e| StoreError::io(path, e))
        })?;
        if synced {
            w.finish()
        } else {
            w.finish_unsynced()
        }
        .map_err(|e| StoreError::io(path, e))?;
        File::open(path).map_err(|e| StoreError::io(path, e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// A snapshot file written for a hot backup, and what it holds. The file is
/// removed when this is dropped.
#[derive(Debug)]
pub struct SnapshotExport {
    /// The snapshot file (Keel's snapshot format, verified by
    /// [`snapshot::verify`]).
    pub path: PathBuf,
    /// The last log id the state includes.
    pub last_log_id: Option<LogId<NodeId>>,
    /// The membership as of that log id.
    pub membership: StoredMembership<NodeId, BasicNode>,
    /// The state digest at that log id.
    pub digest: [u8; 32],
    /// The state's clock: the latest leader time applied.
    pub clock_ms: u64,
    /// The file's size.
    pub bytes: u64,
}

impl Drop for SnapshotExport {
    fn drop(&mut self) {
        // Best effort: a file left behind is removed at the next open.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A received snapshot must be the one the leader said it sent.
pub(super) fn check_incoming_id(
    path: &Path,
    header: &SnapshotHeader,
    snapshot_id: &str,
) -> Result<(), StoreError> {
    if header.snapshot_id == snapshot_id {
        return Ok(());
    }
    Err(StoreError::corrupt(
        path,
        "received snapshot",
        format!(
            "it is {:?}, the leader sent {snapshot_id:?}",
            header.snapshot_id
        ),
    ))
}

impl StateMachineStore {
    /// Checks the snapshot being received before its last chunk (`last`,
    /// at `offset`, not yet written) is handed to openraft: the bytes
    /// received so far and `last` must read as a whole snapshot (format,
    /// every row, the closing BLAKE3) named `snapshot_id`. openraft treats
    /// an error from its install as fatal, so a snapshot damaged on the way
    /// must be refused here; the leader then sends it again.
    pub async fn verify_incoming(
        &self,
        snapshot_id: &str,
        offset: u64,
        last: Vec<u8>,
    ) -> Result<(), StoreError> {
        let me = self.clone();
        let id = snapshot_id.to_owned();
        blocking(&self.inner.snap_dir, move || {
            me.verify_incoming_blocking(&id, offset, &last)
        })
        .await
    }

    pub(super) fn verify_incoming_blocking(
        &self,
        snapshot_id: &str,
        offset: u64,
        last: &[u8],
    ) -> Result<(), StoreError> {
        let dir = &self.inner.snap_dir;
        if offset == 0 {
            // The whole snapshot in one chunk: openraft has not opened a
            // file for it yet.
            let header = snapshot::read_from(dir, last, |_, _, _| Ok(()))?;
            return check_incoming_id(dir, &header, snapshot_id);
        }
        let path = self
            .inner
            .incoming
            .lock()
            .map_err(|_| StoreError::other(dir, "incoming snapshot list poisoned"))?
            .last()
            .map(|i| i.path.clone())
            .ok_or_else(|| StoreError::other(dir, "no snapshot is being received"))?;
        let file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        let received = std::io::BufReader::new(file).take(offset);
        let header = snapshot::read_from(&path, received.chain(last), |_, _, _| Ok(()))?;
        check_incoming_id(&path, &header, snapshot_id)
    }

    pub(super) fn lock_snapshots(&self) -> Result<MutexGuard<'_, ()>, StoreError> {
        self.inner
            .snapshot_lock
            .lock()
            .map_err(|_| StoreError::other(&self.inner.snap_dir, "snapshot lock poisoned"))
    }

    pub(super) fn remove_snapshot_files_except(
        &self,
        keep: Option<&str>,
    ) -> Result<(), StoreError> {
        let dir = &self.inner.snap_dir;
        let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
        for e in entries {
            let e = e.map_err(|e| StoreError::io(dir, e))?;
            let name = e.file_name();
            if Some(name.to_string_lossy().as_ref()) == keep || !e.path().is_file() {
                continue;
            }
            tracing::info!(file = %e.path().display(), "removing stale snapshot file");
            std::fs::remove_file(e.path()).map_err(|err| StoreError::io(&e.path(), err))?;
        }
        Ok(())
    }

    /// Records `file` as the current snapshot and returns the one it
    /// replaces. The commit is fsynced; see the callers for why.
    pub(super) fn set_current_snapshot(
        &self,
        current: &SnapshotRef,
    ) -> Result<Option<SnapshotRef>, StoreError> {
        let path = &self.inner.path;
        let mut txn = self.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        let old = read_meta_in::<SnapshotRef>(&txn, path, KEY_SNAPSHOT)?;
        write_meta(&txn, path, &[(KEY_SNAPSHOT, encode_meta(current))])?;
        txn.commit().map_err(|e| self.err(e))?;
        self.durable_commit_made();
        Ok(old)
    }

    pub(super) fn remove_old_snapshot(&self, old: Option<SnapshotRef>, current: &SnapshotRef) {
        if let Some(old) = old.filter(|o| o.file != current.file) {
            let p = self.inner.snap_dir.join(&old.file);
            // Best effort: a file left behind is removed at the next open.
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::warn!(file = %p.display(), error = %e, "could not remove old snapshot");
            }
        }
    }

    /// Writes a snapshot of one consistent read view, makes it current and
    /// returns its meta and an open handle to it.
    pub(super) fn build(&self) -> Result<SnapshotFile, StoreError> {
        let _guard = self.lock_snapshots()?;
        let r = self.reader()?;
        let last = r.applied()?;
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last {
            Some(l) => format!("{}-{}-{seq}", l.leader_id.term, l.index),
            None => format!("none-{seq}"),
        };
        let header = SnapshotHeader::new(snapshot_id, last, r.membership()?);
        let tmp = self.inner.snap_dir.join(format!("building-{seq}.part"));
        let written = write_snapshot_file(&r, &header, &tmp, true, None);
        drop(r);
        let handle = written?;
        let current = SnapshotRef {
            file: format!("snap-{seq}.snap"),
            seq,
        };
        let final_path = self.inner.snap_dir.join(&current.file);
        std::fs::rename(&tmp, &final_path).map_err(|e| StoreError::io(&final_path, e))?;
        // fsync the directory so the renamed file's name survives a crash
        // before the state names it current.
        sync_dir(&self.inner.snap_dir)?;
        // fsync (Immediate) the commit that names the file current. It also
        // makes the state the snapshot was read from durable: that read
        // view only saw commits made before this one, and a durable redb
        // commit makes every earlier commit durable. openraft may purge the
        // log up to this snapshot once we return, so both must be on disk.
        let old = self.set_current_snapshot(&current)?;
        self.inner
            .purge_gate
            .advance(header.last_log_id.map(|l| l.index));
        self.remove_old_snapshot(old, &current);
        Ok((snapshot_meta(header), handle))
    }

    /// Writes a snapshot of one consistent read view to a temporary file in
    /// the snapshot directory, for a hot backup. It does not become the
    /// current snapshot and the running node is not paused: the read view
    /// pins the state it sees while writes go on. The file is removed when
    /// the returned value is dropped (or at the next open, after a crash).
    pub fn export_snapshot(&self) -> Result<SnapshotExport, StoreError> {
        let r = self.reader()?;
        let last = r.applied()?;
        let membership = r.membership()?;
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last {
            Some(l) => format!("export-{}-{}-{seq}", l.leader_id.term, l.index),
            None => format!("export-none-{seq}"),
        };
        let header = SnapshotHeader::new(snapshot_id, last, membership.clone());
        let path = self.inner.snap_dir.join(format!("export-{seq}.part"));
        let clock_ms = keel_domain::apply::load_summary(&r)
            .map_err(|e| table_error(&self.inner.path, e))?
            .clock_ms;
        // The digest is taken in the same pass that writes the rows, so a
        // backup reads the state once. Not fsynced: the export is read once
        // by the backup and removed.
        let mut digester = Digester::new();
        let file = write_snapshot_file(&r, &header, &path, false, Some(&mut digester))?;
        let digest = digester.finish();
        let bytes = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        Ok(SnapshotExport {
            path,
            last_log_id: last,
            membership,
            digest,
            clock_ms,
            bytes,
        })
    }

    pub(super) fn current_snapshot(&self) -> Result<Option<SnapshotFile>, StoreError> {
        let _guard = self.lock_snapshots()?;
        let Some(current) = self.reader()?.snapshot_ref()? else {
            return Ok(None);
        };
        let p = self.inner.snap_dir.join(&current.file);
        // Verified in full each time it is served: a damaged snapshot is
        // never sent to a follower.
        let header = snapshot::verify(&p)?;
        let f = File::open(&p).map_err(|e| StoreError::io(&p, e))?;
        Ok(Some((snapshot_meta(header), f)))
    }

    pub(super) fn begin_receiving(&self) -> Result<File, StoreError> {
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let p = self.inner.snap_dir.join(format!("incoming-{seq}.part"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .map_err(|e| StoreError::io(&p, e))?;
        let id = f.metadata().ok().and_then(|m| file_id(&m));
        self.inner
            .incoming
            .lock()
            .map_err(|_| StoreError::other(&p, "incoming snapshot list poisoned"))?
            .push(Incoming { path: p, id });
        Ok(f)
    }

    /// Turns the handle openraft gives back into a file of ours in the
    /// snapshot directory, with its bytes on disk. Normally the handle is
    /// the file `begin_receiving` created; if it is another file (openraft
    /// allows swapping the handle), its contents are copied.
    pub(super) fn take_received(&self, mut received: File) -> Result<PathBuf, StoreError> {
        let dir = &self.inner.snap_dir;
        let id = received
            .metadata()
            .map_err(|e| StoreError::io(dir, e))
            .map(|m| file_id(&m))?;
        let handed_out = std::mem::take(
            &mut *self
                .inner
                .incoming
                .lock()
                .map_err(|_| StoreError::other(dir, "incoming snapshot list poisoned"))?,
        );
        let mut ours = None;
        for inc in handed_out {
            if ours.is_none() && id.is_some() && inc.id == id {
                ours = Some(inc.path);
            } else {
                // openraft receives one snapshot at a time, so any other
                // file handed out before this install was abandoned.
                let _ = std::fs::remove_file(&inc.path);
            }
        }
        let path = match ours {
            Some(p) => p,
            None => {
                let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
                let p = dir.join(format!("incoming-{seq}.part"));
                let mut copy = File::create(&p).map_err(|e| StoreError::io(&p, e))?;
                received
                    .seek(SeekFrom::Start(0))
                    .and_then(|_| std::io::copy(&mut received, &mut copy))
                    .map_err(|e| StoreError::io(&p, e))?;
                received = copy;
                p
            }
        };
        // fsync the received bytes before the file can become current.
        received.sync_all().map_err(|e| StoreError::io(&path, e))?;
        Ok(path)
    }

    pub(super) fn install(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        received: File,
    ) -> Result<(), StoreError> {
        let _guard = self.lock_snapshots()?;
        let incoming = self.take_received(received)?;
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let current = SnapshotRef {
            file: format!("snap-{seq}.snap"),
            seq,
        };
        let final_path = self.inner.snap_dir.join(&current.file);
        let res = self.install_file(meta, &incoming, &final_path, &current);
        if res.is_err() {
            // openraft stops the node on this error; a purge waiting for
            // the install must not wait out its timeout first.
            self.inner.purge_gate.install_failed();
            // A refused or failed snapshot is not kept; the state and the
            // current snapshot are as they were.
            let _ = std::fs::remove_file(&incoming);
            let _ = std::fs::remove_file(&final_path);
        }
        res
    }

    /// Makes `file`, a snapshot this node once wrote or received, the state
    /// and the current snapshot (moved into the snapshot directory), in one
    /// fsynced transaction, after verifying all of it. For rebuilding a
    /// damaged state from the node's own snapshot ([`crate::rebuild`]).
    pub(crate) fn install_local_snapshot(&self, file: &Path) -> Result<SnapshotHeader, StoreError> {
        let _guard = self.lock_snapshots()?;
        let header = snapshot::verify(file)?;
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let current = SnapshotRef {
            file: format!("snap-{seq}.snap"),
            seq,
        };
        let final_path = self.inner.snap_dir.join(&current.file);
        self.place_and_install(file, &final_path, &current)?;
        Ok(header)
    }

    /// Moves a verified snapshot file to `final_path` and installs it.
    pub(super) fn place_and_install(
        &self,
        incoming: &Path,
        final_path: &Path,
        current: &SnapshotRef,
    ) -> Result<(), StoreError> {
        std::fs::rename(incoming, final_path).map_err(|e| StoreError::io(final_path, e))?;
        // fsync the directory: the state is about to name this file current.
        sync_dir(&self.inner.snap_dir)?;
        let reader = snapshot::open_file(final_path)?;
        let (_, old) =
            self.replace_state_with(final_path, reader, Some(current), None, |_| Ok(()))?;
        self.remove_old_snapshot(old, current);
        Ok(())
    }

    pub(super) fn install_file(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        incoming: &Path,
        final_path: &Path,
        current: &SnapshotRef,
    ) -> Result<(), StoreError> {
        // Verify the whole file before touching the state.
        let header = snapshot::verify(incoming)?;
        let announced = (&meta.snapshot_id, &meta.last_log_id, &meta.last_membership);
        if (&header.snapshot_id, &header.last_log_id, &header.membership) != announced {
            return Err(StoreError::corrupt(
                incoming,
                "snapshot header",
                format!(
                    "file holds snapshot {} up to {:?}, the leader announced {} up to {:?}",
                    header.snapshot_id, header.last_log_id, meta.snapshot_id, meta.last_log_id
                ),
            ));
        }
        self.place_and_install(incoming, final_path, current)
    }
}
