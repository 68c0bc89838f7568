//! What verify, repair and prune found and did, per target, in a form an
//! operator (or a metrics exporter) can read without parsing logs.

use crate::manifest::BackupId;

/// An object that is present but failed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptObject {
    /// Object name on the target.
    pub name: String,
    /// Which check failed.
    pub reason: String,
}

/// A chunk with fewer good shards or copies than it needs: its backup can
/// no longer be restored (or repaired) from this repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostChunk {
    /// The backup.
    pub id: BackupId,
    /// Chunk number.
    pub chunk: u64,
    /// Good pieces found.
    pub have: usize,
    /// Pieces needed.
    pub need: usize,
}

/// Health of one target as seen by a scrub.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetReport {
    /// The target (as its spec).
    pub target: String,
    /// Why the target could not be listed at all, if it could not.
    pub unreachable: Option<String>,
    /// Objects a manifest expects here that are absent.
    pub missing: Vec<String>,
    /// Objects present but failing their checks (bit rot, truncation,
    /// tampering) or unreadable.
    pub corrupt: Vec<CorruptObject>,
    /// Leftovers no manifest refers to (interrupted writes); prune removes
    /// them.
    pub garbage: Vec<String>,
    /// Names that are not ours; reported, never deleted.
    pub unknown: Vec<String>,
    /// Objects that passed every check.
    pub objects_ok: u64,
}

impl TargetReport {
    pub(crate) fn new(target: String) -> Self {
        Self {
            target,
            ..Self::default()
        }
    }

    /// Whether this target holds everything it should, intact.
    pub fn is_healthy(&self) -> bool {
        self.unreachable.is_none() && self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// The result of [`Repository::verify`](crate::Repository::verify): every
/// object on every target checked against its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Backups whose manifest authenticated and was scrubbed.
    pub backups_checked: usize,
    /// Per target, in repository order.
    pub targets: Vec<TargetReport>,
    /// Chunks that cannot be rebuilt any more.
    pub lost_chunks: Vec<LostChunk>,
    /// Backups with manifest objects none of which authenticates (wrong
    /// key, or every copy altered); their objects are left alone.
    pub unauthenticated: Vec<BackupId>,
}

impl VerifyReport {
    /// No damage anywhere: every expected object present and intact, every
    /// target reachable, every manifest authentic. Garbage does not count
    /// as damage (see [`has_garbage`](Self::has_garbage)).
    pub fn is_clean(&self) -> bool {
        self.targets.iter().all(TargetReport::is_healthy)
            && self.lost_chunks.is_empty()
            && self.unauthenticated.is_empty()
    }

    /// Whether any target holds leftovers that prune would remove.
    pub fn has_garbage(&self) -> bool {
        self.targets.iter().any(|t| !t.garbage.is_empty())
    }
}

/// One object written or deleted on one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The target.
    pub target: String,
    /// The object name.
    pub name: String,
}

/// An object that could not be rewritten or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedObject {
    /// The target.
    pub target: String,
    /// The object name.
    pub name: String,
    /// The error.
    pub reason: String,
}

/// The result of [`Repository::repair`](crate::Repository::repair).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepairReport {
    /// What the scrub before the repair found.
    pub before: VerifyReport,
    /// Shards, copies and manifests rewritten from survivors.
    pub rewritten: Vec<ObjectRef>,
    /// Rewrites that failed (target still down or full).
    pub failed: Vec<FailedObject>,
}

impl RepairReport {
    /// Whether everything damaged was rewritten: no rewrite failed, no
    /// chunk was lost, no target was out of reach.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
            && self.before.lost_chunks.is_empty()
            && self.before.unauthenticated.is_empty()
            && self.before.targets.iter().all(|t| t.unreachable.is_none())
    }
}

/// The result of [`Repository::prune`](crate::Repository::prune).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PruneReport {
    /// Backups deleted.
    pub deleted: Vec<BackupId>,
    /// Backups kept.
    pub kept: Vec<BackupId>,
    /// Leftovers of interrupted writes removed.
    pub garbage_removed: Vec<ObjectRef>,
    /// Deletions that failed; running prune again retries them.
    pub failed: Vec<FailedObject>,
    /// Backups left alone because no manifest copy authenticates.
    pub unauthenticated: Vec<BackupId>,
}

/// Lists at most this many names per kind of problem in a printed report;
/// the rest are counted.
const PRINTED_NAMES_MAX: usize = 10;

fn names(f: &mut std::fmt::Formatter<'_>, what: &str, list: &[String]) -> std::fmt::Result {
    if list.is_empty() {
        return Ok(());
    }
    writeln!(f, "    {what}: {}", list.len())?;
    for n in list.iter().take(PRINTED_NAMES_MAX) {
        writeln!(f, "      {n}")?;
    }
    if list.len() > PRINTED_NAMES_MAX {
        writeln!(f, "      … and {} more", list.len() - PRINTED_NAMES_MAX)?;
    }
    Ok(())
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backups checked: {}", self.backups_checked)?;
        for t in &self.targets {
            let state = if t.is_healthy() { "ok" } else { "DAMAGED" };
            writeln!(
                f,
                "  target {}: {state}, {} objects intact",
                t.target, t.objects_ok
            )?;
            if let Some(u) = &t.unreachable {
                writeln!(f, "    unreachable: {u}")?;
            }
            names(f, "missing", &t.missing)?;
            let corrupt: Vec<String> = t
                .corrupt
                .iter()
                .map(|c| format!("{} ({})", c.name, c.reason))
                .collect();
            names(f, "corrupt", &corrupt)?;
            names(f, "garbage (prune removes it)", &t.garbage)?;
            names(f, "unknown (not ours, left alone)", &t.unknown)?;
        }
        for l in &self.lost_chunks {
            writeln!(
                f,
                "  LOST: {} chunk {}: {} good pieces of {} needed",
                l.id.as_str(),
                l.chunk,
                l.have,
                l.need
            )?;
        }
        for id in &self.unauthenticated {
            writeln!(
                f,
                "  UNAUTHENTICATED manifest: {} (wrong key or tampered)",
                id.as_str()
            )?;
        }
        write!(
            f,
            "verdict: {}",
            if self.is_clean() { "clean" } else { "damaged" }
        )
    }
}

impl std::fmt::Display for RepairReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.before)?;
        writeln!(f, "rewritten: {} objects", self.rewritten.len())?;
        let failed: Vec<String> = self
            .failed
            .iter()
            .map(|o| format!("{} on {}: {}", o.name, o.target, o.reason))
            .collect();
        names(f, "could not repair", &failed)?;
        write!(
            f,
            "repair: {}",
            if self.is_complete() {
                "complete"
            } else {
                "INCOMPLETE"
            }
        )
    }
}

impl std::fmt::Display for PruneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = |v: &[BackupId]| v.iter().map(|i| i.as_str().to_string()).collect::<Vec<_>>();
        writeln!(
            f,
            "kept {} backups, deleted {}",
            self.kept.len(),
            self.deleted.len()
        )?;
        names(f, "deleted", &ids(&self.deleted))?;
        let garbage: Vec<String> = self
            .garbage_removed
            .iter()
            .map(|o| format!("{} on {}", o.name, o.target))
            .collect();
        names(f, "leftovers removed", &garbage)?;
        let failed: Vec<String> = self
            .failed
            .iter()
            .map(|o| format!("{} on {}: {}", o.name, o.target, o.reason))
            .collect();
        names(f, "could not delete (run prune again)", &failed)?;
        names(
            f,
            "unauthenticated manifests left alone",
            &ids(&self.unauthenticated),
        )
    }
}
