//! Rebuilding a node's state after its `state.redb` (or its snapshot) was
//! damaged on disk, from what the node itself still holds.
//!
//! The state is a pure function of the committed log, so it can be dropped
//! and derived again; the log and the vote cannot: they are what this node
//! promised the others (an entry it counted towards a quorum, a vote in a
//! term), and a voter that forgot them could help elect a leader without a
//! committed entry. So the rebuild keeps `log.redb` untouched and replaces
//! only the state: it starts empty, or from the newest intact snapshot file
//! of this node, and openraft re-applies the committed log after it at the
//! next start (the leader sends whatever this node has not yet seen). If
//! the log was purged past every intact snapshot here, the state cannot be
//! derived locally, and the rebuild refuses and says what can be done.
//!
//! Each step is safe to interrupt and run again: the snapshot to install is
//! first moved out of the snapshot directory (which opening a state clears
//! of files it does not name) to [`REBUILD_SNAPSHOT_FILE`], and a later run
//! picks it up from there.

use std::path::{Path, PathBuf};

use openraft::LogId;

use crate::snapshot::{self, SnapshotHeader};
use crate::state_machine::sync_dir;
use crate::{LogStore, NodeId, StateMachineStore, StoreError};
use crate::{LOG_FILE, SNAPSHOT_DIR, STATE_FILE};

/// Where the snapshot a rebuild installs waits, inside the data directory,
/// between being chosen and being installed.
pub const REBUILD_SNAPSHOT_FILE: &str = "rebuild.snap";

/// Prefix of the name the damaged state file is kept under (followed by the
/// time of the rebuild in Unix milliseconds), for forensics.
pub const KEPT_STATE_PREFIX: &str = "state.redb.corrupt-";

/// What a rebuild did.
#[derive(Debug)]
pub struct Rebuilt {
    /// Where the old state file now is, if there was one.
    pub kept_aside: Option<PathBuf>,
    /// The snapshot the new state starts from (its last log id), if any.
    pub from_snapshot: Option<Option<LogId<NodeId>>>,
    /// The log's purge point.
    pub purged: Option<LogId<NodeId>>,
    /// The last committed index this node knows; the next start re-applies
    /// the log up to it, then catches up from the leader.
    pub committed_index: Option<u64>,
}

/// What was done and what the next start does, for an operator.
impl std::fmt::Display for Rebuilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kept_aside {
            Some(p) => writeln!(f, "kept the old state aside as {}", p.display())?,
            None => writeln!(f, "there was no state file")?,
        }
        match self.from_snapshot {
            Some(Some(l)) => writeln!(f, "the state starts from this node's snapshot up to {l}")?,
            Some(None) | None => writeln!(f, "the state starts empty")?,
        }
        write!(
            f,
            "log purged up to {}, committed up to {}: start the node as before; it re-applies its \
             log and catches up from the leader",
            self.purged.map_or("nothing".to_owned(), |p| p.to_string()),
            self.committed_index
                .map_or("nothing known".to_owned(), |i| i.to_string()),
        )
    }
}

/// Replaces the state of the stopped node whose data directory is
/// `data_dir` by one derived from its own log (see the module docs). The
/// log is opened first, which verifies every record and fails while a node
/// holds the directory.
pub fn rebuild_state(data_dir: &Path) -> Result<Rebuilt, StoreError> {
    let log_path = data_dir.join(LOG_FILE);
    if !log_path.is_file() {
        return Err(StoreError::other(
            data_dir,
            "holds no log.redb: there is nothing to rebuild the state from",
        ));
    }
    let log = LogStore::open(&log_path)?;
    let purged = log.purged()?;
    let committed_index = log.committed_index()?;
    let snap_dir = data_dir.join(SNAPSHOT_DIR);
    let waiting = data_dir.join(REBUILD_SNAPSHOT_FILE);
    let newest = newest_intact_snapshot(&snap_dir, &waiting)?;
    let covers = |h: &SnapshotHeader| h.last_log_id >= purged;
    if purged.is_some() && !newest.as_ref().is_some_and(|(_, h)| covers(h)) {
        return Err(StoreError::other(
            data_dir,
            format!(
                "the log is purged up to {} and no intact snapshot here reaches it, so this \
                 node cannot derive its state alone: remove it from the cluster, wipe its \
                 data directory and add it back as a new member, or restore it from a backup",
                purged.map_or_else(String::new, |p| p.to_string())
            ),
        ));
    }
    if let Some((path, _)) = &newest {
        if *path != waiting {
            std::fs::rename(path, &waiting).map_err(|e| StoreError::io(&waiting, e))?;
            sync_dir(&snap_dir)?;
        }
    }
    sync_dir(data_dir)?;
    let state = data_dir.join(STATE_FILE);
    let kept_aside = if state.exists() {
        let ms = keel_protocol::wall_ms();
        let aside = data_dir.join(format!("{KEPT_STATE_PREFIX}{ms}"));
        std::fs::rename(&state, &aside).map_err(|e| StoreError::io(&aside, e))?;
        sync_dir(data_dir)?;
        Some(aside)
    } else {
        None
    };
    let sm = StateMachineStore::open(&state, &snap_dir)?;
    let from_snapshot = match newest {
        Some(_) => Some(sm.install_local_snapshot(&waiting)?.last_log_id),
        None => None,
    };
    drop(sm);
    drop(log);
    sync_dir(data_dir)?;
    Ok(Rebuilt {
        kept_aside,
        from_snapshot,
        purged,
        committed_index,
    })
}

/// The snapshot file with the latest log id among those that verify whole:
/// the snapshot directory's files and one an interrupted rebuild left
/// waiting. A damaged one is passed over (and logged).
fn newest_intact_snapshot(
    snap_dir: &Path,
    waiting: &Path,
) -> Result<Option<(PathBuf, SnapshotHeader)>, StoreError> {
    let mut candidates = Vec::new();
    if waiting.is_file() {
        candidates.push(waiting.to_path_buf());
    }
    if snap_dir.is_dir() {
        for e in std::fs::read_dir(snap_dir).map_err(|e| StoreError::io(snap_dir, e))? {
            let path = e.map_err(|e| StoreError::io(snap_dir, e))?.path();
            if path.extension().is_some_and(|x| x == "snap") && path.is_file() {
                candidates.push(path);
            }
        }
    }
    let mut newest: Option<(PathBuf, SnapshotHeader)> = None;
    for path in candidates {
        match snapshot::verify(&path) {
            Ok(h) => {
                if newest
                    .as_ref()
                    .is_none_or(|(_, n)| h.last_log_id > n.last_log_id)
                {
                    newest = Some((path, h));
                }
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "passing over a damaged snapshot")
            }
        }
    }
    Ok(newest)
}
