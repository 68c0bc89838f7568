//! Restore: a chain of backups (a full or cold backup, then a differential
//! and/or incrementals and archive segments) replayed into a fresh data
//! directory, up to the latest point, a log index or a leader timestamp.
//!
//! The directory is built as `<to>.restoring` and renamed to `<to>` only
//! when the whole chain has been read, every checksum and AEAD tag has
//! passed, the point has been reached exactly and the domain invariants
//! hold: a failed restore leaves nothing at `<to>`.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use keel_protocol::hex;
use keel_store::seed::{Seed, SeedInfo};

use crate::chain::{plan_restore, RestorePoint};
use crate::frames::{entry_time, LogSpan};
use crate::manifest::{Kind, Manifest};
use crate::queue::QueueReader;
use crate::Repository;
use crate::{BackupError, JobError};

/// Entries applied in one transaction while replaying: bounds memory and
/// the size of one redb commit.
pub const REPLAY_ENTRIES_PER_COMMIT_MAX: usize = 1_024;
/// Chunks of a base backup (each at most `CHUNK_BYTES_MAX`) decoded ahead
/// of the installer: decoding and installing overlap, and memory stays
/// bounded.
pub const RESTORE_QUEUE_CHUNKS: usize = 4;

/// What a restore produced.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The point asked for.
    pub point: RestorePoint,
    /// The directory now holding the restored state (a seed for
    /// `keel up --from` / `keel node --from-seed`).
    pub dir: PathBuf,
    /// The backups replayed, in order.
    pub chain: Vec<String>,
    /// Log entries replayed on top of the base backup.
    pub entries_replayed: u64,
    /// The last log index in the restored state.
    pub index: u64,
    /// The state's clock: the latest leader time applied, ms.
    pub time_ms: u64,
    /// The state digest (hex).
    pub digest: String,
}

impl RestoreReport {
    /// The report as one JSON object (without the point asked for).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "dir": self.dir, "chain": self.chain, "entries_replayed": self.entries_replayed,
            "index": self.index, "time_ms": self.time_ms, "digest": self.digest,
        })
    }
}

/// The report for an operator, ending with how to start a cluster from it.
impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "restored {} into {}", self.point, self.dir.display())?;
        writeln!(f, "  chain:   {}", self.chain.join(" -> "))?;
        writeln!(
            f,
            "  entries: {} replayed on the base",
            self.entries_replayed
        )?;
        writeln!(f, "  index:   {}", self.index)?;
        writeln!(f, "  time:    {} ms", self.time_ms)?;
        writeln!(f, "  digest:  {}", self.digest)?;
        writeln!(f, "  invariants: hold")?;
        write!(
            f,
            "start a cluster from it: keel up --from {}",
            self.dir.display()
        )
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |e| JobError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// Restores the chain that reaches `point` into `to`, which must not exist
/// or be empty.
pub async fn restore(
    repo: &Repository,
    point: RestorePoint,
    to: &Path,
) -> Result<RestoreReport, JobError> {
    if to.exists() && std::fs::read_dir(to).map_err(io(to))?.next().is_some() {
        return Err(JobError::Restore(format!(
            "{} is not empty: restore into a new directory",
            to.display()
        )));
    }
    let manifests = repo.list().await?;
    let chain = plan_restore(&manifests, point).map_err(BackupError::from)?;
    let building = to.with_extension("restoring");
    let work = to.with_extension("restore-work");
    for d in [&building, &work] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(io(d))?;
        }
    }
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let res = replay(repo, &chain, point, &building, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    let (info, entries) = match res {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&building);
            return Err(e);
        }
    };
    if to.exists() {
        std::fs::remove_dir(to).map_err(io(to))?;
    }
    std::fs::rename(&building, to).map_err(io(to))?;
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io(parent))?;
    }
    Ok(RestoreReport {
        point,
        dir: to.to_path_buf(),
        chain: chain.iter().map(|m| m.id.as_str().to_string()).collect(),
        entries_replayed: entries,
        index: info.applied.map_or(0, |l| l.index),
        time_ms: info.clock_ms,
        digest: hex::encode(&info.digest),
    })
}

async fn replay(
    repo: &Repository,
    chain: &[Manifest],
    point: RestorePoint,
    building: &Path,
    work: &Path,
) -> Result<(SeedInfo, u64), JobError> {
    let store = |source: keel_store::StoreError| JobError::Store {
        context: format!(
            "restore failed, nothing written: building {}",
            building.display()
        ),
        source,
    };
    let Some((base, rest)) = chain.split_first() else {
        return Err(JobError::Restore("no backup to restore from".into()));
    };
    if !matches!(base.kind, Kind::Full | Kind::Cold) {
        return Err(JobError::Restore(format!(
            "{} is a {} backup; a chain starts with a full or cold one",
            base.id.as_str(),
            base.kind.as_str()
        )));
    }
    let seed = Seed::create(building).map_err(store)?;
    let seed = load_base(repo, base, seed).await?;
    if let Some(d) = base.labels.get("digest") {
        let got = hex::encode(&seed.digest().map_err(store)?);
        if &got != d {
            return Err(JobError::Restore(format!(
                "{}: the restored state's digest {got} is not the digest {d} recorded when it was taken",
                base.id.as_str()
            )));
        }
    }

    let mut seed = seed;
    let mut replayed = 0u64;
    let mut done = past_point(point, base.last_index, Some(base.last_time_ms));
    for m in rest {
        if done {
            break;
        }
        let file = work.join(format!("{}.log", m.id.as_str()));
        read_to_file(repo, m, &file).await?;
        let id = m.id.as_str().to_string();
        let (s, n, finished) =
            tokio::task::spawn_blocking(move || replay_file(seed, &file, point, &id)).await??;
        seed = s;
        replayed += n;
        done = finished;
    }
    let applied = seed.applied().map_or(0, |l| l.index);
    if let RestorePoint::Index(i) = point {
        if applied != i {
            return Err(JobError::Restore(format!(
                "the backups reach log index {applied}, not the index {i} asked for"
            )));
        }
    }
    let info = tokio::task::spawn_blocking(move || seed.finish())
        .await?
        .map_err(store)?;
    if !info.violations.is_empty() {
        return Err(JobError::Restore(format!(
            "the restored state breaks domain invariants: {}",
            info.violations.join("; ")
        )));
    }
    Ok((info, replayed))
}

/// Installs the base backup's snapshot into `seed` as the repository
/// decodes it: the chunks go through a bounded queue to the installer on a
/// blocking thread, which verifies the stream as it writes it into one
/// transaction and commits only when the repository has also found the
/// whole content sound and the snapshot is at the manifest's index.
async fn load_base(repo: &Repository, base: &Manifest, mut seed: Seed) -> Result<Seed, JobError> {
    let (tx, rx) = tokio::sync::mpsc::channel(RESTORE_QUEUE_CHUNKS);
    let (verdict_tx, verdict_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
    let source = PathBuf::from(format!("backup {}", base.id.as_str()));
    let (id, index) = (base.id.as_str().to_string(), base.last_index);
    let installer = tokio::task::spawn_blocking(move || {
        let reader =
            BufReader::with_capacity(keel_store::snapshot::IO_BUFFER_BYTES, QueueReader::new(rx));
        let confirm = |h: &keel_store::snapshot::SnapshotHeader| {
            let refuse = |detail: String| keel_store::StoreError::Refused {
                source_name: source.clone(),
                detail,
            };
            let got = h.last_log_id.map(|l| l.index);
            if got != Some(index) {
                return Err(refuse(format!(
                    "{id} holds a state at index {got:?}, its manifest says {index}"
                )));
            }
            match verdict_rx.recv() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(refuse(e)),
                Err(_) => Err(refuse("the repository read ended without a verdict".into())),
            }
        };
        seed.load_snapshot_from(&source, reader, confirm)
            .map(|_| seed)
    });
    let read = repo.read_to_queue(&base.id, &tx).await;
    // The installer sees the end of the stream only now, and commits only
    // on the verdict.
    drop(tx);
    let _ = verdict_tx.send(read.as_ref().map(|_| ()).map_err(|e| e.to_string()));
    let installed = installer.await?;
    match (read, installed) {
        (Ok(_), Ok(seed)) => Ok(seed),
        // The installer stopped reading: its error is the cause.
        (Err(BackupError::Output(_)), Err(source)) => Err(JobError::Store {
            context: format!(
                "restore failed, nothing written: installing {}",
                base.id.as_str()
            ),
            source,
        }),
        // The repository's own error says more than the installer's
        // "stream ended early" that it caused.
        (Err(e), _) => Err(e.into()),
        (Ok(_), Err(source)) => Err(JobError::Store {
            context: format!(
                "restore failed, nothing written: installing {}",
                base.id.as_str()
            ),
            source,
        }),
    }
}

/// Whether an entry at `index` with leader time `time` is past the point.
fn past_point(point: RestorePoint, index: u64, time: Option<u64>) -> bool {
    match point {
        RestorePoint::Latest => false,
        RestorePoint::Index(i) => index >= i,
        RestorePoint::TimeMs(t) => time.is_some_and(|x| x >= t),
    }
}

/// Applies the log records of one backup file that the seed has not
/// applied yet, stopping at the point. Returns the seed, the entries
/// applied and whether the point was reached.
fn replay_file(
    seed: Seed,
    file: &Path,
    point: RestorePoint,
    id: &str,
) -> Result<(Seed, u64, bool), JobError> {
    let bad = |d: String| JobError::Restore(format!("{id}: {d}"));
    let f = std::fs::File::open(file).map_err(io(file))?;
    let mut r = BufReader::new(f);
    let mut pending = Vec::new();
    let mut applied = 0u64;
    let mut span: Option<LogSpan> = None;
    let mut reached = false;
    let flush = |seed: &Seed, pending: &mut Vec<_>| -> Result<(), JobError> {
        let batch = std::mem::take(pending);
        seed.apply(batch).map_err(|e| bad(e.to_string()))
    };
    while let Some((index, record)) =
        keel_store::read_log_frame(&mut r).map_err(|e| bad(e.to_string()))?
    {
        let sp = span.get_or_insert_with(|| LogSpan::empty(index.saturating_sub(1)));
        let entry = sp.add(index, &record).map_err(|e| bad(e.to_string()))?;
        let have = seed.applied().map_or(0, |l| l.index).max(
            pending
                .last()
                .map_or(0, |e: &openraft::Entry<keel_store::TypeConfig>| {
                    e.log_id.index
                }),
        );
        if index <= have {
            continue;
        }
        // A point in time is "everything the leader stamped before or at
        // it": the first entry stamped later ends the restore.
        if let RestorePoint::TimeMs(t) = point {
            if entry_time(&entry).is_some_and(|x| x > t) {
                reached = true;
                break;
            }
        }
        pending.push(entry);
        applied += 1;
        if pending.len() >= REPLAY_ENTRIES_PER_COMMIT_MAX {
            flush(&seed, &mut pending)?;
        }
        if let RestorePoint::Index(i) = point {
            if index >= i {
                reached = true;
                break;
            }
        }
    }
    flush(&seed, &mut pending)?;
    let _ = std::fs::remove_file(file);
    Ok((seed, applied, reached))
}

async fn read_to_file(repo: &Repository, m: &Manifest, path: &Path) -> Result<(), JobError> {
    let mut f = tokio::fs::File::create(path).await.map_err(io(path))?;
    repo.read(&m.id, &mut f).await?;
    use tokio::io::AsyncWriteExt;
    f.flush().await.map_err(io(path))?;
    Ok(())
}
