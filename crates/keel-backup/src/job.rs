//! Taking backups: full (a hot snapshot), incremental and differential
//! (committed log entries since the previous backup or the last full),
//! cold (a stopped node's data directory) and archive segments. Each one
//! is read from the node into a local work file first, checked, then stored
//! by the [`Repository`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_store::{LogStore, StateMachineStore};

use crate::frames::LogSpan;
use crate::manifest::{BackupMeta, Kind, Manifest};
use crate::source::{NodeSource, SourceError};
use crate::JobError;
use crate::Repository;

/// Log records read from a stopped node's log per page (the node's own
/// backup endpoint pages the same way): bounds memory, not the total.
pub const COLD_PAGE_ENTRIES_MAX: usize = 4_096;
/// About the most record bytes per page of a cold read.
pub const COLD_PAGE_BYTES_MAX: usize = 16 << 20;

/// Label holding the state digest (hex) of a full or cold backup.
pub const LABEL_DIGEST: &str = "digest";
/// Label holding the node a backup was read from.
pub const LABEL_SOURCE: &str = "source";
/// Label holding the term of a base backup's last log id.
pub const LABEL_TERM: &str = "term";

/// What a backup run stored.
#[derive(Debug)]
pub struct Taken {
    /// The backups written, oldest first (a cold backup may write two).
    pub manifests: Vec<Manifest>,
    /// Why the kind asked for was not the kind taken, if it was not.
    pub note: Option<String>,
}

fn work_file(work: &Path, name: &str) -> Result<PathBuf, JobError> {
    std::fs::create_dir_all(work).map_err(|e| JobError::Io {
        path: work.display().to_string(),
        source: e,
    })?;
    Ok(work.join(name))
}

async fn store_file(
    repo: &Repository,
    meta: BackupMeta,
    path: &Path,
) -> Result<Manifest, JobError> {
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| JobError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
    let m = repo.write(meta, tokio::io::BufReader::new(f)).await;
    let _ = tokio::fs::remove_file(path).await;
    Ok(m?)
}

/// Takes a full backup: a hot snapshot streamed from `source` straight into
/// the repository, verified on the way (see [`NodeSource::snapshot_stream`]).
pub async fn take_full(
    repo: &Repository,
    source: &NodeSource,
    created_ms: u64,
) -> Result<Manifest, JobError> {
    let (info, stream) = source.snapshot_stream().await?;
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_DIGEST.to_string(), info.digest.clone());
    labels.insert(LABEL_SOURCE.to_string(), info.node.clone());
    labels.insert(LABEL_TERM.to_string(), info.term.to_string());
    let meta = BackupMeta {
        kind: Kind::Full,
        seq: info.index,
        created_ms,
        first_index: 0,
        last_index: info.index,
        first_time_ms: info.clock_ms,
        last_time_ms: info.clock_ms,
        parent: None,
        labels,
    };
    Ok(repo.write(meta, stream).await?)
}

/// The backup an incremental (any kind, newest) or a differential (newest
/// full or cold) follows.
fn parent_of(manifests: &[Manifest], kind: Kind) -> Option<&Manifest> {
    manifests
        .iter()
        .filter(|m| match kind {
            Kind::Differential => m.kind.is_base(),
            _ => true,
        })
        .max_by_key(|m| (m.last_index, m.created_ms))
}

/// Takes an incremental, differential or archive backup: the committed
/// log entries after its parent, read from `source`. Without a parent, or
/// when the source's log no longer holds the entries, it takes a full
/// backup instead and says why (as pgBackRest does).
pub async fn take_log(
    repo: &Repository,
    source: &NodeSource,
    kind: Kind,
    work: &Path,
    created_ms: u64,
) -> Result<Taken, JobError> {
    let manifests = repo.list().await?;
    let Some(parent) = parent_of(&manifests, kind) else {
        let m = take_full(repo, source, created_ms).await?;
        return Ok(Taken {
            manifests: vec![m],
            note: Some(format!(
                "no earlier backup for a {} to follow: took a full backup",
                kind.as_str()
            )),
        });
    };
    let upto = source.applied_index().await?;
    if upto <= parent.last_index {
        return Ok(Taken {
            manifests: vec![],
            note: Some(format!(
                "nothing committed since {} (index {}): no backup written",
                parent.id.as_str(),
                parent.last_index
            )),
        });
    }
    let path = work_file(work, "log.frames")?;
    let mut f = tokio::fs::File::create(&path)
        .await
        .map_err(|e| JobError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
    let span = match source.log_to(parent.last_index, upto, &mut f).await {
        Ok(s) => s,
        Err(SourceError::LogPurged(why)) => {
            drop(f);
            let _ = tokio::fs::remove_file(&path).await;
            let m = take_full(repo, source, created_ms).await?;
            return Ok(Taken {
                manifests: vec![m],
                note: Some(format!(
                    "the {} could not follow {}: {why}; took a full backup",
                    kind.as_str(),
                    parent.id.as_str()
                )),
            });
        }
        Err(e) => return Err(e.into()),
    };
    use tokio::io::AsyncWriteExt;
    f.flush().await.map_err(|e| JobError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    drop(f);
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_SOURCE.to_string(), source.url().to_string());
    let meta = log_meta(kind, parent, &span, created_ms, labels);
    let m = store_file(repo, meta, &path).await?;
    Ok(Taken {
        manifests: vec![m],
        note: None,
    })
}

fn log_meta(
    kind: Kind,
    parent: &Manifest,
    span: &LogSpan,
    created_ms: u64,
    labels: BTreeMap<String, String>,
) -> BackupMeta {
    BackupMeta {
        kind,
        seq: span.last,
        created_ms,
        first_index: span.after + 1,
        last_index: span.last,
        first_time_ms: span.first_time_ms.unwrap_or(parent.last_time_ms),
        last_time_ms: span.last_time_ms.unwrap_or(parent.last_time_ms),
        parent: Some(parent.id.clone()),
        labels,
    }
}

/// Takes a cold backup of a stopped node's data directory: the directory
/// is opened (which verifies every log record and the state's metadata;
/// it fails if a node still runs on it), its state stored as a `cold`
/// base, and the committed log entries it holds past that state as an
/// `incremental` on top, so a restore replays them too.
pub async fn take_cold(
    repo: &Repository,
    data_dir: &Path,
    work: &Path,
    created_ms: u64,
) -> Result<Taken, JobError> {
    let dir = data_dir.to_path_buf();
    let snap = work_file(work, "cold.snap")?;
    let frames = work_file(work, "cold.frames")?;
    let (snap_c, frames_c) = (snap.clone(), frames.clone());
    let read = tokio::task::spawn_blocking(move || read_cold(&dir, &snap_c, &frames_c)).await??;
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_DIGEST.to_string(), read.digest.clone());
    labels.insert(LABEL_SOURCE.to_string(), data_dir.display().to_string());
    labels.insert(LABEL_TERM.to_string(), read.term.to_string());
    let base = store_file(
        repo,
        BackupMeta {
            kind: Kind::Cold,
            seq: read.index,
            created_ms,
            first_index: 0,
            last_index: read.index,
            first_time_ms: read.clock_ms,
            last_time_ms: read.clock_ms,
            parent: None,
            labels,
        },
        &snap,
    )
    .await?;
    let mut manifests = vec![base];
    if read.span.entries > 0 {
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_SOURCE.to_string(), data_dir.display().to_string());
        let meta = log_meta(
            Kind::Incremental,
            &manifests[0],
            &read.span,
            created_ms,
            labels,
        );
        manifests.push(store_file(repo, meta, &frames).await?);
    } else {
        let _ = std::fs::remove_file(&frames);
    }
    Ok(Taken {
        manifests,
        note: None,
    })
}

struct ColdRead {
    index: u64,
    term: u64,
    digest: String,
    clock_ms: u64,
    span: LogSpan,
}

fn read_cold(dir: &Path, snap: &Path, frames: &Path) -> Result<ColdRead, JobError> {
    let store = |source: keel_store::StoreError| JobError::Store {
        context: format!(
            "reading the stopped node's data directory {}",
            dir.display()
        ),
        source,
    };
    if !dir.join(keel_store::STATE_FILE).is_file() {
        return Err(JobError::Cluster(format!(
            "{} is not a node's data directory (no {})",
            dir.display(),
            keel_store::STATE_FILE
        )));
    }
    let (log, sm): (LogStore, StateMachineStore) = keel_store::open(dir).map_err(store)?;
    let export = sm.export_snapshot().map_err(store)?;
    let Some(last) = export.last_log_id else {
        return Err(JobError::Cluster(format!(
            "{}: the node has applied nothing; there is nothing to back up",
            dir.display()
        )));
    };
    std::fs::copy(&export.path, snap).map_err(|e| JobError::Io {
        path: snap.display().to_string(),
        source: e,
    })?;
    let committed = log.committed_index().map_err(store)?.unwrap_or(last.index);
    let io = |e: std::io::Error| JobError::Io {
        path: frames.display().to_string(),
        source: e,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(frames).map_err(io)?);
    let mut span = LogSpan::empty(last.index);
    let mut after = last.index;
    while after < committed {
        let page = log
            .read_records(after, committed, COLD_PAGE_ENTRIES_MAX, COLD_PAGE_BYTES_MAX)
            .map_err(store)?;
        if page.records.is_empty() {
            break;
        }
        let mut buf = Vec::new();
        for (index, record) in page.records {
            span.add(index, &record)
                .map_err(|e| JobError::Cluster(e.to_string()))?;
            keel_store::push_log_frame(&mut buf, index, &record);
            after = index;
        }
        std::io::Write::write_all(&mut out, &buf).map_err(io)?;
    }
    std::io::Write::flush(&mut out).map_err(io)?;
    Ok(ColdRead {
        index: last.index,
        term: last.leader_id.term,
        digest: keel_protocol::hex::encode(&export.digest),
        clock_ms: export.clock_ms,
        span,
    })
}

/// A backup an operator can ask for: every [`Kind`] but the archive, which
/// only a schedule writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// A hot snapshot ([`take_full`]).
    Full,
    /// The log since the newest backup ([`take_log`]).
    Incremental,
    /// The log since the newest full ([`take_log`]).
    Differential,
    /// A stopped node's data directory ([`take_cold`]).
    Cold,
}

/// A choice's text that names no choice.
#[derive(Debug, thiserror::Error)]
#[error("--kind {0:?}: expected full, incremental, differential or cold")]
pub struct ChoiceParseError(String);

impl std::str::FromStr for Choice {
    type Err = ChoiceParseError;

    /// Parses `full`, `incremental`, `differential` or `cold`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Choice::Full),
            "incremental" => Ok(Choice::Incremental),
            "differential" => Ok(Choice::Differential),
            "cold" => Ok(Choice::Cold),
            other => Err(ChoiceParseError(other.to_string())),
        }
    }
}

/// Where [`take`] reads from: a running cluster, or for a cold backup a
/// stopped node's data directory.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    /// Nodes to ask (a healthy follower is read).
    pub nodes: &'a [String],
    /// Their admin token.
    pub token: &'a str,
    /// The CA bundle their certificates chain to, when they serve TLS.
    pub ca: Option<&'a Path>,
    /// Pace of the read in bytes per second (`None` or 0: no limit).
    pub rate_bytes_per_s: Option<u64>,
    /// The stopped node's data directory, for [`Choice::Cold`].
    pub data_dir: Option<&'a Path>,
}

/// Why [`take`] took nothing.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// A cold backup was asked for without a data directory.
    #[error("--kind cold needs --data-dir of the stopped node")]
    NoDataDir,
    /// No node of the cluster could be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The backup itself failed.
    #[error(transparent)]
    Job(#[from] JobError),
}

/// Takes the backup `choice` names, reading `from`; a full or log backup
/// from a running cluster is paced by `from.rate_bytes_per_s` (a log
/// backup too: with the log purged, it takes a full instead).
pub async fn take(
    repo: &Repository,
    choice: Choice,
    from: Origin<'_>,
    work: &Path,
    created_ms: u64,
) -> Result<Taken, TakeError> {
    let kind = match choice {
        Choice::Cold => {
            let dir = from.data_dir.ok_or(TakeError::NoDataDir)?;
            return Ok(take_cold(repo, dir, work, created_ms).await?);
        }
        Choice::Full => Kind::Full,
        Choice::Incremental => Kind::Incremental,
        Choice::Differential => Kind::Differential,
    };
    let src = NodeSource::pick(from.nodes, from.token, from.ca)
        .await?
        .with_rate(from.rate_bytes_per_s);
    if kind == Kind::Full {
        let m = take_full(repo, &src, created_ms).await?;
        return Ok(Taken {
            manifests: vec![m],
            note: None,
        });
    }
    Ok(take_log(repo, &src, kind, work, created_ms).await?)
}

#[cfg(test)]
mod choice_tests {
    use super::*;

    #[test]
    fn every_choice_is_parsed_and_others_refused() {
        assert_eq!("full".parse::<Choice>().unwrap(), Choice::Full);
        assert_eq!(
            "incremental".parse::<Choice>().unwrap(),
            Choice::Incremental
        );
        assert_eq!(
            "differential".parse::<Choice>().unwrap(),
            Choice::Differential
        );
        assert_eq!("cold".parse::<Choice>().unwrap(), Choice::Cold);
        assert_eq!(
            "archive".parse::<Choice>().unwrap_err().to_string(),
            "--kind \"archive\": expected full, incremental, differential or cold"
        );
    }
}
