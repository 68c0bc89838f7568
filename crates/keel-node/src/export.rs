//! What a node hands to backups, without HTTP: a snapshot export of one
//! consistent read view, written by a low-priority thread and one at a time,
//! and pages of committed log records. The HTTP side (`http::backup`) only
//! frames what these return; backups never go around the node's storage.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use keel_store::{LogStore, SnapshotExport, StateMachineStore, StoreError};

/// Backup exports (snapshots) a node runs at once. Each one scans the whole
/// state and holds a read view open, so a second one would only slow both.
pub const EXPORTS_MAX: usize = 1;
/// Most log records in one page of `/v1/backup/log`.
pub const LOG_PAGE_ENTRIES_MAX: usize = 4_096;
/// About the most record bytes in one page (at least one record is sent).
pub const LOG_PAGE_BYTES_MAX: usize = 16 << 20;
/// Nice value of the thread that writes a snapshot export: a hot backup
/// should take the CPU the node's clients leave, not compete with them.
pub const EXPORT_NICE: i32 = 19;

/// Why a snapshot export or a log page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// [`EXPORTS_MAX`] exports are running already.
    #[error("this node runs at most {EXPORTS_MAX} snapshot export at a time; retry when it ends or use another replica")]
    Busy,
    /// The store failed or is corrupt.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The thread or task doing the work did not run or finish.
    #[error("{0}")]
    Task(String),
}

/// One of the [`EXPORTS_MAX`] export slots, held until dropped.
#[derive(Debug)]
pub struct ExportSlot {
    // Held for its drop, which frees the slot.
    _permit: OwnedSemaphorePermit,
}

/// Takes an export slot, or says [`ExportError::Busy`].
pub(crate) fn take_slot(slots: &Arc<Semaphore>) -> Result<ExportSlot, ExportError> {
    slots
        .clone()
        .try_acquire_owned()
        .map(|p| ExportSlot { _permit: p })
        .map_err(|_| ExportError::Busy)
}

/// A snapshot export and its export slot: the file is removed and the slot
/// freed when this is dropped (after the last byte was sent, or when the
/// client went away).
#[derive(Debug)]
pub struct HeldExport {
    /// The export.
    pub export: SnapshotExport,
    _slot: ExportSlot,
}

/// Writes a snapshot export of `sm` on a thread of its own (not the shared
/// blocking pool, so lowering its priority touches nothing else).
pub(crate) async fn export_snapshot(
    sm: StateMachineStore,
    slot: ExportSlot,
) -> Result<HeldExport, ExportError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("backup-export".into())
        .spawn(move || {
            lower_this_thread(EXPORT_NICE);
            let _ = tx.send(sm.export_snapshot());
        })
        .map_err(|e| ExportError::Task(format!("snapshot export thread: {e}")))?;
    let export = rx
        .await
        .map_err(|e| ExportError::Task(format!("snapshot export thread: {e}")))??;
    Ok(HeldExport {
        export,
        _slot: slot,
    })
}

/// A page of committed log records for a backup.
#[derive(Debug)]
pub struct LogRecords {
    /// `(index, record)` in index order, as the log stores them.
    pub records: Vec<(u64, Vec<u8>)>,
    /// This node's applied index when the page was read.
    pub applied: Option<u64>,
    /// The log's purge point: records at or below it are gone.
    pub purged: Option<u64>,
    /// The highest index the page could reach: `upto`, capped at `applied`.
    pub upto: u64,
}

impl LogRecords {
    /// Whether the page should start at `after + 1` but does not: the
    /// records asked for were purged from this node's log.
    pub fn purged_past(&self, after: u64) -> bool {
        let wanted = after < self.upto && self.applied.is_some();
        let first = self.records.first().map(|(i, _)| *i);
        wanted && first != after.checked_add(1)
    }
}

/// Reads the committed records above `after`, up to `upto` and never past
/// what `applied` says (applied means committed, so they are never
/// truncated), on the blocking pool.
pub(crate) async fn log_records(
    log: LogStore,
    applied: Option<u64>,
    after: u64,
    upto: Option<u64>,
) -> Result<LogRecords, ExportError> {
    let upto = match (applied, upto) {
        (Some(a), Some(u)) => a.min(u),
        (Some(a), None) => a,
        (None, _) => 0,
    };
    let page = tokio::task::spawn_blocking(move || {
        log.read_records(after, upto, LOG_PAGE_ENTRIES_MAX, LOG_PAGE_BYTES_MAX)
    })
    .await
    .map_err(|e| ExportError::Task(format!("log read task: {e}")))??;
    Ok(LogRecords {
        records: page.records,
        applied,
        purged: page.purged.map(|p| p.index),
        upto,
    })
}

/// Sets the calling thread's nice value and the idle I/O class.
fn lower_this_thread(nice: i32) {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()) else {
        return;
    };
    if !lower_priority(tid, nice) {
        tracing::debug!(tid, "could not lower the backup export's priority");
    }
}

/// Gives process or thread `id` nice value `nice` and the idle I/O class,
/// so backup work takes the CPU and disk a node's clients leave (Linux
/// applies `renice -p` and `ionice -p` of a thread id to that thread
/// alone; of a process id before it starts threads, to all it starts).
/// Best effort: false when `renice` or `ionice` is missing or refused.
pub fn lower_priority(id: &str, nice: i32) -> bool {
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    run("renice", &["-n", &nice.to_string(), "-p", id]) & run("ionice", &["-c", "3", "-p", id])
}
