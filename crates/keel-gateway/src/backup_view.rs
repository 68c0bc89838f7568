//! The backup panel: what a backup repository (as `keel backup` writes it)
//! holds, reduced to what an operator asks first: when was the last full,
//! the last incremental, and how recent a state could a restore bring back.

use std::path::PathBuf;

use keel_backup_repo::{
    plan_restore, Key, Kind, Layout, Manifest, Repository, RestorePoint, Target,
};
use serde::Serialize;

/// Environment variable holding the repository's key as 64 hex digits
/// when no key file is configured: the one `keel backup` reads.
pub const KEY_ENV: &str = "KEEL_BACKUP_KEY";

/// Why the backup repository given to the gateway cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackupRepoError {
    /// The directory is not a target, or the key cannot be read.
    #[error("backup repository {dir}: {source}")]
    Open {
        /// The repository's directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: keel_backup_repo::BackupError,
    },
}

/// A local repository the dashboard lists.
pub struct BackupRepo {
    dir: PathBuf,
    repo: Repository,
}

impl BackupRepo {
    /// Opens the repository in `dir` with the key in `key_file`, or in
    /// [`KEY_ENV`] without one (the key authenticates the manifests: a
    /// listing never trusts one that does not). Reads only the key.
    pub fn open(dir: PathBuf, key_file: Option<&std::path::Path>) -> Result<Self, BackupRepoError> {
        let open = || {
            let target = Target::parse(&dir.to_string_lossy())?;
            let key = match key_file {
                Some(p) => Key::from_file(p)?,
                None => Key::from_env(KEY_ENV)?,
            };
            // Listing reads manifests from every target; a single
            // directory is a mirror of one.
            Repository::open(vec![target], Layout::Mirror, key)
        };
        match open() {
            Ok(repo) => Ok(Self { dir, repo }),
            Err(source) => Err(BackupRepoError::Open { dir, source }),
        }
    }

    /// The panel as the repository is now, stamped `now_ms`; a listing
    /// that takes longer than `timeout` (a hung mount) is abandoned and
    /// the panel says so.
    pub async fn view_within(&self, timeout: std::time::Duration, now_ms: u64) -> BackupsView {
        let error = match tokio::time::timeout(timeout, self.repo.list()).await {
            Ok(Ok(list)) => return BackupsView::of(&self.dir, &list, now_ms),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no listing within {timeout:?}"),
        };
        BackupsView {
            error: Some(error),
            ..BackupsView::empty(&self.dir, now_ms)
        }
    }
}

/// One backup as the panel shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackupLine {
    /// Its id.
    pub id: String,
    /// `full`, `incremental`, `differential`, `cold` or `archive`.
    pub kind: String,
    /// First log index it covers.
    pub first_index: u64,
    /// Last log index it covers.
    pub last_index: u64,
    /// Leader time of `last_index` (ms since the Unix epoch).
    pub last_time_ms: u64,
    /// When it was written (ms since the Unix epoch).
    pub created_ms: u64,
    /// Its content's size.
    pub content_bytes: u64,
}

impl BackupLine {
    fn of(m: &Manifest) -> Self {
        Self {
            id: m.id.as_str().to_owned(),
            kind: m.kind.as_str().to_owned(),
            first_index: m.first_index,
            last_index: m.last_index,
            last_time_ms: m.last_time_ms,
            created_ms: m.created_ms,
            content_bytes: m.content_bytes,
        }
    }
}

/// The newest state a restore can reach from the repository.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecoveryPoint {
    /// The last log index the restore would apply.
    pub index: u64,
    /// That entry's leader time (ms since the Unix epoch).
    pub time_ms: u64,
    /// How many backups the restore reads, base first.
    pub chain_len: usize,
}

/// `backups` in `/gateway/dashboard`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackupsView {
    /// The repository's directory.
    pub repo: String,
    /// When it was last listed (ms since the Unix epoch).
    pub checked_ms: u64,
    /// Backups whose manifest authenticates.
    pub count: usize,
    /// The newest full (or cold) backup.
    pub last_full: Option<BackupLine>,
    /// The newest incremental or differential backup.
    pub last_incremental: Option<BackupLine>,
    /// The newest point a restore reaches (a full, the links after it and
    /// the archived log); none when no chain is complete.
    pub recovery_point: Option<RecoveryPoint>,
    /// Why the listing or the restore plan failed, if it did.
    pub error: Option<String>,
}

impl BackupsView {
    fn empty(dir: &std::path::Path, now_ms: u64) -> Self {
        Self {
            repo: dir.display().to_string(),
            checked_ms: now_ms,
            count: 0,
            last_full: None,
            last_incremental: None,
            recovery_point: None,
            error: None,
        }
    }

    /// The panel of `list` (oldest first, as the repository lists it).
    pub fn of(dir: &std::path::Path, list: &[Manifest], now_ms: u64) -> Self {
        let newest = |kinds: &[Kind]| {
            list.iter()
                .filter(|m| kinds.contains(&m.kind))
                .max_by_key(|m| (m.created_ms, m.last_index))
                .map(BackupLine::of)
        };
        let (recovery_point, error) = match plan_restore(list, RestorePoint::Latest) {
            Ok(plan) => (
                plan.last().map(|m| RecoveryPoint {
                    index: m.last_index,
                    time_ms: m.last_time_ms,
                    chain_len: plan.len(),
                }),
                None,
            ),
            // An empty repository has no chain; that is not an error.
            Err(_) if list.is_empty() => (None, None),
            Err(e) => (None, Some(e.to_string())),
        };
        Self {
            count: list.len(),
            last_full: newest(&[Kind::Full, Kind::Cold]),
            last_incremental: newest(&[Kind::Incremental, Kind::Differential]),
            recovery_point,
            error,
            ..Self::empty(dir, now_ms)
        }
    }
}
