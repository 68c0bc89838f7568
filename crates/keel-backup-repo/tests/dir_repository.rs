//! The repository on real temp directories: round trips, lost targets, bit
//! rot, wrong keys, interrupted writes, pruning.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::path::PathBuf;

use common::*;
use keel_backup_repo::{
    plan_restore, BackupError, Key, Kind, Layout, RestorePoint, Retention, CHUNK_BYTES_MIN,
};
use tokio::io::AsyncRead;

/// Content sizes that matter: empty, under one chunk, exactly two chunks,
/// several chunks with a short tail.
const SIZES: [usize; 4] = [0, 1000, 2 * TEST_CHUNK_BYTES, 5 * TEST_CHUNK_BYTES + 12_345];

async fn round_trip(layout: Layout, targets: usize) {
    let root = tempfile::tempdir().unwrap();
    let repo = repo_on(&dirs(root.path(), targets), layout);
    for (seq, size) in SIZES.into_iter().enumerate() {
        let data = content(size, seq as u64);
        let written = repo
            .write(full(seq as u64, 100), data.as_slice())
            .await
            .unwrap();
        assert_eq!(written.content_bytes, size as u64);
        assert_eq!(written.chunks.len(), size.div_ceil(TEST_CHUNK_BYTES));
        assert_eq!(
            restore(&repo, &written.id).await.unwrap(),
            data,
            "{layout:?} size {size}"
        );
    }
    let listed = repo.list().await.unwrap();
    assert_eq!(listed.len(), SIZES.len());
    assert!(listed.windows(2).all(|w| w[0].id < w[1].id), "sorted");
    assert!(repo.verify().await.unwrap().is_clean());
}

#[tokio::test]
async fn mirror_round_trips_byte_identical() {
    round_trip(Layout::Mirror, 3).await;
}

#[tokio::test]
async fn erasure_2_1_round_trips_byte_identical() {
    round_trip(Layout::Erasure { data: 2, parity: 1 }, 3).await;
}

#[tokio::test]
async fn erasure_4_2_round_trips_byte_identical() {
    round_trip(Layout::Erasure { data: 4, parity: 2 }, 6).await;
}

#[tokio::test]
async fn erasure_needs_exactly_k_plus_m_targets() {
    let root = tempfile::tempdir().unwrap();
    let targets = dirs(root.path(), 2)
        .into_iter()
        .map(|d| keel_backup_repo::Target::Dir(keel_backup_repo::DirTarget::new(d)))
        .collect();
    let err =
        keel_backup_repo::Repository::open(targets, Layout::Erasure { data: 2, parity: 1 }, key())
            .unwrap_err();
    assert!(err.to_string().contains("exactly 3 targets"), "{err}");
}

/// Every subset of `0..n` with `size` members.
fn subsets(n: usize, size: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .filter(|mask| mask.count_ones() as usize == size)
        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}

/// Writes a backup, then for every way of losing `m` targets checks the
/// content still restores, and for a loss of `m + 1` that it fails with
/// `TooFewShards`. A lost target is swapped for an empty directory, which
/// is what a replaced disk looks like; one loss really deletes the data.
async fn survives_losing_parity_targets(data: usize, parity: usize) {
    let root = tempfile::tempdir().unwrap();
    let n = data + parity;
    let layout = Layout::Erasure { data, parity };
    let good = dirs(root.path(), n);
    let written_repo = repo_on(&good, layout);
    let bytes = content(3 * TEST_CHUNK_BYTES + 77, 9);
    let m = written_repo
        .write(full(1, 10), bytes.as_slice())
        .await
        .unwrap();

    let with_lost = |lost: &[usize]| -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                if lost.contains(&i) {
                    root.path().join(format!("empty{i}"))
                } else {
                    good[i].clone()
                }
            })
            .collect()
    };
    for lost in subsets(n, parity) {
        let repo = repo_on(&with_lost(&lost), layout);
        assert_eq!(restore(&repo, &m.id).await.unwrap(), bytes, "lost {lost:?}");
    }
    for lost in subsets(n, parity + 1) {
        let repo = repo_on(&with_lost(&lost), layout);
        let needs_manifest = lost.len() == n;
        match restore(&repo, &m.id).await {
            Err(BackupError::TooFewShards { have, need, .. }) => {
                assert_eq!((have, need), (data - 1, data), "lost {lost:?}");
            }
            other => assert!(needs_manifest, "lost {lost:?}: {other:?}"),
        }
    }
    // And really deleting m directories.
    for dir in &good[..parity] {
        std::fs::remove_dir_all(dir).unwrap();
    }
    assert_eq!(restore(&written_repo, &m.id).await.unwrap(), bytes);
    std::fs::remove_dir_all(&good[parity]).unwrap();
    let err = restore(&written_repo, &m.id).await.unwrap_err();
    assert!(matches!(err, BackupError::TooFewShards { .. }), "{err}");
    assert!(err.to_string().contains("needed"), "{err}");
}

#[tokio::test]
async fn erasure_2_1_survives_losing_any_one_target_not_two() {
    survives_losing_parity_targets(2, 1).await;
}

#[tokio::test]
async fn erasure_4_2_survives_losing_any_two_targets_not_three() {
    survives_losing_parity_targets(4, 2).await;
}

#[tokio::test]
async fn mirror_survives_losing_all_but_one_target() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), 3);
    let repo = repo_on(&d, Layout::Mirror);
    let bytes = content(2 * TEST_CHUNK_BYTES + 5, 3);
    let m = repo.write(full(1, 10), bytes.as_slice()).await.unwrap();
    std::fs::remove_dir_all(&d[0]).unwrap();
    std::fs::remove_dir_all(&d[2]).unwrap();
    assert_eq!(restore(&repo, &m.id).await.unwrap(), bytes);
    std::fs::remove_dir_all(&d[1]).unwrap();
    assert!(matches!(
        restore(&repo, &m.id).await,
        Err(BackupError::NotFound { .. })
    ));
}

/// Flips one bit in the middle of `path`.
fn flip_bit(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(path, bytes).unwrap();
}

fn piece_files(dir: &std::path::Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with('c'))
        })
        .collect()
}

async fn bit_rot_is_found_and_repaired(layout: Layout, targets: usize) {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), targets);
    let repo = repo_on(&d, layout);
    let bytes = content(3 * TEST_CHUNK_BYTES, 5);
    let m = repo.write(full(1, 10), bytes.as_slice()).await.unwrap();
    let victim = piece_files(&d[1])[1].clone();
    flip_bit(&victim);

    let report = repo.verify().await.unwrap();
    assert!(!report.is_clean());
    let bad = &report.targets[1];
    assert_eq!(bad.corrupt.len(), 1, "{report:#?}");
    assert!(bad.corrupt[0].reason.contains("checksum"), "{report:#?}");
    assert!(victim.ends_with(&bad.corrupt[0].name));
    assert!(report.targets[0].is_healthy() && report.targets[2].is_healthy());
    // Still restorable from the survivors while damaged.
    assert_eq!(restore(&repo, &m.id).await.unwrap(), bytes);

    let repaired = repo.repair().await.unwrap();
    assert!(repaired.is_complete(), "{repaired:#?}");
    assert_eq!(repaired.rewritten.len(), 1);
    let after = repo.verify().await.unwrap();
    assert!(after.is_clean(), "{after:#?}");
    assert!(!after.has_garbage());
    assert_eq!(restore(&repo, &m.id).await.unwrap(), bytes);
}

#[tokio::test]
async fn flipped_bit_in_a_shard_is_found_and_repaired() {
    bit_rot_is_found_and_repaired(Layout::Erasure { data: 2, parity: 1 }, 3).await;
}

#[tokio::test]
async fn flipped_bit_in_a_mirror_copy_is_found_and_repaired() {
    bit_rot_is_found_and_repaired(Layout::Mirror, 3).await;
}

#[tokio::test]
async fn truncated_shard_and_deleted_manifest_are_reported_then_repaired() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), 3);
    let repo = repo_on(&d, Layout::Erasure { data: 2, parity: 1 });
    let bytes = content(2 * TEST_CHUNK_BYTES + 3, 6);
    let m = repo.write(full(1, 10), bytes.as_slice()).await.unwrap();

    let shard = piece_files(&d[0])[0].clone();
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shard)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let manifest = d[2]
        .join(m.id.as_str())
        .join(keel_backup_repo::MANIFEST_OBJECT);
    std::fs::remove_file(&manifest).unwrap();

    let report = repo.verify().await.unwrap();
    assert!(!report.is_clean());
    assert!(
        report.targets[0].corrupt[0].reason.contains("truncated"),
        "{report:#?}"
    );
    assert_eq!(
        report.targets[2].missing,
        [format!("{}/{}", m.id, keel_backup_repo::MANIFEST_OBJECT)]
    );
    assert!(report.lost_chunks.is_empty());

    let repaired = repo.repair().await.unwrap();
    assert_eq!(repaired.rewritten.len(), 2, "{repaired:#?}");
    assert!(repo.verify().await.unwrap().is_clean());
    assert!(manifest.exists());
    assert_eq!(restore(&repo, &m.id).await.unwrap(), bytes);
}

#[tokio::test]
async fn a_wiped_target_is_rebuilt_by_repair() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), 3);
    let repo = repo_on(&d, Layout::Erasure { data: 2, parity: 1 });
    let a = repo
        .write(full(1, 10), content(100_000, 1).as_slice())
        .await
        .unwrap();
    let b = repo
        .write(full(2, 20), content(0, 2).as_slice())
        .await
        .unwrap();
    let before = files(&d[1]).len();
    std::fs::remove_dir_all(&d[1]).unwrap();
    let report = repo.verify().await.unwrap();
    assert_eq!(report.targets[1].missing.len(), before);
    let repaired = repo.repair().await.unwrap();
    assert!(repaired.is_complete());
    assert_eq!(files(&d[1]).len(), before);
    assert!(repo.verify().await.unwrap().is_clean());
    for m in [a, b] {
        assert_eq!(
            restore(&repo, &m.id).await.unwrap().len() as u64,
            m.content_bytes
        );
    }
}

#[tokio::test]
async fn wrong_key_fails_before_writing_any_output() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), 3);
    let repo = repo_on(&d, Layout::Erasure { data: 2, parity: 1 });
    let m = repo
        .write(full(1, 10), content(200_000, 4).as_slice())
        .await
        .unwrap();

    let wrong = repo_with_key(
        &d,
        Layout::Erasure { data: 2, parity: 1 },
        Key::from_bytes([1; 32]),
    );
    let mut out = Vec::new();
    let err = wrong.read(&m.id, &mut out).await.unwrap_err();
    assert!(matches!(err, BackupError::ManifestAuth { .. }), "{err}");
    assert!(err.to_string().contains("key"), "{err}");
    assert!(out.is_empty());
    assert!(matches!(
        wrong.list().await,
        Err(BackupError::ManifestAuth { .. })
    ));
    // A wrong key must not make prune take real backups for garbage.
    assert!(wrong.prune(Retention { keep_full: 1 }).await.is_err());
    let report = wrong.verify().await.unwrap();
    assert_eq!(report.unauthenticated, std::slice::from_ref(&m.id));
    assert!(!report.has_garbage());
    assert_eq!(restore(&repo, &m.id).await.unwrap().len(), 200_000);
}

#[tokio::test]
async fn tampered_manifest_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), 1);
    let repo = repo_on(&d, Layout::Mirror);
    let m = repo
        .write(full(1, 10), content(1000, 4).as_slice())
        .await
        .unwrap();
    let path = d[0]
        .join(m.id.as_str())
        .join(keel_backup_repo::MANIFEST_OBJECT);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"last_index\":10", "\"last_index\":11"),
    )
    .unwrap();
    let mut out = Vec::new();
    assert!(matches!(
        repo.read(&m.id, &mut out).await,
        Err(BackupError::ManifestAuth { .. })
    ));
    assert!(out.is_empty());
}

/// A reader that yields `good` bytes and then fails, like a snapshot
/// stream cut off mid-way.
struct FailingReader {
    data: Vec<u8>,
    at: usize,
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.at >= self.data.len() {
            return std::task::Poll::Ready(Err(std::io::Error::other("source died")));
        }
        // Short reads, as a pipe gives them.
        let n = buf.remaining().min(self.data.len() - self.at).min(1000);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn interrupted_write_is_invisible_and_pruned_as_garbage() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), 3);
    let repo = repo_on(&d, Layout::Erasure { data: 2, parity: 1 });
    let kept = repo
        .write(full(1, 10), content(1000, 1).as_slice())
        .await
        .unwrap();
    let cut = FailingReader {
        data: content(3 * TEST_CHUNK_BYTES, 2),
        at: 0,
    };
    let err = repo.write(full(2, 20), cut).await.unwrap_err();
    assert!(matches!(err, BackupError::Input(_)), "{err}");
    let ids: Vec<_> = repo
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, std::slice::from_ref(&kept.id));
    // A leftover temp file from a crash mid-put, too.
    let half_id = full(2, 20).id().unwrap();
    std::fs::write(
        d[0].join(half_id.as_str()).join(".tmp-c00000003.s00-1-1"),
        b"x",
    )
    .unwrap();

    // Reusing the id would reuse nonces: refused until pruned.
    let again = repo.write(full(2, 20), content(10, 3).as_slice()).await;
    assert!(
        matches!(again, Err(BackupError::IdInUse { .. })),
        "{again:?}"
    );

    let report = repo.verify().await.unwrap();
    assert!(report.is_clean() && report.has_garbage());
    assert_eq!(report.targets[0].garbage.len(), 4, "{report:#?}");

    let pruned = repo.prune(Retention { keep_full: 1 }).await.unwrap();
    assert!(pruned.deleted.is_empty());
    assert_eq!(pruned.garbage_removed.len(), 3 * 3 + 1, "{pruned:#?}");
    assert!(!repo.verify().await.unwrap().has_garbage());
    assert!(!d[0].join(half_id.as_str()).exists());
    let retry = repo
        .write(full(2, 20), content(10, 3).as_slice())
        .await
        .unwrap();
    assert_eq!(restore(&repo, &retry.id).await.unwrap(), content(10, 3));
}

#[tokio::test]
async fn objects_that_are_not_ours_are_reported_and_kept() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), 1);
    let repo = repo_on(&d, Layout::Mirror);
    repo.write(full(1, 10), content(10, 1).as_slice())
        .await
        .unwrap();
    std::fs::write(d[0].join("README.txt"), b"do not delete").unwrap();
    let report = repo.verify().await.unwrap();
    assert_eq!(report.targets[0].unknown, ["README.txt"]);
    repo.prune(Retention { keep_full: 1 }).await.unwrap();
    assert!(d[0].join("README.txt").exists());
}

#[tokio::test]
async fn prune_keeps_every_chain_a_kept_full_needs() {
    let root = tempfile::tempdir().unwrap();
    let d = dirs(root.path(), 3);
    let repo = repo_on(&d, Layout::Mirror);
    let small = |seed| content(CHUNK_BYTES_MIN + seed as usize, seed);
    let f1 = repo.write(full(1, 100), small(1).as_slice()).await.unwrap();
    let i1 = repo
        .write(
            meta(Kind::Incremental, 2, 101, 150, Some(&f1.id)),
            small(2).as_slice(),
        )
        .await
        .unwrap();
    let f2 = repo.write(full(3, 150), small(3).as_slice()).await.unwrap();
    let i2 = repo
        .write(
            meta(Kind::Incremental, 4, 151, 200, Some(&f2.id)),
            small(4).as_slice(),
        )
        .await
        .unwrap();
    let d2 = repo
        .write(
            meta(Kind::Differential, 5, 151, 250, Some(&f2.id)),
            small(5).as_slice(),
        )
        .await
        .unwrap();
    let a3 = repo
        .write(meta(Kind::Archive, 6, 251, 300, None), small(6).as_slice())
        .await
        .unwrap();

    let before = plan_restore(&repo.list().await.unwrap(), RestorePoint::Latest).unwrap();
    let pruned = repo.prune(Retention { keep_full: 1 }).await.unwrap();
    assert_eq!(pruned.deleted, [f1.id.clone(), i1.id.clone()]);
    assert!(pruned.failed.is_empty(), "{pruned:#?}");
    let ids: Vec<_> = repo
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        ids,
        [f2.id.clone(), i2.id.clone(), d2.id.clone(), a3.id.clone()]
    );
    for dir in &d {
        assert!(!dir.join(f1.id.as_str()).exists());
    }

    let after = repo.plan_restore(RestorePoint::Latest).await.unwrap();
    assert_eq!(after, before);
    let chain: Vec<_> = after.iter().map(|m| m.id.clone()).collect();
    assert_eq!(chain, [f2.id.clone(), d2.id.clone(), a3.id.clone()]);
    for (m, seed) in [(&f2, 3), (&d2, 5), (&a3, 6)] {
        assert_eq!(restore(&repo, &m.id).await.unwrap(), small(seed));
    }
    let mid = repo.plan_restore(RestorePoint::Index(180)).await.unwrap();
    assert_eq!(
        mid.iter().map(|m| &m.id).collect::<Vec<_>>(),
        [&f2.id, &i2.id]
    );
    assert!(repo.verify().await.unwrap().is_clean());
    assert!(repo.prune(Retention { keep_full: 0 }).await.is_err());
}

#[tokio::test]
async fn labels_and_ranges_survive_the_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let repo = repo_on(&dirs(root.path(), 1), Layout::Mirror);
    let mut m = full(1, 99);
    m.labels
        .insert("state_digest".to_owned(), "abc123".to_owned());
    let written = repo
        .write(m.clone(), content(10, 1).as_slice())
        .await
        .unwrap();
    let listed = repo.list().await.unwrap().remove(0);
    assert_eq!(listed, written);
    assert_eq!(listed.labels["state_digest"], "abc123");
    assert_eq!((listed.first_index, listed.last_index), (1, 99));
    assert_eq!(listed.id, m.id().unwrap());
    // Bad metadata is refused before anything is written.
    let bad = meta(Kind::Incremental, 2, 5, 4, None);
    assert!(matches!(
        repo.write(bad, content(10, 1).as_slice()).await,
        Err(BackupError::InvalidMeta { .. })
    ));
}
