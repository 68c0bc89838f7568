//! Backups that take themselves: periodic fulls and incrementals, an
//! incremental after every N committed entries, a continuous archive that
//! follows the log in segments closed by size or age (so losing the whole
//! cluster loses at most one open segment), and retention after each
//! backup. One loop, stopped by its shutdown signal.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::chain::Retention;
use crate::frames::LogSpan;
use crate::job::{take_full, take_log, LABEL_SOURCE};
use crate::manifest::{BackupMeta, Kind, Manifest};
use crate::source::{NodeSource, SourceError};
use crate::JobError;
use crate::Repository;

pub mod child;

pub use child::{stop_on_signal, stop_with_parent, ChildCommand, ChildSchedule, ParentError};

/// How often the loop looks at the cluster.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Smallest archive segment age accepted (a segment per poll would flood
/// the repository with manifests).
pub const ARCHIVE_SEGMENT_MS_MIN: u64 = 200;

/// What the scheduler does. Every `None` is off.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Take a full backup this often (and first, when there is none).
    pub full_every: Option<Duration>,
    /// Take an incremental this often.
    pub incremental_every: Option<Duration>,
    /// Take an incremental once this many entries are committed past the
    /// newest backup (an event trigger).
    pub after_entries: Option<u64>,
    /// Follow the log continuously in archive segments.
    pub archive: Option<ArchivePolicy>,
    /// Prune after each backup.
    pub retention: Option<Retention>,
    /// Pace of full backups, bytes per second (see [`crate::pace`]);
    /// `None` or 0 for no limit.
    pub full_rate_bytes_per_s: Option<u64>,
}

impl Policy {
    /// Whether the policy takes nothing at all (retention and pace alone
    /// take no backup).
    pub fn is_empty(&self) -> bool {
        self.full_every.is_none()
            && self.incremental_every.is_none()
            && self.after_entries.is_none()
            && self.archive.is_none()
    }
}

/// A schedule as `keel backup schedule`'s flags describe it, before it
/// becomes a [`Policy`].
#[derive(Clone, Debug, Default)]
pub struct ScheduleFlags {
    /// A full backup this often.
    pub full_every: Option<Duration>,
    /// An incremental this often.
    pub incremental_every: Option<Duration>,
    /// An incremental after this many committed entries.
    pub after_entries: Option<u64>,
    /// Close an archive segment at this age (the archive is off without it).
    pub archive_every: Option<Duration>,
    /// ... or at this many bytes.
    pub archive_bytes: u64,
    /// Fulls (and their chains) to keep after each backup.
    pub keep_full: Option<u64>,
    /// Pace of full backups, bytes per second (`None` or 0: no limit).
    pub full_rate_bytes_per_s: Option<u64>,
}

/// Flags that would schedule no backup at all.
#[derive(Debug, thiserror::Error)]
#[error("nothing to schedule: give --full-every, --incremental-every, --after-entries or --archive-every")]
pub struct NothingToSchedule;

impl ScheduleFlags {
    /// The policy, refused when it would take nothing.
    pub fn policy(self) -> Result<Policy, NothingToSchedule> {
        let policy = Policy {
            full_every: self.full_every,
            incremental_every: self.incremental_every,
            after_entries: self.after_entries,
            archive: self.archive_every.map(|d| ArchivePolicy {
                segment_bytes: self.archive_bytes,
                segment_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            }),
            retention: self.keep_full.map(|k| Retention {
                keep_full: usize::try_from(k).unwrap_or(usize::MAX),
            }),
            full_rate_bytes_per_s: self.full_rate_bytes_per_s,
        };
        if policy.is_empty() {
            return Err(NothingToSchedule);
        }
        Ok(policy)
    }
}

/// When an archive segment closes.
#[derive(Clone, Copy, Debug)]
pub struct ArchivePolicy {
    /// Close once it holds this many bytes of records.
    pub segment_bytes: u64,
    /// Close once its first record is this old (ms): the recovery point
    /// objective after losing every node.
    pub segment_ms: u64,
}

/// One line of what the scheduler did, for its log.
pub type Event = String;

/// A clock in ms since the epoch (real in the binary, fake in tests).
pub type Clock = fn() -> u64;

struct OpenSegment {
    path: PathBuf,
    file: tokio::fs::File,
    span: LogSpan,
    parent: Manifest,
    opened_ms: u64,
    bytes: u64,
}

/// What a scheduler runs: where backups go, which cluster, what policy.
pub struct Scheduled<'a> {
    /// The repository.
    pub repo: &'a Repository,
    /// Nodes to ask (a healthy follower is read).
    pub nodes: &'a [String],
    /// Their admin token.
    pub token: &'a str,
    /// The CA bundle their certificates chain to, when they serve TLS.
    pub ca: Option<&'a std::path::Path>,
    /// Local scratch space.
    pub work: PathBuf,
    /// What to take and when.
    pub policy: Policy,
    /// The clock deciding "when".
    pub clock: Clock,
}

/// Runs the policy against the cluster until `stop` turns true. Errors of
/// one round are reported through `on_event` and retried next round; the
/// loop itself only fails on a bad policy.
pub async fn run(
    job: Scheduled<'_>,
    mut stop: watch::Receiver<bool>,
    mut on_event: impl FnMut(Event),
) -> Result<(), JobError> {
    let Scheduled {
        repo,
        nodes,
        token,
        ca,
        work,
        policy,
        clock,
    } = job;
    if let Some(a) = policy.archive {
        if a.segment_ms < ARCHIVE_SEGMENT_MS_MIN || a.segment_bytes == 0 {
            return Err(JobError::Config {
                reason: format!(
                    "archive segments must be at least {ARCHIVE_SEGMENT_MS_MIN} ms and 1 byte"
                ),
            });
        }
    }
    std::fs::create_dir_all(&work).map_err(|e| JobError::Io {
        path: work.display().to_string(),
        source: e,
    })?;
    let mut last_full_ms: Option<u64> = None;
    let mut last_incr_ms: Option<u64> = None;
    let mut segment: Option<OpenSegment> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        match round(
            repo,
            (nodes, token, ca),
            &work,
            &policy,
            clock,
            &mut last_full_ms,
            &mut last_incr_ms,
            &mut segment,
        )
        .await
        {
            Ok(events) => events.into_iter().for_each(&mut on_event),
            Err(e) => on_event(format!("backup round failed (retrying): {e}")),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = stop.changed() => {}
        }
    }
    // A segment still open holds committed records: store it rather than
    // lose them on a clean stop.
    if let Some(seg) = segment.take() {
        if seg.span.entries > 0 {
            match close_segment(repo, seg, clock()).await {
                Ok(m) => on_event(format!("archived {} on shutdown", m.id.as_str())),
                Err(e) => on_event(format!("could not archive the open segment: {e}")),
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn round(
    repo: &Repository,
    (nodes, token, ca): (&[String], &str, Option<&std::path::Path>),
    work: &std::path::Path,
    policy: &Policy,
    clock: Clock,
    last_full_ms: &mut Option<u64>,
    last_incr_ms: &mut Option<u64>,
    segment: &mut Option<OpenSegment>,
) -> Result<Vec<Event>, JobError> {
    let mut events = Vec::new();
    let source = NodeSource::pick(nodes, token, ca)
        .await?
        .with_rate(policy.full_rate_bytes_per_s);
    let now = clock();
    let manifests = repo.list().await?;
    let has_base = manifests.iter().any(|m| m.kind.is_base());
    let due = |last: Option<u64>, every: Option<Duration>| match every {
        None => false,
        Some(e) => last.is_none_or(|l| now.saturating_sub(l) >= e.as_millis() as u64),
    };
    let mut took = false;
    if !has_base || due(*last_full_ms, policy.full_every) {
        if let Some(seg) = segment.take() {
            // Close the open segment first so the archive stays contiguous.
            if seg.span.entries > 0 {
                let m = close_segment(repo, seg, now).await?;
                events.push(format!("archived {}", m.id.as_str()));
            }
        }
        let m = take_full(repo, &source, now).await?;
        events.push(format!(
            "full backup {} at index {}",
            m.id.as_str(),
            m.last_index
        ));
        *last_full_ms = Some(now);
        took = true;
    } else if policy.archive.is_none() {
        let newest = manifests.iter().map(|m| m.last_index).max().unwrap_or(0);
        let by_events = match policy.after_entries {
            Some(n) => source
                .applied_index()
                .await
                .map(|a| a.saturating_sub(newest) >= n)
                .unwrap_or(false),
            None => false,
        };
        if by_events || due(*last_incr_ms, policy.incremental_every) {
            let t = take_log(repo, &source, Kind::Incremental, &work.join("incr"), now).await?;
            for m in &t.manifests {
                events.push(format!(
                    "{} backup {} up to index {}",
                    m.kind.as_str(),
                    m.id.as_str(),
                    m.last_index
                ));
                took = true;
            }
            events.extend(t.note);
            *last_incr_ms = Some(now);
        }
    }
    if let Some(a) = policy.archive {
        if let Some(m) = follow(repo, &source, work, a, now, segment).await? {
            events.push(format!(
                "archived {} (indexes {}..={})",
                m.id.as_str(),
                m.first_index,
                m.last_index
            ));
            took = true;
        }
    }
    if took {
        if let Some(r) = policy.retention {
            let p = repo.prune(r).await?;
            if !p.deleted.is_empty() {
                events.push(format!("pruned {} backups", p.deleted.len()));
            }
        }
    }
    Ok(events)
}

/// Appends what was committed since the open segment's end (opening one
/// after the newest backup if none is open) and closes it when full or old.
async fn follow(
    repo: &Repository,
    source: &NodeSource,
    work: &std::path::Path,
    policy: ArchivePolicy,
    now: u64,
    segment: &mut Option<OpenSegment>,
) -> Result<Option<Manifest>, JobError> {
    if segment.is_none() {
        let manifests = repo.list().await?;
        let Some(parent) = manifests
            .into_iter()
            .max_by_key(|m| (m.last_index, m.created_ms))
        else {
            return Ok(None);
        };
        let path = work.join("archive.segment");
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| JobError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
        *segment = Some(OpenSegment {
            path,
            file,
            span: LogSpan::empty(parent.last_index),
            parent,
            opened_ms: now,
            bytes: 0,
        });
    }
    let Some(seg) = segment.as_mut() else {
        return Ok(None);
    };
    let applied = source.applied_index().await?;
    if applied > seg.span.last {
        let before = seg.bytes;
        let mut buf = Vec::new();
        match source.log_to(seg.span.last, applied, &mut buf).await {
            Ok(span) => {
                seg.file.write_all(&buf).await.map_err(|e| JobError::Io {
                    path: seg.path.display().to_string(),
                    source: e,
                })?;
                if seg.span.entries == 0 {
                    seg.opened_ms = now;
                }
                seg.span.extend(&span);
                seg.bytes = before + buf.len() as u64;
            }
            Err(SourceError::LogPurged(why)) => {
                // The archive fell too far behind: drop the segment; the
                // next round takes a full backup to start again.
                *segment = None;
                return Err(JobError::Cluster(format!(
                    "the archive fell behind the log ({why}); take a full backup to restart it"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let full = seg.bytes >= policy.segment_bytes;
    let old = seg.span.entries > 0 && now.saturating_sub(seg.opened_ms) >= policy.segment_ms;
    if !(full || old) {
        return Ok(None);
    }
    let Some(seg) = segment.take() else {
        return Ok(None);
    };
    close_segment(repo, seg, now).await.map(Some)
}

async fn close_segment(
    repo: &Repository,
    mut seg: OpenSegment,
    now: u64,
) -> Result<Manifest, JobError> {
    seg.file.flush().await.map_err(|e| JobError::Io {
        path: seg.path.display().to_string(),
        source: e,
    })?;
    drop(seg.file);
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(LABEL_SOURCE.to_string(), "archive".to_string());
    let meta = BackupMeta {
        kind: Kind::Archive,
        seq: seg.span.last,
        created_ms: now,
        first_index: seg.span.after + 1,
        last_index: seg.span.last,
        first_time_ms: seg.span.first_time_ms.unwrap_or(seg.parent.last_time_ms),
        last_time_ms: seg.span.last_time_ms.unwrap_or(seg.parent.last_time_ms),
        parent: Some(seg.parent.id.clone()),
        labels,
    };
    let f = tokio::fs::File::open(&seg.path)
        .await
        .map_err(|e| JobError::Io {
            path: seg.path.display().to_string(),
            source: e,
        })?;
    let m = repo.write(meta, tokio::io::BufReader::new(f)).await;
    let _ = tokio::fs::remove_file(&seg.path).await;
    Ok(m?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_a_policy_and_flags_that_take_nothing_are_refused() {
        let flags = ScheduleFlags {
            archive_every: Some(Duration::from_secs(5)),
            archive_bytes: 1 << 20,
            keep_full: Some(2),
            ..ScheduleFlags::default()
        };
        let p = flags.policy().unwrap();
        let archive = p.archive.unwrap();
        assert_eq!(
            (archive.segment_ms, archive.segment_bytes),
            (5_000, 1 << 20)
        );
        assert_eq!(p.retention.map(|r| r.keep_full), Some(2));
        let pace_alone = ScheduleFlags {
            keep_full: Some(1),
            full_rate_bytes_per_s: Some(1 << 20),
            ..ScheduleFlags::default()
        };
        assert!(pace_alone.policy().is_err());
    }
}
